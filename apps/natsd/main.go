// Command natsd runs one embedded NATS server with JetStream, for
// QUEUE_BACKEND=nats on a single machine (make run, the benchmarks): the
// streamer and collector reach it through NATS_URL. Production uses a real
// NATS cluster instead.
//
// Environment:
//
//	NATS_ADDR       host:port for NATS clients (default 127.0.0.1:4223, beside a
//	                system nats-server on 4222); port 0 picks a free port
//	NATS_STORE_DIR  JetStream's storage directory (default .local/nats)
//	HTTP_ADDR       GET /healthz (alive) and /readyz (accepting clients with
//	                JetStream) (default :8086)
//	LOG_LEVEL       debug, info, warn or error (default info); logs are JSON
//	NATS_PUBLISHER_USER, NATS_PUBLISHER_PASSWORD[_FILE]
//	                the publisher user (default name "publisher"): may publish
//	                to the topics' subjects (QUEUE_TOPICS, default telemetry:
//	                "telemetry.*") and set their streams up; may not pull or ack
//	NATS_CONSUMER_USER, NATS_CONSUMER_PASSWORD[_FILE]
//	                the consumer user (default "consumer"): may set the streams
//	                up, pull, ack and nak; may not publish to the topics
//	MQ_AUTH         none: no users, every client may do anything (a warning
//	                is logged); without it both passwords are required
//	NATS_SYNC       always (default) or default (JetStream's own: fsync every 2 min)
//
// JetStream fsyncs every write before acknowledging it (SyncAlways, i.e.
// sync_interval: always), so a publish or ack the server confirmed survives a
// power loss; its own default (NATS_SYNC=default, for comparisons only)
// would fsync only every 2 minutes. The NATS
// HTTP monitoring port stays off. On SIGINT or SIGTERM natsd stops its HTTP
// server, then shuts the NATS server down, which closes client connections
// and flushes the store.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/crypto/bcrypt"

	"github.com/gpufleet/telemetry/apps/internal/platform"
)

// config is natsd's configuration.
type config struct {
	Host     string
	Port     int // 0: a free port
	StoreDir string
	HTTPAddr string
	LogLevel string
	// Users are the publisher and consumer users; none with MQ_AUTH=none.
	Users []user
	// LazySync (NATS_SYNC=default) leaves JetStream at its own default
	// durability: fsync every 2 minutes, not before each acknowledgement.
	// For the benchmark's "NATS at default durability" line only.
	LazySync bool
}

// user is one NATS user and its role.
type user struct {
	Name, Password string
	Publisher      bool     // the publisher's permissions, else the consumer's
	Topics         []string // the queue topics whose subjects a publisher may publish to
}

// Timeouts of natsd's start and stop.
const (
	readyTimeout    = 30 * time.Second // JetStream recovers its streams before it is ready
	shutdownTimeout = 10 * time.Second // in-flight HTTP requests on stop
)

func main() {
	env := platform.NewEnv()
	cfg := loadConfig(env)
	if err := env.Err(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	logger := platform.NewLogger("natsd", cfg.LogLevel)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, logger, nil); err != nil {
		logger.Error("natsd stopped", "err", err)
		os.Exit(1)
	}
}

// loadConfig reads the environment; problems are recorded in env.
func loadConfig(env *platform.Env) config {
	cfg := config{
		StoreDir: env.String("NATS_STORE_DIR", ".local/nats"),
		HTTPAddr: env.String("HTTP_ADDR", ":8086"),
		LogLevel: env.OneOf("LOG_LEVEL", "info", "debug", "info", "warn", "error"),
		LazySync: env.OneOf("NATS_SYNC", "always", "always", "default") == "default",
	}
	addr := env.String("NATS_ADDR", "127.0.0.1:4223")
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		env.Fail(fmt.Errorf("NATS_ADDR=%q: want host:port", addr))
		return cfg
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		env.Fail(fmt.Errorf("NATS_ADDR=%q: port must be 0..65535", addr))
		return cfg
	}
	cfg.Host, cfg.Port = host, n
	cfg.Users = loadUsers(env)
	return cfg
}

// loadUsers reads the publisher and consumer users; both passwords are
// required unless MQ_AUTH=none.
func loadUsers(env *platform.Env) []user {
	if env.OneOf("MQ_AUTH", "token", "token", "none") == "none" {
		return nil
	}
	topics := env.List("QUEUE_TOPICS", []string{"telemetry"})
	pub := user{Name: env.String("NATS_PUBLISHER_USER", "publisher"), Publisher: true, Topics: topics,
		Password: env.Secret("NATS_PUBLISHER_PASSWORD", env.String("NATS_PUBLISHER_PASSWORD", ""),
			"NATS_PUBLISHER_PASSWORD_FILE", env.String("NATS_PUBLISHER_PASSWORD_FILE", ""))}
	cons := user{Name: env.String("NATS_CONSUMER_USER", "consumer"),
		Password: env.Secret("NATS_CONSUMER_PASSWORD", env.String("NATS_CONSUMER_PASSWORD", ""),
			"NATS_CONSUMER_PASSWORD_FILE", env.String("NATS_CONSUMER_PASSWORD_FILE", ""))}
	if pub.Password == "" || cons.Password == "" {
		env.Fail(errors.New("NATS_PUBLISHER_PASSWORD[_FILE] and NATS_CONSUMER_PASSWORD[_FILE] are required (or set MQ_AUTH=none to run NATS without users)"))
		return nil
	}
	if pub.Name == cons.Name {
		env.Fail(fmt.Errorf("NATS_PUBLISHER_USER and NATS_CONSUMER_USER are both %q; each role needs its own user", pub.Name))
		return nil
	}
	return []user{pub, cons}
}

// jetStreamSetUp is what both roles publish to set a topic up (the queue
// adapter creates or updates the topic's stream and durable consumer on
// first use, from either side) and to check JetStream.
func jetStreamSetUp() []string {
	return []string{
		"$JS.API.INFO",
		"$JS.API.STREAM.CREATE.*", "$JS.API.STREAM.UPDATE.*", "$JS.API.STREAM.INFO.*",
		"$JS.API.CONSUMER.CREATE.>", "$JS.API.CONSUMER.DURABLE.CREATE.>", "$JS.API.CONSUMER.INFO.>",
	}
}

// permissions are u's: a publisher may publish to its topics' subjects
// ("<topic>.*", one per partition) and set streams up; a consumer may set
// streams up, pull ($JS.API.CONSUMER.MSG.NEXT) and ack, nak or extend
// ($JS.ACK). Neither may delete or purge a stream or a message. Both
// receive replies on _INBOX.>.
func (u user) permissions() *server.Permissions {
	allow := jetStreamSetUp()
	if u.Publisher {
		for _, t := range u.Topics {
			allow = append(allow, t+".*")
		}
	} else {
		allow = append(allow, "$JS.API.CONSUMER.MSG.NEXT.>", "$JS.ACK.>")
	}
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: allow},
		Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.>"}},
	}
}

// serverOptions are the NATS server's options: JetStream with an fsync per
// write, no monitoring port, signals left to natsd.
func serverOptions(cfg config) *server.Options {
	port := cfg.Port
	if port == 0 {
		port = server.RANDOM_PORT // to nats-server, 0 means its default, 4222
	}
	opts := &server.Options{
		ServerName: "natsd",
		Host:       cfg.Host,
		Port:       port,
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		SyncAlways: !cfg.LazySync,
		HTTPPort:   0,
		NoSigs:     true,
	}
	for _, u := range cfg.Users {
		opts.Users = append(opts.Users, &server.User{Username: u.Name, Password: serverPassword(u.Password), Permissions: u.permissions()})
	}
	return opts
}

// serverPassword is what the NATS server is given for password: its bcrypt
// hash, so the server checks clients against the hash and does not log
// "Plaintext passwords detected" at every start. The passwords come from
// Secrets or the environment and are never written to a config file; the
// hash only keeps the plaintext out of the server's options, so it takes
// bcrypt's least cost: the server compares at every client connection (a
// reconnecting fleet), and a higher cost would protect nothing here. A
// password bcrypt cannot take (over 72 bytes) is passed as it is, and the
// server's warning then says so.
func serverPassword(password string) string {
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		return password
	}
	return string(hash)
}

// run serves NATS and HTTP until ctx ends or the HTTP server fails, then
// shuts both down. ready, when not nil, is called with the NATS client URL
// and the HTTP address once both accept connections.
func run(ctx context.Context, cfg config, logger *slog.Logger, ready func(natsURL, httpAddr string)) error {
	ns, err := server.NewServer(serverOptions(cfg))
	if err != nil {
		return fmt.Errorf("nats server: %w", err)
	}
	ns.SetLoggerV2(serverLogger{logger.With("component", "nats-server")},
		logger.Enabled(ctx, slog.LevelDebug), false, false)
	ns.Start() // does not block
	defer func() {
		ns.Shutdown()
		ns.WaitForShutdown()
		logger.Info("nats server stopped")
	}()
	if !ns.ReadyForConnections(readyTimeout) {
		return fmt.Errorf("nats server not ready within %s", readyTimeout)
	}

	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("http listen: %w", err)
	}
	hs := &http.Server{Handler: healthHandler(ns), ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()

	if len(cfg.Users) == 0 {
		logger.Warn("MQ_AUTH=none: NATS runs without users; any client may publish, consume and delete")
	}
	logger.Info("natsd ready", "nats_url", ns.ClientURL(), "store_dir", cfg.StoreDir,
		"http_addr", ln.Addr().String(), "sync_always", !cfg.LazySync, "users", len(cfg.Users))
	if ready != nil {
		ready(ns.ClientURL(), ln.Addr().String())
	}

	select {
	case <-ctx.Done():
		logger.Info("shutting down")
	case err := <-served:
		return fmt.Errorf("http server: %w", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		logger.Warn("http shutdown", "err", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http server: %w", err)
	}
	return nil
}

// healthHandler serves /healthz (the process is alive), /readyz (the NATS
// server accepts clients and JetStream is on) and /metrics (the process's
// Go and CPU metrics; JetStream's own figures are in its monitoring API).
func healthHandler(ns *server.Server) http.Handler {
	mux := http.NewServeMux()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ns.Running() || !ns.JetStreamEnabled() || !ns.ReadyForConnections(100*time.Millisecond) {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// serverLogger sends the NATS server's log lines to slog.
type serverLogger struct{ l *slog.Logger }

func (s serverLogger) Noticef(format string, v ...any) { s.l.Info(fmt.Sprintf(format, v...)) }
func (s serverLogger) Warnf(format string, v ...any)   { s.l.Warn(fmt.Sprintf(format, v...)) }
func (s serverLogger) Fatalf(format string, v ...any)  { s.l.Error(fmt.Sprintf(format, v...)) }
func (s serverLogger) Errorf(format string, v ...any)  { s.l.Error(fmt.Sprintf(format, v...)) }
func (s serverLogger) Debugf(format string, v ...any)  { s.l.Debug(fmt.Sprintf(format, v...)) }
func (s serverLogger) Tracef(format string, v ...any)  { s.l.Debug(fmt.Sprintf(format, v...)) }
