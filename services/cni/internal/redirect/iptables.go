package redirect

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// ModeIPTables is IPTables' Mode.
const ModeIPTables = "iptables"

// IPTablesOptions configures IPTables. The zero value gives the defaults
// noted on each field.
type IPTablesOptions struct {
	// Logger receives what was installed or removed. Default: discard.
	Logger *slog.Logger
	// RestoreCmd and SaveCmd are the iptables-restore and iptables-save
	// binaries, run inside the pod netns. Default "iptables-nft-restore" and
	// "iptables-nft-save": pod netns rules go through nf_tables, never the
	// legacy backend, whatever the host's "iptables" alternative points to.
	RestoreCmd string
	SaveCmd    string
	// OutboundPort is ztunnel's outbound capture port. Default 15001.
	OutboundPort uint16
	// InboundPlaintextPort is ztunnel's inbound plaintext port. Default 15006.
	InboundPlaintextPort uint16
	// InboundHBONEPort is ztunnel's HBONE port; traffic to it is never
	// redirected. Default 15008.
	InboundHBONEPort uint16
	// Mark is the SO_MARK of ztunnel's own sockets; their traffic is never
	// redirected. Default 0x539.
	Mark uint32
	// ConnMark tags connections ztunnel's marked sockets made, so their
	// reply traffic is left alone. Default 0x111.
	ConnMark uint32
	// MarkMask is the part of the packet and connection mark Mark and
	// ConnMark use, so that other bits stay free for others. Default 0xfff.
	MarkMask uint32
}

func (o IPTablesOptions) withDefaults() IPTablesOptions {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.RestoreCmd == "" {
		o.RestoreCmd = "iptables-nft-restore"
	}
	if o.SaveCmd == "" {
		o.SaveCmd = "iptables-nft-save"
	}
	if o.OutboundPort == 0 {
		o.OutboundPort = DefaultOutboundPort
	}
	if o.InboundPlaintextPort == 0 {
		o.InboundPlaintextPort = DefaultInboundPlaintextPort
	}
	if o.InboundHBONEPort == 0 {
		o.InboundHBONEPort = DefaultInboundHBONEPort
	}
	if o.Mark == 0 {
		o.Mark = DefaultMark
	}
	if o.ConnMark == 0 {
		o.ConnMark = 0x111
	}
	if o.MarkMask == 0 {
		o.MarkMask = 0xfff
	}
	return o
}

// IPTables redirects with iptables rules inside each pod's netns, as
// Istio's in-pod mode does (REDIRECT, not TPROXY). Everything it installs
// lives in chains named ChainPrefix* in the mangle and nat tables plus one
// jump into each from PREROUTING and OUTPUT; it never flushes a table nor
// touches another rule.
//
// Only IPv4 is redirected: no ip6tables rules are installed, so an enrolled
// pod's IPv6 connections bypass ztunnel. The mesh's pod networks are IPv4.
type IPTables struct {
	opts  IPTablesOptions
	log   *slog.Logger
	locks podLocks
}

var _ Redirector = (*IPTables)(nil)

// NewIPTables returns an iptables Redirector. Invalid options are reported
// by the first Render, Enroll or Check.
func NewIPTables(opts IPTablesOptions) *IPTables {
	opts = opts.withDefaults()
	return &IPTables{opts: opts, log: opts.Logger.With("redirect", ModeIPTables)}
}

// Mode returns "iptables".
func (t *IPTables) Mode() string { return ModeIPTables }

// Enroll sets net.ipv4.tcp_migrate_req=1 in the pod netns, so connections
// queued on a closing ztunnel listener migrate to its successor during an
// upgrade, and converges our rules to the wanted ones in one atomic
// iptables-restore. It reads the rules back and fails if they do not match,
// so a success means Check would say true.
func (t *IPTables) Enroll(ctx context.Context, p Pod) error {
	want, err := t.wanted(p)
	if err != nil {
		return fmt.Errorf("%s: enroll: %w", p.label(), err)
	}
	if err := p.check(); err != nil {
		return fmt.Errorf("%s: enroll: %w", p.label(), err)
	}
	unlock, err := t.locks.lock(ctx, p)
	if err != nil {
		return fmt.Errorf("%s: enroll: %w", p.label(), err)
	}
	defer unlock()
	if err := p.Netns.SetSysctl("net.ipv4.tcp_migrate_req", "1"); err != nil {
		return fmt.Errorf("%s: enroll: %w", p.label(), err)
	}
	if err := t.converge(ctx, p, want); err != nil {
		return fmt.Errorf("%s: enroll: %w", p.label(), err)
	}
	return nil
}

// Unenroll deletes the jumps into our chains and then our chains. It
// leaves net.ipv4.tcp_migrate_req alone: it is harmless without ztunnel's
// listeners, and the pod may have wanted it anyway.
func (t *IPTables) Unenroll(ctx context.Context, p Pod) error {
	if err := p.check(); err != nil {
		return fmt.Errorf("%s: unenroll: %w", p.label(), err)
	}
	unlock, err := t.locks.lock(ctx, p)
	if err != nil {
		return fmt.Errorf("%s: unenroll: %w", p.label(), err)
	}
	defer unlock()
	if err := t.converge(ctx, p, ruleSet{}); err != nil {
		return fmt.Errorf("%s: unenroll: %w", p.label(), err)
	}
	return nil
}

// Check reports whether our chains and jumps in the pod netns are exactly
// the wanted ones: nothing missing, duplicated, changed or left over.
func (t *IPTables) Check(ctx context.Context, p Pod) (bool, error) {
	want, err := t.wanted(p)
	if err != nil {
		return false, fmt.Errorf("%s: check: %w", p.label(), err)
	}
	if err := p.check(); err != nil {
		return false, fmt.Errorf("%s: check: %w", p.label(), err)
	}
	saved, err := t.save(ctx, p)
	if err != nil {
		return false, fmt.Errorf("%s: check: %w", p.label(), err)
	}
	return plan(want, saved) == "", nil
}

// converge applies what plan says is missing, then reads back to confirm.
func (t *IPTables) converge(ctx context.Context, p Pod, want ruleSet) error {
	saved, err := t.save(ctx, p)
	if err != nil {
		return err
	}
	script := plan(want, saved)
	if script == "" {
		t.log.DebugContext(ctx, "rules already as wanted", "pod", p.UID, "netns", p.Netns.String())
		return nil
	}
	t.log.InfoContext(ctx, "applying rules", "pod", p.UID, "netns", p.Netns.String(), "script", script)
	if _, err := t.run(ctx, p, script, t.opts.RestoreCmd, "--noflush"); err != nil {
		return err
	}
	if saved, err = t.save(ctx, p); err != nil {
		return err
	}
	if rest := plan(want, saved); rest != "" {
		// Our rules are written as iptables-save prints them; a different
		// iptables version printing them otherwise ends up here.
		return fmt.Errorf("rules differ from the wanted ones after applying them; still to do:\n%s", rest)
	}
	return nil
}

// save reads the pod netns's rules.
func (t *IPTables) save(ctx context.Context, p Pod) (savedState, error) {
	out, err := t.run(ctx, p, "", t.opts.SaveCmd)
	if err != nil {
		return nil, err
	}
	if strings.Contains(out, "iptables-legacy tables present") {
		// Rules in the legacy backend also see the pod's packets; they are
		// not ours and we cannot see them here.
		t.log.WarnContext(ctx, "pod netns also has iptables-legacy rules", "pod", p.UID, "netns", p.Netns.String())
	}
	st, err := parseSave(out)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", t.opts.SaveCmd, err)
	}
	return st, nil
}

// run runs an iptables binary inside the pod netns and returns its stdout.
func (t *IPTables) run(ctx context.Context, p Pod, stdin, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second // ctx kill must not wait on a child's open pipes forever
	if err := p.Netns.Run(cmd); err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return "", fmt.Errorf("%w: %s", err, msg)
		}
		return "", err
	}
	return stdout.String(), nil
}

// check rejects a Pod that names no netns.
func (p Pod) check() error {
	if p.Netns == nil {
		return errors.New("no netns handle")
	}
	return nil
}

// podLocks serialises work on one pod netns: save-plan-restore is not
// atomic as a whole, so two concurrent calls for one pod could both add a
// missing jump. Keyed by netns inode, so two handles on one netns share a
// lock; entries live only while someone holds or waits for them.
type podLocks struct {
	mu sync.Mutex
	m  map[uint64]*podLock
}

type podLock struct {
	sem  chan struct{}
	refs int
}

func (l *podLocks) lock(ctx context.Context, p Pod) (unlock func(), err error) {
	key, err := p.Netns.Inode()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	if l.m == nil {
		l.m = map[uint64]*podLock{}
	}
	e := l.m[key]
	if e == nil {
		e = &podLock{sem: make(chan struct{}, 1)}
		l.m[key] = e
	}
	e.refs++
	l.mu.Unlock()

	release := func() {
		l.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(l.m, key)
		}
		l.mu.Unlock()
	}
	select {
	case e.sem <- struct{}{}:
		return func() { <-e.sem; release() }, nil
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	}
}
