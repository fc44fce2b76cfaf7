// Package archtest holds the architecture lint test: it checks, over
// `go list -json ./...` and the source tree, that dependencies point inward
// (apps → adapters → ports → domain), that adapters stay independent of each
// other, that internal/ (libraries both adapters and apps use) imports
// nothing of the module, that only tests import test helpers, and that no code uses a sync
// mutex (docs/architecture.md). It has no non-test code.
package archtest
