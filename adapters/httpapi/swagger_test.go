package httpapi_test

import (
	"io"
	"log"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/swaggo/swag"
	"github.com/swaggo/swag/gen"
)

// TestSwaggerSpecIsFresh regenerates the OpenAPI spec from this package's
// annotations, exactly as `make swagger` does, and fails when the committed
// docs/ differ: the spec served at /swagger/doc.json must describe this code.
func TestSwaggerSpecIsFresh(t *testing.T) {
	t.Parallel()
	out := t.TempDir()
	// The same settings as `swag init -g doc.go -d adapters/httpapi -o docs
	// --outputTypes go,json,yaml --parseInternal` (swag v1.16.6 defaults).
	err := gen.New().Build(&gen.Config{
		SearchDir:          "./",
		MainAPIFile:        "doc.go",
		OutputDir:          out,
		OutputTypes:        []string{"go", "json", "yaml"},
		PackageName:        "docs",
		PropNamingStrategy: swag.CamelCase,
		ParseInternal:      true,
		ParseDepth:         100,
		ParseGoList:        true,
		OverridesFile:      gen.DefaultOverridesFile,
		LeftTemplateDelim:  "{{",
		RightTemplateDelim: "}}",
		CollectionFormat:   "csv",
		Debugger:           log.New(io.Discard, "", 0),
	})
	require.NoError(t, err)
	tests := []struct{ name string }{{"docs.go"}, {"swagger.json"}, {"swagger.yaml"}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			want, err := os.ReadFile(filepath.Join(out, tt.name))
			require.NoError(t, err)
			got, err := os.ReadFile(filepath.Join("..", "..", "docs", tt.name))
			require.NoError(t, err, "docs/%s is missing: run `make swagger`", tt.name)
			require.Equal(t, string(want), string(got),
				"docs/%s is stale: the API annotations changed; run `make swagger` and commit docs/", tt.name)
		})
	}
}
