package domain

import (
	"errors"
	"fmt"
)

// ErrInvalidPoint is wrapped by every rule a Point can break.
var ErrInvalidPoint = errors.New("invalid telemetry point")

// ErrInvalidRange is wrapped by every malformed partition range.
var ErrInvalidRange = errors.New("invalid partition range")

func invalidPoint(reason string) error { return fmt.Errorf("%w: %s", ErrInvalidPoint, reason) }
