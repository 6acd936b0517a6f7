package spiffe_test

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"testing"
	"time"
)

// ioTimeout only bounds a broken test; nothing waits for it to pass.
const ioTimeout = 10 * time.Second

// side is the outcome of one end of a test connection.
type side struct {
	state tls.ConnectionState
	err   error
}

// handshake makes one real TLS connection over loopback TCP from client to
// server and then exchanges one message each way. The exchange matters: in
// TLS 1.3 the client finishes its handshake before the server has checked
// the client certificate, so a server-side rejection reaches the client only
// on its first read.
func handshake(t *testing.T, server, client *tls.Config) (srv, cli side) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	served := make(chan side, 1)
	go func() { served <- serveOne(ln, server) }()
	cli = dialOne(ln.Addr().String(), client)
	srv = <-served
	return srv, cli
}

func serveOne(ln net.Listener, cfg *tls.Config) side {
	raw, err := ln.Accept()
	if err != nil {
		return side{err: err}
	}
	conn := tls.Server(raw, cfg)
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(ioTimeout)); err != nil {
		return side{err: err}
	}
	if err := conn.Handshake(); err != nil {
		return side{err: err}
	}
	if err := exchange(conn, "ping", "pong"); err != nil {
		return side{err: err}
	}
	return side{state: conn.ConnectionState()}
}

func dialOne(addr string, cfg *tls.Config) side {
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		return side{err: err}
	}
	conn := tls.Client(raw, cfg)
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(ioTimeout)); err != nil {
		return side{err: err}
	}
	if err := conn.Handshake(); err != nil {
		return side{err: err}
	}
	if _, err := conn.Write([]byte("ping")); err != nil {
		return side{err: err}
	}
	buf := make([]byte, len("pong"))
	if _, err := io.ReadFull(conn, buf); err != nil {
		return side{err: err}
	}
	return side{state: conn.ConnectionState()}
}

// exchange reads want from conn and answers with reply.
func exchange(conn *tls.Conn, want, reply string) error {
	buf := make([]byte, len(want))
	if _, err := io.ReadFull(conn, buf); err != nil {
		return err
	}
	if string(buf) != want {
		return fmt.Errorf("read %q, want %q", buf, want)
	}
	_, err := conn.Write([]byte(reply))
	return err
}
