// Package postgres is the PostgreSQL backend: the telemetry store
// (TelemetryStore, on the telemetry, gpus and dead_letters tables) and the
// shared plumbing other PostgreSQL adapters reuse — Connect for a configured
// pgxpool.Pool, Migrate for the schema, and one function translating driver
// errors into the ports sentinels. SQL lives here as named constants, each
// with a comment on the index it uses.
package postgres
