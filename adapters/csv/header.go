package csv

import (
	"errors"
	"fmt"
	"strings"
)

// Columns of a point, in the order of the columns table.
const (
	colMetric = iota
	colGPUIndex
	colUUID
	colValue
	colDevice
	colModel
	colHostname
	colContainer
	colPod
	colNamespace
	colLabels
	numColumns
)

// columns lists the accepted header names of each column, preferred first:
// when a header has two of them, the preferred one is read.
var columns = [numColumns]struct {
	names    []string
	required bool
}{
	colMetric:    {names: []string{"metric_name"}, required: true},
	colGPUIndex:  {names: []string{"gpu_id", "gpu_index"}, required: true},
	colUUID:      {names: []string{"uuid", "gpu_uuid"}, required: true},
	colValue:     {names: []string{"value"}, required: true},
	colDevice:    {names: []string{"device"}},
	colModel:     {names: []string{"modelName", "model_name"}},
	colHostname:  {names: []string{"Hostname"}},
	colContainer: {names: []string{"container"}},
	colPod:       {names: []string{"pod"}},
	colNamespace: {names: []string{"namespace"}},
	colLabels:    {names: []string{"labels_raw", "labels"}},
}

// columnIndex maps each column to its field index in a row, -1 when absent.
type columnIndex [numColumns]int

// MissingColumnError reports a required column the header lacks.
type MissingColumnError struct {
	// Column is the column's usual name; Aliases are the other names accepted.
	Column  string
	Aliases []string
}

func (e *MissingColumnError) Error() string {
	if len(e.Aliases) == 0 {
		return fmt.Sprintf("missing required column %q", e.Column)
	}
	return fmt.Sprintf("missing required column %q (also accepted: %s)", e.Column, strings.Join(e.Aliases, ", "))
}

// mapHeader finds every column in the header, matching names
// case-insensitively and ignoring surrounding space and a byte order mark.
// The first of duplicate names wins. All missing required columns are
// reported together.
func mapHeader(header []string) (columnIndex, error) {
	pos := make(map[string]int, len(header))
	for i, h := range header {
		h = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))
		if _, dup := pos[h]; !dup {
			pos[h] = i
		}
	}
	var idx columnIndex
	var missing []error
	for c, col := range columns {
		idx[c] = -1
		for _, name := range col.names {
			if i, ok := pos[strings.ToLower(name)]; ok {
				idx[c] = i
				break
			}
		}
		if idx[c] < 0 && col.required {
			missing = append(missing, &MissingColumnError{Column: col.names[0], Aliases: col.names[1:]})
		}
	}
	return idx, errors.Join(missing...)
}
