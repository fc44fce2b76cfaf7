package mqhttp

import (
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
)

// Defaults of the server's admission limits (ServerOptions).
const (
	// DefaultMaxInflightBytes bounds the request bodies a server holds at
	// once (32 MiB): with what decoding and a group commit copy, about four
	// times that in heap at the worst moment.
	DefaultMaxInflightBytes = 32 << 20
	// DefaultMaxConcurrentPublishes bounds the publishes in progress at once.
	DefaultMaxConcurrentPublishes = 256
	// DefaultMaxPayloadBytes bounds one message's payload at publish (64 KiB);
	// domain.MaxPayloadBytes (1 MiB) is the most it may be raised to.
	DefaultMaxPayloadBytes = 64 << 10
)

// admission bounds the memory the server's requests take before any body is
// read: a request reserves its Content-Length (or, when the length is not
// known, MaxBodyBytes, which MaxBytesReader then enforces) from a budget of
// in-flight bytes, and a publish takes one of a fixed number of slots. A
// request that does not fit is answered 429 with Retry-After at once, its
// body unread. The reservation is held until the answer is written, since
// the decoded request lives as long as the handler (a publish's messages
// until their COMMIT). Counters only: safe for concurrent use.
type admission struct {
	maxBody      int64 // immutable
	maxBytes     int64 // immutable
	maxPublishes int64 // immutable

	bytes     atomic.Int64 // reserved by requests in progress
	publishes atomic.Int64 // publishes in progress
	rejected  atomic.Int64 // requests refused for either limit; read by tests
}

// admit wraps e: it checks the declared body size against MaxBodyBytes (413),
// then reserves bytes and, for a publish, a slot (429), and frees them when e
// returns.
func (a *admission) admit(publish bool, e endpoint) endpoint {
	return func(w http.ResponseWriter, r *http.Request) (any, error) {
		size := r.ContentLength
		switch {
		case size > a.maxBody:
			return nil, tooLarge("request body of %d bytes exceeds %d bytes", size, a.maxBody)
		case size < 0: // chunked: reserve the most MaxBytesReader lets through
			size = a.maxBody
		}
		if !reserve(&a.bytes, size, a.maxBytes) {
			a.rejected.Add(1)
			return nil, busy("%d bytes of requests are in progress, %d allowed; retry later", a.bytes.Load(), a.maxBytes)
		}
		defer a.bytes.Add(-size)
		if publish {
			if !reserve(&a.publishes, 1, a.maxPublishes) {
				a.rejected.Add(1)
				return nil, busy("%d publishes are in progress, %d allowed; retry later", a.maxPublishes, a.maxPublishes)
			}
			defer a.publishes.Add(-1)
		}
		return e(w, r)
	}
}

// reserve adds n to v unless that would pass capacity. A request larger than
// the whole budget is still let through when nothing else is reserved, so a
// budget below MaxBodyBytes cannot refuse a valid request for ever.
func reserve(v *atomic.Int64, n, capacity int64) bool {
	for {
		cur := v.Load()
		if cur+n > capacity && cur > 0 {
			return false
		}
		if v.CompareAndSwap(cur, cur+n) {
			return true
		}
	}
}

// busy is a 429: the server is at one of its admission limits.
func busy(format string, args ...any) error {
	return &protocolError{status: http.StatusTooManyRequests, code: CodeBackpressure, message: fmt.Sprintf(format, args...)}
}

// payloadTooLarge is the 413 of a message over MaxPayloadBytes.
func payloadTooLarge(i, size int, limit int64) error {
	return tooLarge("messages[%d].payload is %d bytes, over this queue's limit of %s bytes per payload (MQ_MAX_PAYLOAD_BYTES)",
		i, size, strconv.FormatInt(limit, 10))
}
