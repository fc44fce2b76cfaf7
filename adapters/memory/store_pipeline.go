package memory

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"unicode/utf8"

	"github.com/gpufleet/telemetry/ports"
)

// ListDeadLetters returns one page of dead letters, newest first; a
// letter's id is its position in the order letters were stored, from 1.
func (s *TelemetryStore) ListDeadLetters(ctx context.Context, q ports.DeadLetterQuery) (ports.DeadLetterPage, error) {
	if err := q.Validate(); err != nil {
		return ports.DeadLetterPage{}, fmt.Errorf("list dead letters: %w", err)
	}
	page, err := call(ctx, s, func(st *storeState) ports.DeadLetterPage {
		page := ports.DeadLetterPage{Letters: []ports.StoredDeadLetter{}}
		end := int64(len(st.letters)) // ids 1..end
		if q.Before > 0 {
			end = min(end, q.Before-1)
		}
		for id := end; id >= 1; id-- {
			if len(page.Letters) == q.Limit {
				page.Next = page.Letters[q.Limit-1].ID
				break
			}
			l := st.letters[id-1]
			stored := ports.StoredDeadLetter{ID: id, CreatedAt: st.lettAt[id-1], DeadLetter: l, PayloadBytes: len(l.Payload)}
			stored.Payload = truncateChars(l.Payload, q.PayloadChars)
			page.Letters = append(page.Letters, stored)
		}
		return page
	})
	if err != nil {
		return ports.DeadLetterPage{}, fmt.Errorf("list dead letters: %w", err)
	}
	return page, nil
}

// truncateChars returns a copy of at most n characters of b (all of it
// when n is 0), as PostgreSQL's left(text, n) does.
func truncateChars(b []byte, n int) []byte {
	if n > 0 && utf8.RuneCount(b) > n {
		cut := 0
		for range n {
			_, size := utf8.DecodeRune(b[cut:])
			cut += size
		}
		b = b[:cut]
	}
	return slices.Clone(b)
}

// PipelineStats counts what the store holds; the memory store cannot see a
// queue, so the backlog is -1.
func (s *TelemetryStore) PipelineStats(ctx context.Context) (ports.PipelineStats, error) {
	now := s.opts.Now().UTC()
	stats, err := call(ctx, s, func(st *storeState) ports.PipelineStats {
		hosts := map[string]*ports.HostSeen{}
		for _, g := range st.gpus {
			h := hosts[g.Hostname]
			if h == nil {
				h = &ports.HostSeen{Hostname: g.Hostname}
				hosts[g.Hostname] = h
			}
			h.GPUs++
			if g.LastSeen.After(h.LastSeen) {
				h.LastSeen = g.LastSeen
			}
		}
		out := ports.PipelineStats{At: now, SamplesInserted: st.inserted, QueueBacklog: -1,
			DeadLetters: min(int64(len(st.letters)), ports.CountCap), DeadLettersCapped: len(st.letters) > ports.CountCap,
			Hosts: make([]ports.HostSeen, 0, len(hosts))}
		for _, h := range hosts {
			out.Hosts = append(out.Hosts, *h)
		}
		return out
	})
	if err != nil {
		return ports.PipelineStats{}, fmt.Errorf("pipeline stats: %w", err)
	}
	slices.SortFunc(stats.Hosts, func(a, b ports.HostSeen) int { return cmp.Compare(a.Hostname, b.Hostname) })
	return stats, nil
}
