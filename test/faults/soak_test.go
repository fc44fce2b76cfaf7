//go:build faults

package faults

import (
	"math/rand/v2"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// csvRows is one pass over the shipped DCGM dump.
const csvRows = 2470

// Scenario 9: the whole pipeline (writer, two readers, two collectors, the
// streamer binary and the test's publishers) runs for FAULTS_SOAK (5 min by
// default) while a seeded chaos loop kills, pauses or drains a random
// component every few seconds. Afterwards a last streamer pass of one CSV
// runs undisturbed, and every invariant must hold: the test's acknowledged
// publishes and the last pass each stored exactly once, every stored row
// traceable to a publish attempt (the streamer's rows to its runs' keys).
func soak(t *testing.T, s *system, rng *rand.Rand) (history, expectations, func(figures)) {
	w := s.writer(nil)
	ra := s.reader("mqreader-a", "0-127", nil)
	rb := s.reader("mqreader-b", "128-255", nil)
	readers := []*service{ra, rb}
	collectorEnv := map[string]string{"LEASE_SECONDS": "3", "LEASE_MAX": "100"}
	c1 := s.collector("collector-1", readers, collectorEnv)
	c2 := s.collector("collector-2", readers, collectorEnv)
	streamerEnv := map[string]string{
		"MQ_WRITER_URL":        "http://" + w.addr,
		"STREAMER_CSV_PATH":    csvPath,
		"STREAMER_INTERVAL_MS": "5",
		"LOG_LEVEL":            "info", // its run id is logged at info; the rows' keys derive from it
	}
	st := s.start("streamer", "streamer", streamerEnv)
	cfg := defaultLoad("s9", rng.Uint64())
	cfg.every = 100 * time.Millisecond
	p := startPublisher(t, w, cfg)

	type action struct {
		name string
		do   func()
	}
	pause := func() time.Duration { return time.Duration(rng.Int64N(int64(2 * time.Second))) }
	killRestart := func(svc *service) func() {
		return func() {
			s.kill(svc)
			<-time.After(pause())
			s.launch(svc, svc.env["PARTITIONS"])
		}
	}
	actions := []action{
		{"kill -9 mqwriter", killRestart(w)},
		{"kill -9 mqreader-a", killRestart(ra)},
		{"kill -9 mqreader-b", killRestart(rb)},
		{"kill -9 collector-1", killRestart(c1)},
		{"kill -9 collector-2", killRestart(c2)},
		{"kill -9 streamer", killRestart(st)},
		{"SIGTERM mqreader (drain)", func() {
			r := readers[rng.IntN(len(readers))]
			_, err := s.term(r, 30*time.Second)
			require.NoError(t, err, "%s did not drain cleanly", r.name)
			s.launch(r, r.env["PARTITIONS"])
		}},
		{"SIGSTOP collector past its lease", func() {
			c := []*service{c1, c2}[rng.IntN(2)]
			require.NoError(t, c.proc.Signal(syscall.SIGSTOP))
			<-time.After(3*time.Second + pause() + time.Second)
			require.NoError(t, c.proc.Signal(syscall.SIGCONT))
		}},
	}
	end := time.Now().Add(soakFor)
	done := map[string]int{}
	for time.Now().Before(end) {
		<-time.After(2*time.Second + time.Duration(rng.Int64N(int64(4*time.Second))))
		a := actions[rng.IntN(len(actions))]
		a.do()
		done[a.name]++
	}
	t.Logf("soak of %s: faults %v", soakFor, done)
	h := p.stop()
	_, _ = s.term(st, 30*time.Second)

	// One last, undisturbed pass of the CSV: all of it must be stored.
	lastStart, runs := lastStreamerPass(t, s, st)
	return h, expectations{drainWithin: 2 * time.Minute, maxRedelivered: 0.5, foreign: true, foreignSince: lastStart, foreignAcked: csvRows},
		func(f figures) {
			require.Zero(t, s.counter(st, "streamer_messages_dropped_total")-st.totals["streamer_messages_dropped_total"],
				"the last streamer pass dropped messages")
			t.Logf("streamer runs %d, rows from the streamer %d", len(runs), f.foreign)
		}
}

// runsTotal is the count the last streamer process must reach: its counters
// add to the totals of the earlier processes (see service.totals).
func runsTotal(st *service, rows int) int {
	return int(st.totals["streamer_messages_published_total"]+st.totals["streamer_messages_duplicate_total"]+
		st.totals["streamer_messages_dropped_total"]) + rows
}

var runIDPattern = regexp.MustCompile(`"run_id":"([0-9a-f-]{36})"`)

// streamerRuns returns the run ids of every streamer process, in order, from
// its log.
func streamerRuns(t *testing.T, s *system, st *service) []string {
	t.Helper()
	var runs []string
	seen := map[string]bool{}
	for _, m := range runIDPattern.FindAllStringSubmatch(readLog(t, s, st), -1) {
		if !seen[m[1]] {
			seen[m[1]] = true
			runs = append(runs, m[1])
		}
	}
	require.Len(t, runs, st.starts, "one run id per streamer process")
	return runs
}
