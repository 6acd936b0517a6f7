package cacmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	cav1 "github.com/ambitmesh/ambit/proto/ambit/ca/v1"
)

// NewCACmd returns `ambitctl ca` with `status` and `rotate`.
func NewCACmd(opts ...Option) *cobra.Command {
	o := newOptions(opts)
	var conn connFlags
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "Inspect the certificate authority and rotate its root",
	}
	conn.register(cmd)
	cmd.AddCommand(newStatusCmd(o, &conn), newRotateCmd(o, &conn))
	return cmd
}

func newStatusCmd(o *options, conn *connFlags) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the trusted roots, the rotation phase and how far the trust bundle has reached",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "" && output != "json" {
				return fmt.Errorf("--output %q: want json or nothing", output)
			}
			cc, err := o.connect(cmd, conn)
			if err != nil {
				return err
			}
			defer cc.Close()
			resp, err := cav1.NewRotationServiceClient(cc).GetRotationStatus(cmd.Context(), &cav1.GetRotationStatusRequest{})
			if err != nil {
				return fmt.Errorf("get CA status: %w", err)
			}
			if output == "json" {
				b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(resp.GetStatus())
				if err != nil {
					return err
				}
				_, err = fmt.Fprintln(cmd.OutOrStdout(), string(b))
				return err
			}
			printStatus(cmd.OutOrStdout(), resp.GetStatus(), o.now())
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	return cmd
}

func phaseName(p cav1.RotationPhase) string {
	switch p {
	case cav1.RotationPhase_ROTATION_PHASE_IDLE:
		return "idle"
	case cav1.RotationPhase_ROTATION_PHASE_ROOT_ADDED:
		return "root-added (new root distributed, old root signing)"
	case cav1.RotationPhase_ROTATION_PHASE_SIGNING_NEW:
		return "signing-new (new root signing, old root still trusted)"
	}
	return "unknown"
}

func printStatus(w io.Writer, st *cav1.RotationStatus, now time.Time) {
	fmt.Fprintf(w, "Trust domain:    %s\n", st.GetTrustDomain())
	fmt.Fprintf(w, "Rotation phase:  %s\n", phaseName(st.GetPhase()))
	fmt.Fprintf(w, "Bundle version:  %d\n", st.GetBundleVersion())
	d := st.GetDistribution()
	fmt.Fprintf(w, "Distribution:    %d/%d watchers acknowledged bundle v%d; %d/%d CA replicas serve it\n",
		d.GetWatchersAcked(), d.GetWatchers(), st.GetRequiredVersion(), d.GetReplicasCurrent(), d.GetReplicas())
	if st.GetDropTime() != nil {
		fmt.Fprintf(w, "Old root drop:   %s (in %s)\n", st.GetDropTime().AsTime().Local().Format(time.RFC3339),
			st.GetDropTime().AsTime().Sub(now).Round(time.Second))
	}
	if st.GetWaitingFor() != "" && st.GetPhase() != cav1.RotationPhase_ROTATION_PHASE_IDLE {
		fmt.Fprintf(w, "Waiting for:     %s\n", st.GetWaitingFor())
	}
	fmt.Fprintln(w, "\nAuthorities:")
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  ID\tACTIVE\tORIGIN\tEXPIRES\tROOT SHA-256\tROOT SUBJECT")
	for _, a := range st.GetAuthorities() {
		active := ""
		if a.GetActive() {
			active = "*"
		}
		sum := a.GetRootSha256()
		if len(sum) > 16 {
			sum = sum[:16] + "…"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s (%s)\t%s\t%s\n", a.GetId(), active, a.GetOrigin(),
			a.GetNotAfter().AsTime().Local().Format("2006-01-02"), humanDuration(a.GetNotAfter().AsTime().Sub(now)),
			sum, a.GetRootSubject())
	}
	_ = tw.Flush()
}

func humanDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "expired"
	case d >= 48*time.Hour:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	}
	return d.Round(time.Minute).String()
}

type rotateFlags struct {
	wait      bool
	force     bool
	dropNow   bool
	chainFile string
	keyFile   string
	timeout   time.Duration
}

func newRotateCmd(o *options, conn *connFlags) *cobra.Command {
	var f rotateFlags
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "Rotate the root CA, showing each step",
		Long: `Rotate the root CA (DESIGN §4), resuming a rotation already in progress:

  1. add a new root to the trust bundle (generated, or --cert-chain/--key),
  2. wait until every connected bundle watcher on every CA replica has
     acknowledged the bundle that holds it,
  3. switch signing to the new root,
  4. the CA drops the old root on its own once every certificate it signed
     has expired; --wait waits for that, --drop-now forces it.

--force skips the wait of step 2. Both --force and --drop-now break the
handshakes of any peer that lacks the new root or still holds a
certificate of the old one.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cc, err := o.connect(cmd, conn)
			if err != nil {
				return err
			}
			defer cc.Close()
			r := &rotator{o: o, f: f, c: cav1.NewRotationServiceClient(cc), out: cmd.OutOrStdout()}
			return r.run(cmd.Context())
		},
	}
	cmd.Flags().BoolVar(&f.wait, "wait", false, "wait until the old root is dropped")
	cmd.Flags().BoolVar(&f.force, "force", false, "switch to the new root without waiting for distribution (dangerous)")
	cmd.Flags().BoolVar(&f.dropNow, "drop-now", false, "drop the old root now instead of after its certificates expire (dangerous)")
	cmd.Flags().StringVar(&f.chainFile, "cert-chain", "", "operator-provided new authority: PEM chain, signing certificate first, root last")
	cmd.Flags().StringVar(&f.keyFile, "key", "", "operator-provided new authority: PEM signing key")
	cmd.Flags().DurationVar(&f.timeout, "timeout", 15*time.Minute, "give up waiting for distribution after this long")
	return cmd
}

type rotator struct {
	o        *options
	f        rotateFlags
	c        cav1.RotationServiceClient
	out      io.Writer
	lastLine string
}

func (r *rotator) say(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	if line != r.lastLine {
		fmt.Fprintln(r.out, line)
		r.lastLine = line
	}
}

func (r *rotator) status(ctx context.Context) (*cav1.RotationStatus, error) {
	resp, err := r.c.GetRotationStatus(ctx, &cav1.GetRotationStatusRequest{})
	if err != nil {
		return nil, fmt.Errorf("get rotation status: %w", err)
	}
	return resp.GetStatus(), nil
}

func activeID(st *cav1.RotationStatus) string {
	for _, a := range st.GetAuthorities() {
		if a.GetActive() {
			return a.GetId()
		}
	}
	return "?"
}

func (r *rotator) run(ctx context.Context) error {
	if (r.f.chainFile == "") != (r.f.keyFile == "") {
		return errors.New("--cert-chain and --key go together")
	}
	st, err := r.status(ctx)
	if err != nil {
		return err
	}
	if st.GetPhase() == cav1.RotationPhase_ROTATION_PHASE_IDLE {
		req := &cav1.StartRotationRequest{}
		if r.f.chainFile != "" {
			chain, err := os.ReadFile(r.f.chainFile)
			if err != nil {
				return err
			}
			key, err := os.ReadFile(r.f.keyFile)
			if err != nil {
				return err
			}
			req.CertChainPem, req.KeyPem = string(chain), string(key)
		}
		resp, err := r.c.StartRotation(ctx, req)
		if err != nil {
			return fmt.Errorf("start rotation: %w", err)
		}
		st = resp.GetStatus()
		r.say("[1/4] new root added to the trust bundle (bundle v%d); still signing with %s", st.GetBundleVersion(), activeID(st))
	} else {
		if r.f.chainFile != "" {
			return errors.New("a rotation is already in progress; --cert-chain applies only to a new one")
		}
		r.say("resuming the rotation in progress: %s", phaseName(st.GetPhase()))
	}

	if st.GetPhase() == cav1.RotationPhase_ROTATION_PHASE_ROOT_ADDED {
		if st, err = r.distribute(ctx); err != nil {
			return err
		}
	}
	if st.GetPhase() == cav1.RotationPhase_ROTATION_PHASE_SIGNING_NEW {
		return r.finish(ctx, st)
	}
	r.say("rotation complete: %s", phaseName(st.GetPhase()))
	return nil
}

// distribute waits for every watcher, then switches signing.
func (r *rotator) distribute(ctx context.Context) (*cav1.RotationStatus, error) {
	deadline := r.o.now().Add(r.f.timeout)
	for {
		st, err := r.status(ctx)
		if err != nil {
			return nil, err
		}
		if st.GetPhase() != cav1.RotationPhase_ROTATION_PHASE_ROOT_ADDED {
			return st, nil
		}
		d := st.GetDistribution()
		r.say("[2/4] distributing bundle v%d: %d/%d watchers acknowledged, %d/%d CA replicas serve it",
			st.GetRequiredVersion(), d.GetWatchersAcked(), d.GetWatchers(), d.GetReplicasCurrent(), d.GetReplicas())
		if st.GetReadyToAdvance() || r.f.force {
			resp, err := r.c.AdvanceRotation(ctx, &cav1.AdvanceRotationRequest{
				ExpectedPhase: cav1.RotationPhase_ROTATION_PHASE_ROOT_ADDED, Force: r.f.force && !st.GetReadyToAdvance(),
			})
			switch {
			case err == nil:
				st = resp.GetStatus()
				r.say("[3/4] signing with the new root %s", activeID(st))
				return st, nil
			case status.Code(err) == codes.FailedPrecondition || status.Code(err) == codes.Aborted:
				// A watcher connected meanwhile, or another operator advanced: look again.
			default:
				return nil, fmt.Errorf("switch to the new root: %w", err)
			}
		}
		if r.o.now().After(deadline) {
			return nil, fmt.Errorf("distribution not complete after %s (%s); rerun to resume, or --force",
				r.f.timeout, st.GetWaitingFor())
		}
		if err := sleep(ctx, r.o.pollInterval); err != nil {
			return nil, err
		}
	}
}

// finish drops the old root now (--drop-now), waits for it (--wait), or
// says when it happens.
func (r *rotator) finish(ctx context.Context, st *cav1.RotationStatus) error {
	if r.f.dropNow {
		resp, err := r.c.AdvanceRotation(ctx, &cav1.AdvanceRotationRequest{
			ExpectedPhase: cav1.RotationPhase_ROTATION_PHASE_SIGNING_NEW, Force: true,
		})
		if err != nil {
			return fmt.Errorf("drop the old root: %w", err)
		}
		r.say("[4/4] old root dropped (forced); bundle v%d holds only the new root", resp.GetStatus().GetBundleVersion())
		return nil
	}
	drop := st.GetDropTime().AsTime()
	r.say("[4/4] the CA drops the old root at %s, when the last certificate it signed has expired",
		drop.Local().Format(time.RFC3339))
	if !r.f.wait {
		r.say("the rotation finishes on its own; follow it with `ambitctl ca status`")
		return nil
	}
	for {
		st, err := r.status(ctx)
		if err != nil {
			return err
		}
		if st.GetPhase() != cav1.RotationPhase_ROTATION_PHASE_SIGNING_NEW {
			r.say("rotation complete: old root dropped; bundle v%d", st.GetBundleVersion())
			return nil
		}
		r.say("waiting: old root dropped in %s", humanDuration(drop.Sub(r.o.now())))
		if err := sleep(ctx, max(r.o.pollInterval, min(time.Minute, drop.Sub(r.o.now())/10))); err != nil {
			return err
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
