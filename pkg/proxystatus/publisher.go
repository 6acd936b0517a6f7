package proxystatus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	statusv1 "github.com/ambitmesh/ambit/proto/ambit/status/v1"
)

// PublisherOptions configure a Publisher.
type PublisherOptions struct {
	// NATS carries the batches. Required.
	NATS *nats.Conn
	// Replica names the xds replica; batches go to Subject(Replica).
	// Required.
	Replica string
	// Collect returns the current report of every proxy connected to the
	// replica, one per proxy id. It is called once per Interval from the
	// publisher's goroutine. Required.
	Collect func() []*statusv1.ProxyReport
	// Interval is how often changes are published (default 200ms): a
	// change reaches config within about one Interval.
	Interval time.Duration
	// FullInterval is how often the whole set is published (default 10s),
	// so a config replica that started late or missed a batch is whole
	// again; the Tracker's ExpireAfter should be a few of these.
	FullInterval time.Duration
	// MaxBatchBytes splits a batch into several messages (default: the
	// server's max payload less 4 KiB).
	MaxBatchBytes int
	Logger        *slog.Logger
	Now           func() time.Time
}

// Publisher publishes an xds replica's distribution status: on start and
// every FullInterval the full set, and every Interval the reports that
// changed since the last batch, with proxies gone since marked
// disconnected. On stop it publishes an empty full batch, so config forgets
// the replica's proxies at once instead of after ExpireAfter.
//
// It polls Collect instead of being told of each ACK: a stream's state
// changes far more often than config needs to hear about it, and polling
// bounds the traffic to one batch per Interval whatever the churn.
type Publisher struct {
	opts     PublisherOptions
	log      *slog.Logger
	sequence uint64
	last     map[string]*statusv1.ProxyReport
}

// NewPublisher checks o and returns a publisher; Run starts it.
func NewPublisher(o PublisherOptions) (*Publisher, error) {
	switch {
	case o.NATS == nil:
		return nil, errors.New("proxystatus: PublisherOptions.NATS is required")
	case o.Replica == "":
		return nil, errors.New("proxystatus: PublisherOptions.Replica is required")
	case o.Collect == nil:
		return nil, errors.New("proxystatus: PublisherOptions.Collect is required")
	}
	if o.Interval <= 0 {
		o.Interval = 200 * time.Millisecond
	}
	if o.FullInterval <= 0 {
		o.FullInterval = 10 * time.Second
	}
	if o.MaxBatchBytes <= 0 {
		o.MaxBatchBytes = max(int(o.NATS.MaxPayload())-4096, 16<<10)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Publisher{opts: o, log: o.Logger.With("component", "proxystatus-publisher"), last: map[string]*statusv1.ProxyReport{}}, nil
}

// Run publishes until ctx ends. Publish failures (NATS away) are logged;
// the next full batch repairs whatever was lost.
func (p *Publisher) Run(ctx context.Context) error {
	p.publishFull(p.opts.Collect())
	tick := time.NewTicker(p.opts.Interval)
	defer tick.Stop()
	full := time.NewTicker(p.opts.FullInterval)
	defer full.Stop()
	for {
		select {
		case <-ctx.Done():
			// Going away: our proxies will reconnect elsewhere.
			p.last = map[string]*statusv1.ProxyReport{}
			p.publishFull(nil)
			if err := p.opts.NATS.FlushTimeout(time.Second); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
				p.log.Debug("flushing the last status batch", "error", err)
			}
			return nil
		case <-full.C:
			p.publishFull(p.opts.Collect())
		case <-tick.C:
			p.publishChanges(p.opts.Collect())
		}
	}
}

func (p *Publisher) publishFull(reports []*statusv1.ProxyReport) {
	p.last = make(map[string]*statusv1.ProxyReport, len(reports))
	for _, r := range reports {
		p.last[r.GetProxyId()] = r
	}
	p.publish(true, reports)
}

func (p *Publisher) publishChanges(reports []*statusv1.ProxyReport) {
	var changed []*statusv1.ProxyReport
	seen := make(map[string]bool, len(reports))
	for _, r := range reports {
		id := r.GetProxyId()
		seen[id] = true
		if old, ok := p.last[id]; !ok || !proto.Equal(old, r) {
			changed = append(changed, r)
			p.last[id] = r
		}
	}
	var gone []string
	for id := range p.last {
		if !seen[id] {
			gone = append(gone, id)
		}
	}
	slices.Sort(gone)
	for _, id := range gone {
		delete(p.last, id)
		changed = append(changed, &statusv1.ProxyReport{ProxyId: id, Disconnected: true})
	}
	if len(changed) > 0 {
		p.publish(false, changed)
	}
}

// publish sends reports in as many messages as MaxBatchBytes requires.
// Only the first message of a full batch is marked full (a full message
// replaces the replica's set at the receiver); the rest add to it.
func (p *Publisher) publish(full bool, reports []*statusv1.ProxyReport) {
	subject := Subject(p.opts.Replica)
	batch := &statusv1.ProxyReportBatch{Replica: p.opts.Replica, Full: full}
	size := 0
	flush := func() {
		p.sequence++
		batch.Sequence = p.sequence
		batch.SentUnixNano = p.opts.Now().UnixNano()
		b, err := proto.Marshal(batch)
		if err == nil {
			err = p.opts.NATS.Publish(subject, b)
		}
		if err != nil {
			p.log.Warn("publishing proxy status", "subject", subject, "reports", len(batch.Reports), "error", fmt.Errorf("proxystatus: %w", err))
		}
		batch = &statusv1.ProxyReportBatch{Replica: p.opts.Replica}
		size = 0
	}
	for _, r := range reports {
		n := proto.Size(r) + 8
		if len(batch.Reports) > 0 && size+n > p.opts.MaxBatchBytes {
			flush()
		}
		batch.Reports = append(batch.Reports, r)
		size += n
	}
	if len(batch.Reports) > 0 || batch.Full {
		flush()
	}
}
