// Package hostload reads the machine's load average for the benchmark
// harnesses (make bench, make bench-api), which record it beside their
// results: a loaded machine explains slow figures.
package hostload

import (
	"os"
	"strings"
)

// Average is /proc/loadavg's 1, 5 and 15 minute load averages, separated by
// spaces; "" where unknown.
func Average() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
