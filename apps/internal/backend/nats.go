package backend

import (
	"go.uber.org/fx"

	"github.com/gpufleet/telemetry/adapters/nats"
	"github.com/gpufleet/telemetry/apps/internal/platform"
)

// Default NATS user names of the two roles (natsd defines them).
const (
	NATSPublisherUser = "publisher"
	NATSConsumerUser  = "consumer"
)

// natsQueue provides the JetStream queue (QUEUE_BACKEND=nats) from NATS_URL,
// NATS_ACK_WAIT_SECONDS and NATS_DUPLICATE_WINDOW_SECONDS. The streamer and
// collector talk to NATS directly; mqwriter and mqreader are not involved.
// The connection authenticates as the NATS user of the app's side: the
// streamer (writer) as NATS_PUBLISHER_USER with NATS_PUBLISHER_PASSWORD[_FILE],
// the collector (readers) as NATS_CONSUMER_USER with
// NATS_CONSUMER_PASSWORD[_FILE]; no password connects without a user. One
// process using both sides (bin/pipeline) has one connection and uses the
// publisher's: natsd's publisher user may not consume, so run that against a
// server whose user may do both.
func natsQueue(env *platform.Env, writer bool) fx.Option {
	d := nats.DefaultConfig()
	cfg := nats.Config{
		URL:             env.String("NATS_URL", "nats://127.0.0.1:4222"),
		AckWait:         env.Seconds("NATS_ACK_WAIT_SECONDS", d.AckWait, 1, 3600),
		DuplicateWindow: env.Seconds("NATS_DUPLICATE_WINDOW_SECONDS", d.DuplicateWindow, 1, 86400),
		MaxDeliveries:   MaxDeliveries(env),
	}
	if writer {
		cfg.User = env.String("NATS_PUBLISHER_USER", NATSPublisherUser)
		cfg.Password = env.Secret("NATS_PUBLISHER_PASSWORD", env.String("NATS_PUBLISHER_PASSWORD", ""),
			"NATS_PUBLISHER_PASSWORD_FILE", env.String("NATS_PUBLISHER_PASSWORD_FILE", ""))
	} else {
		cfg.User = env.String("NATS_CONSUMER_USER", NATSConsumerUser)
		cfg.Password = env.Secret("NATS_CONSUMER_PASSWORD", env.String("NATS_CONSUMER_PASSWORD", ""),
			"NATS_CONSUMER_PASSWORD_FILE", env.String("NATS_CONSUMER_PASSWORD_FILE", ""))
	}
	if cfg.Password == "" {
		cfg.User = "" // no credentials: an open server
	}
	return fx.Options(
		fx.Supply(cfg),
		nats.Module,
		fx.Provide(platform.AsCheck(func(q *nats.Queue) platform.Check { return platform.CheckOf("queue", q) })),
	)
}
