// Package helmlookup tests what only a cluster shows about the charts:
// templates that read live objects with Helm's lookup. It renders the
// umbrella chart with Helm's own engine against a fake dynamic client
// (client-go's dynamic/fake) holding the objects an earlier render
// created, as `helm upgrade` would see them, and checks that generated
// secrets (queue tokens, PostgreSQL role passwords) survive upgrades and
// rotations. It lives in the tools module because it imports Helm, which
// the main module does not. `make helm-lint` runs it.
package helmlookup
