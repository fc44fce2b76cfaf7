package pgqueue

import "github.com/gpufleet/telemetry/adapters/internal/pgdb"

// translate is pgdb.Translate, the project's one reading of driver errors.
func translate(err error) error { return pgdb.Translate(err) }
