package postgres

import (
	"crypto/md5"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/gpufleet/telemetry/domain"
)

// maxCacheEntries bounds each registry cache; past it the cache starts over
// (it only saves round trips, it never decides anything).
const maxCacheEntries = 200_000

// seriesKey is a series' identity: GPU, metric and attribute set.
type seriesKey struct {
	gpu, metric string
	attrs       uuid.UUID
}

// attrsKey is the attribute-set key of p, the same md5 the migration's
// telemetry_attrs_key computes: length-prefixed fields, so no value can run
// into the next.
func attrsKey(p domain.Point) uuid.UUID {
	h := md5.New()
	for _, f := range []string{p.Hostname, strconv.Itoa(p.GPUIndex), p.Device, p.ModelName, p.Container, p.Pod, p.Namespace, p.LabelsRaw} {
		h.Write([]byte(strconv.Itoa(len(f))))
		h.Write([]byte{':'})
		h.Write([]byte(f))
	}
	var id uuid.UUID
	copy(id[:], h.Sum(nil))
	return id
}

// pointKey is a series' identity as the cache holds it: every attribute
// itself, so a cache hit costs a map lookup, not the md5 of attrsKey (which
// is computed only to register a series the cache does not know; in
// make bench it was a fifth of the collector's CPU).
type pointKey struct {
	gpu, metric, host, device, model, container, pod, namespace, labels string
	index                                                               int
}

func keyOf(p domain.Point) pointKey {
	return pointKey{gpu: p.GPUUUID, metric: p.MetricName, host: p.Hostname, device: p.Device, model: p.ModelName,
		container: p.Container, pod: p.Pod, namespace: p.Namespace, labels: p.LabelsRaw, index: p.GPUIndex}
}

// seriesEntry is a known series: its id and the last_seen the database
// holds (a lower bound; unix microseconds), advanced atomically.
type seriesEntry struct {
	id       int32
	lastSeen atomic.Int64
}

// gpuEntry is the registry row this process last wrote for a GPU.
type gpuEntry struct {
	state atomic.Pointer[domain.GPU]
}

// cowMap is a copy-on-write map read without locks: readers load the
// current map; a writer copies it, adds, and swaps it in with a CAS. Writes
// happen only when a new key appears (a new series or GPU), so the copies
// are rare.
type cowMap[K comparable, V any] struct {
	p atomic.Pointer[map[K]*V]
}

func (c *cowMap[K, V]) get(k K) (*V, bool) {
	m := c.p.Load()
	if m == nil {
		return nil, false
	}
	v, ok := (*m)[k]
	return v, ok
}

// add stores v under k unless a value is there already; it returns the
// value the map holds afterwards.
func (c *cowMap[K, V]) add(k K, v *V) *V {
	return c.addAll(map[K]*V{k: v})[k]
}

// addAll stores every entry of kvs whose key is not there yet, in one copy
// of the map (a batch registers its new keys together: one by one, the
// copies made the cold start quadratic, a third of a collector's CPU in
// make bench), and returns the values the map holds for kvs' keys.
func (c *cowMap[K, V]) addAll(kvs map[K]*V) map[K]*V {
	for {
		old := c.p.Load()
		size := len(kvs)
		if old != nil {
			size += len(*old)
		}
		next := make(map[K]*V, size)
		if old != nil && len(*old)+len(kvs) <= maxCacheEntries {
			for k, v := range *old {
				next[k] = v
			}
		}
		out := make(map[K]*V, len(kvs))
		for k, v := range kvs {
			if cur, ok := next[k]; ok {
				out[k] = cur
				continue
			}
			next[k] = v
			out[k] = v
		}
		if c.p.CompareAndSwap(old, &next) {
			return out
		}
	}
}

func micros(t time.Time) int64 { return t.UnixMicro() }

// advance raises a to v unless it is already at least v.
func advance(a *atomic.Int64, v int64) {
	for {
		cur := a.Load()
		if cur >= v || a.CompareAndSwap(cur, v) {
			return
		}
	}
}
