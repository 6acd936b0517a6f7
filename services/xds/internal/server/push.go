package server

import (
	"context"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// push is one dispatch of a new snapshot to the streams it concerns. Its
// span starts when the dispatcher hands the snapshot out and ends when
// every notified stream has answered it (ACK, NACK, nothing to send, or
// gone), or at the PushSpanTimeout: the span's duration is the
// convergence of that change. It is a child of the first feed event's span
// and links the others, so apply → publish → xDS push → ACK is one trace.
type push struct {
	gen  uint64
	rev  int64
	at   time.Time // earliest feed event covered; zero when unknown
	span trace.Span

	remaining atomic.Int64 // notified streams still to answer, +1 while dispatching
	ended     atomic.Bool
	timer     *time.Timer
}

// attach counts one more stream that must answer.
func (p *push) attach() { p.remaining.Add(1) }

// done records that one stream answered.
func (p *push) done() {
	if p.remaining.Add(-1) == 0 {
		p.end(false)
	}
}

func (p *push) end(timedOut bool) {
	if !p.ended.CompareAndSwap(false, true) {
		return
	}
	if p.timer != nil {
		p.timer.Stop()
	}
	if timedOut {
		p.span.SetStatus(codes.Error, "not every stream answered in time")
		p.span.SetAttributes(attribute.Int64("xds.streams_unanswered", p.remaining.Load()))
	}
	p.span.End()
}

// flight is one stream's answer to the pushes it covered in one send
// cycle: the responses of that cycle still awaiting ACK or NACK.
// Guarded by the stream's mutex.
type flight struct {
	pushes      []*push
	outstanding int // responses not yet answered, +1 while the cycle sends
	acks        int
	nacked      bool
	sentAt      time.Time
}

// settle records the answer to one response (acked false: rejected or
// forgotten).
func (f *flight) settle(acked bool, now time.Time, m *metrics) {
	if f == nil {
		return
	}
	if acked {
		f.acks++
	} else {
		f.nacked = true
	}
	f.release(now, m)
}

// release drops one hold; when the last is gone the pushes are done and,
// if every response was accepted, their convergence is recorded.
func (f *flight) release(now time.Time, m *metrics) {
	f.outstanding--
	if f.outstanding > 0 {
		return
	}
	for _, p := range f.pushes {
		if f.acks > 0 && !f.nacked && !p.at.IsZero() {
			m.convergence.Record(context.Background(), now.Sub(p.at).Seconds())
		}
		p.done()
	}
	f.pushes = nil
}
