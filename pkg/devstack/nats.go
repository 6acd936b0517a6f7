package devstack

import (
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// NATSOptions tunes the embedded NATS server.
type NATSOptions struct {
	// MaxPayload is the largest message NATS accepts (default 1 MiB, the
	// NATS default). Ambit caps stored objects below it.
	MaxPayload int32
	// JetStreamMaxMemory and JetStreamMaxStore cap JetStream's resources
	// (defaults 256 MiB and 4 GiB).
	JetStreamMaxMemory int64
	JetStreamMaxStore  int64
}

func (o *NATSOptions) setDefaults() {
	if o.MaxPayload == 0 {
		o.MaxPayload = 1 << 20
	}
	if o.JetStreamMaxMemory == 0 {
		o.JetStreamMaxMemory = 256 << 20
	}
	if o.JetStreamMaxStore == 0 {
		o.JetStreamMaxStore = 4 << 30
	}
}

type natsServer struct {
	storeDir string
	opts     NATSOptions
	log      *slog.Logger
	port     int // -1 until the first start picked one; then fixed
	srv      *server.Server
}

func newNATSServer(storeDir string, opts NATSOptions, log *slog.Logger) (*natsServer, error) {
	return &natsServer{storeDir: storeDir, opts: opts, log: log, port: server.RANDOM_PORT}, nil
}

func (n *natsServer) running() bool { return n.srv != nil }

func (n *natsServer) url() string {
	return "nats://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(n.port))
}

func (n *natsServer) start(timeout time.Duration) error {
	if n.srv != nil {
		return nil
	}
	srv, err := server.NewServer(&server.Options{
		ServerName:         "devstack",
		Host:               "127.0.0.1",
		Port:               n.port,
		NoSigs:             true,
		HTTPPort:           0,
		MaxPayload:         n.opts.MaxPayload,
		JetStream:          true,
		JetStreamMaxMemory: n.opts.JetStreamMaxMemory,
		JetStreamMaxStore:  n.opts.JetStreamMaxStore,
		StoreDir:           n.storeDir,
	})
	if err != nil {
		return fmt.Errorf("devstack: configure nats: %w", err)
	}
	srv.SetLoggerV2(natsLogger{n.log}, false, false, false)
	srv.Start()
	if !srv.ReadyForConnections(timeout) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return fmt.Errorf("devstack: nats not ready on port %d after %s", n.port, timeout)
	}
	if !srv.JetStreamEnabled() {
		srv.Shutdown()
		srv.WaitForShutdown()
		return fmt.Errorf("devstack: nats started without JetStream (store %s)", n.storeDir)
	}
	n.port = srv.Addr().(*net.TCPAddr).Port
	n.srv = srv
	return nil
}

func (n *natsServer) stop() {
	if n.srv == nil {
		return
	}
	n.srv.Shutdown()
	n.srv.WaitForShutdown()
	n.srv = nil
}

// natsLogger adapts the NATS server's printf-style logger to slog. Notices
// are debug-level: the server is chatty at start-up.
type natsLogger struct{ log *slog.Logger }

func (l natsLogger) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l natsLogger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l natsLogger) Fatalf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l natsLogger) Errorf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l natsLogger) Debugf(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l natsLogger) Tracef(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
