package platform

import (
	"fmt"
	"os"
	"strings"
)

// SecretLines are the secrets of a secret file: one a line, blank lines and
// # comments ignored (a mounted Kubernetes Secret, or a file of tokens).
func SecretLines(b []byte) []string {
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			out = append(out, line)
		}
	}
	return out
}

// Secret is one secret given either as a variable (value, read by the
// caller from varName) or as a file holding it (file, from fileVar): the
// file's one secret line. Both set, an unreadable file or a file without
// exactly one secret is recorded in env and gives "". Neither set gives "".
// The names are passed in so each app reads its variables literally (the
// envdoc test checks them against .env.example).
func (e *Env) Secret(varName, value, fileVar, file string) string {
	switch {
	case value != "" && file != "":
		e.Fail(fmt.Errorf("%s and %s are both set; set one", varName, fileVar))
		return ""
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			e.Fail(fmt.Errorf("%s: %w", fileVar, err))
			return ""
		}
		lines := SecretLines(b)
		if len(lines) != 1 {
			e.Fail(fmt.Errorf("%s=%s: want exactly one secret, found %d", fileVar, file, len(lines)))
			return ""
		}
		return lines[0]
	}
	return value
}
