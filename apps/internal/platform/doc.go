// Package platform is the glue every app shares: configuration from
// environment variables, JSON logging with slog, a Prometheus registry, and
// the HTTP server that answers /healthz, /readyz and /metrics beside the
// app's own routes, with graceful shutdown. Apps compose it with fx.
package platform
