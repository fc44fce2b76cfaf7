// Package deploytest checks the Docker deployment files offline, where no
// Docker engine runs: the Dockerfile is linted with BuildKit's own Dockerfile
// checks (what `docker build --check` runs, with base images resolved by a
// stub) and checked for the house rules, and deployments/docker-compose.yaml
// is loaded and validated with compose-go (the Compose specification's
// reference loader) and checked for wiring and start order. It is its own
// module so BuildKit and compose-go never enter the main module's
// dependencies. Run it with `make helm-lint` (or go -C tools/deploytest
// test ./...).
package deploytest
