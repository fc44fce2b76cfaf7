package nats

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gpufleet/telemetry/internal/promx"
)

// metrics are the queue's Prometheus collectors; they are safe for
// concurrent use.
type metrics struct {
	published  prometheus.Counter
	duplicates prometheus.Counter
	acked      prometheus.Counter
	released   prometheus.Counter
	expired    prometheus.Counter
	dead       prometheus.Counter
	// fetchStalls counts pulls cut short by the client (fetchIdleCut).
	fetchStalls prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	counter := func(name, help string) prometheus.Counter { return promx.Counter("nats_queue_"+name, help) }
	m := &metrics{
		published:  counter("messages_published_total", "Messages stored by Publish (duplicates excluded)."),
		duplicates: counter("messages_duplicate_total", "Published messages JetStream dropped as duplicates of a message id within the dedup window."),
		acked:      counter("messages_acked_total", "Messages deleted by Ack."),
		released:   counter("messages_released_total", "Messages returned to ready by Release."),
		expired:    counter("leases_expired_total", "Leases that expired before Ack or Release."),
		dead:       counter("messages_dead_lettered_total", "Messages moved to the dead-letter stream at the delivery limit."),
		fetchStalls: counter("fetch_stalls_total",
			"Pulls that got no message from the server for a second and were ended by the client; messages the server sent them later are redelivered after AckWait."),
	}
	return m, promx.Register(reg, m.published, m.duplicates, m.acked, m.released, m.expired, m.dead, m.fetchStalls)
}
