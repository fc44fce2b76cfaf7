package platform

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Env reads typed configuration from environment variables, collecting every
// problem so a misconfigured app reports all of them at once, each naming its
// variable.
type Env struct {
	lookup func(string) (string, bool)
	errs   []error
}

// NewEnv reads the process environment.
func NewEnv() *Env { return &Env{lookup: os.LookupEnv} }

// NewEnvFrom reads a map (for tests).
func NewEnvFrom(m map[string]string) *Env {
	return &Env{lookup: func(k string) (string, bool) { v, ok := m[k]; return v, ok }}
}

func (e *Env) raw(name string) (string, bool) {
	v, ok := e.lookup(name)
	v = strings.TrimSpace(v)
	return v, ok && v != ""
}

// String returns the variable or def when unset or empty.
func (e *Env) String(name, def string) string {
	if v, ok := e.raw(name); ok {
		return v
	}
	return def
}

// Int returns the variable as an integer within [lo, hi], or def.
func (e *Env) Int(name string, def, lo, hi int) int {
	v, ok := e.raw(name)
	if !ok {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s=%q: not an integer", name, v))
		return def
	}
	if n < lo || n > hi {
		e.errs = append(e.errs, fmt.Errorf("%s=%d: want %d..%d", name, n, lo, hi))
		return def
	}
	return n
}

// Millis returns the variable, a whole number of milliseconds within
// [lo, hi], as a duration, or def.
func (e *Env) Millis(name string, def time.Duration, lo, hi int) time.Duration {
	return time.Duration(e.Int(name, int(def/time.Millisecond), lo, hi)) * time.Millisecond
}

// Seconds returns the variable, whole seconds within [lo, hi], or def.
func (e *Env) Seconds(name string, def time.Duration, lo, hi int) time.Duration {
	return time.Duration(e.Int(name, int(def/time.Second), lo, hi)) * time.Second
}

// Duration returns the variable as a Go duration (90s, 30m, 168h) or a
// number of days (7d), or def; it must lie in [lo, hi].
func (e *Env) Duration(name string, def, lo, hi time.Duration) time.Duration {
	v, ok := e.raw(name)
	if !ok {
		return def
	}
	d, err := time.ParseDuration(v)
	if days, found := strings.CutSuffix(v, "d"); found && err != nil {
		n, nerr := strconv.Atoi(days)
		d, err = time.Duration(n)*24*time.Hour, nerr
	}
	if err != nil || d < lo || d > hi {
		e.errs = append(e.errs, fmt.Errorf("%s=%q: want a duration (e.g. 30s, 6h, 7d) from %s to %s", name, v, lo, hi))
		return def
	}
	return d
}

// Bool returns the variable parsed by strconv.ParseBool, or def.
func (e *Env) Bool(name string, def bool) bool {
	v, ok := e.raw(name)
	if !ok {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s=%q: want true or false", name, v))
		return def
	}
	return b
}

// List returns the comma-separated variable, trimmed, without empties, or def.
func (e *Env) List(name string, def []string) []string {
	v, ok := e.raw(name)
	if !ok {
		return def
	}
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// OneOf returns the variable, which must be one of allowed, or def.
func (e *Env) OneOf(name, def string, allowed ...string) string {
	v := strings.ToLower(e.String(name, def))
	for _, a := range allowed {
		if v == a {
			return v
		}
	}
	e.errs = append(e.errs, fmt.Errorf("%s=%q: want one of %s", name, v, strings.Join(allowed, ", ")))
	return def
}

// Require records an error when the variable is unset.
func (e *Env) Require(name string) string {
	v, ok := e.raw(name)
	if !ok {
		e.errs = append(e.errs, fmt.Errorf("%s is required", name))
	}
	return v
}

// Fail records a problem found while interpreting a variable.
func (e *Env) Fail(err error) { e.errs = append(e.errs, err) }

// Err returns every problem found, joined, or nil.
func (e *Env) Err() error {
	if len(e.errs) == 0 {
		return nil
	}
	return fmt.Errorf("configuration: %w", errors.Join(e.errs...))
}
