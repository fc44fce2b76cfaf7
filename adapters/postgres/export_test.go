package postgres

import "github.com/gpufleet/telemetry/ports"

// QueryArgs exposes queryArgs with a page limit.
func QueryArgs(q ports.TelemetryQuery, limit int64) []any { return queryArgs(q, &limit) }

// MaintenanceLockKey is the advisory lock one maintenance runner holds.
const MaintenanceLockKey = maintenanceLockKey

// AttrsKey exposes attrsKey.
var AttrsKey = attrsKey
