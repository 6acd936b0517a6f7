package tunnel

import (
	"context"
	"io"
	"net"
	"testing"
)

// benchPayload is written per iteration; b.SetBytes makes `go test
// -bench` report MB/s.
const benchPayload = 1 << 20

// sink discards what the echo app would echo: throughput benchmarks send
// one way and wait for the byte count, like iperf.
func drain(c net.Conn, total int64, done chan<- error) {
	_, err := io.CopyN(io.Discard, c, total)
	done <- err
}

// BenchmarkThroughputTCP is the baseline: one loopback TCP connection.
func BenchmarkThroughputTCP(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	total := int64(b.N) * benchPayload
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		drain(c, total, done)
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, benchPayload)
	b.SetBytes(benchPayload)
	b.ResetTimer()
	for range b.N {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}

// BenchmarkThroughputHBONE: the same stream through one HBONE tunnel
// (mTLS 1.3 + HTTP/2 CONNECT, both ends in this process, loopback).
func BenchmarkThroughputHBONE(b *testing.B) {
	f := newFixture(b)
	total := int64(b.N) * benchPayload
	done := make(chan error, 1)
	f.sink = func(c net.Conn) { drain(c, total, done) }
	p, _ := f.pool(b)
	c, err := p.Dial(context.Background(), f.key("pod-a"), target, Headers{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, benchPayload)
	b.SetBytes(benchPayload)
	b.ResetTimer()
	for range b.N {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}

// BenchmarkNewTunnel: one CONNECT on a pooled connection plus a 1-byte
// round trip — the per-connection cost the mesh adds once warm.
func BenchmarkNewTunnel(b *testing.B) {
	f := newFixture(b)
	p, _ := f.pool(b)
	one := make([]byte, 1)
	b.ResetTimer()
	for range b.N {
		c, err := p.Dial(context.Background(), f.key("pod-a"), target, Headers{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Write(one); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, one); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}
