// Package plugin is the ambit-cni chained CNI plugin. It runs after the
// primary plugin (bridge + host-local here, any plugin that returns IPs in
// a cluster) and forwards the pod sandbox to the node agent, which alone
// knows labels and decides about enrollment. It always passes the previous
// result through untouched: ambit-cni never changes the pod's network.
//
// When the agent cannot be reached the event is spooled and, by default,
// the pod starts anyway (fail open) and is enrolled once the agent runs. A
// fail-closed configuration refuses the ADD instead, for operators who
// would rather have a pod wait than run outside the mesh for a moment.
package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/ambitmesh/ambit/services/cni/internal/cnievent"
)

// Conf is ambit-cni's network configuration inside a conflist.
type Conf struct {
	types.PluginConf
	// AgentSocket is the node agent's unix socket (per node).
	AgentSocket string `json:"agentSocket"`
	// SpoolDir receives events while the agent is unreachable (per node).
	SpoolDir string `json:"spoolDir"`
	// FailClosed makes ADD fail while the agent is unreachable.
	FailClosed bool `json:"failClosed,omitempty"`
	// Timeout bounds one exchange with the agent (Go duration, default 30s:
	// the agent answers an ADD only after the pod is enrolled).
	Timeout string `json:"timeout,omitempty"`

	timeout time.Duration
}

// k8sArgs are the CNI_ARGS a Kubernetes-style runtime passes.
type k8sArgs struct {
	types.CommonArgs
	K8S_POD_NAME               types.UnmarshallableString //nolint:revive // CNI_ARGS names
	K8S_POD_NAMESPACE          types.UnmarshallableString //nolint:revive
	K8S_POD_UID                types.UnmarshallableString //nolint:revive
	K8S_POD_INFRA_CONTAINER_ID types.UnmarshallableString //nolint:revive
}

// ParseConf decodes and checks the plugin's configuration, naming the
// field that is wrong.
func ParseConf(stdin []byte) (*Conf, error) {
	c := &Conf{}
	if err := json.Unmarshal(stdin, c); err != nil {
		return nil, fmt.Errorf("ambit-cni: network configuration: %w", err)
	}
	var errs []error
	if c.AgentSocket == "" {
		errs = append(errs, errors.New("agentSocket: required"))
	}
	if c.SpoolDir == "" && !c.FailClosed {
		errs = append(errs, errors.New("spoolDir: required unless failClosed is set"))
	}
	c.timeout = 30 * time.Second
	if c.Timeout != "" {
		d, err := time.ParseDuration(c.Timeout)
		if err != nil || d <= 0 {
			errs = append(errs, fmt.Errorf("timeout: %q is not a positive duration", c.Timeout))
		}
		c.timeout = d
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("ambit-cni: network configuration: %w", err)
	}
	if c.RawPrevResult != nil {
		if err := version.ParsePrevResult(&c.PluginConf); err != nil {
			return nil, fmt.Errorf("ambit-cni: prevResult: %w", err)
		}
	}
	return c, nil
}

// Plugin carries what the commands need, so tests can drive them without a
// process per call.
type Plugin struct {
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Funcs returns the skel callbacks.
func (p *Plugin) Funcs() skel.CNIFuncs {
	return skel.CNIFuncs{Add: p.Add, Del: p.Del, Check: p.Check, Status: p.Status, GC: p.GC}
}

// Add forwards the new sandbox and prints the previous result unchanged.
func (p *Plugin) Add(args *skel.CmdArgs) error {
	conf, err := ParseConf(args.StdinData)
	if err != nil {
		return err
	}
	if conf.PrevResult == nil {
		return errors.New("ambit-cni: no prevResult: chain ambit-cni after a plugin that assigns the pod's addresses")
	}
	prev, err := current.NewResultFromResult(conf.PrevResult)
	if err != nil {
		return fmt.Errorf("ambit-cni: prevResult: %w", err)
	}
	ev, err := p.event(cnievent.Add, args)
	if err != nil {
		return err
	}
	if ev != nil {
		ev.IPs = podIPs(prev)
		if err := p.deliver(conf, ev); err != nil {
			return err
		}
	}
	return types.PrintResult(conf.PrevResult, conf.CNIVersion)
}

// Del forwards the teardown. It never fails because the agent is away:
// the event is spooled and the runtime must be able to delete sandboxes
// whatever state the node is in.
func (p *Plugin) Del(args *skel.CmdArgs) error {
	conf, err := ParseConf(args.StdinData)
	if err != nil {
		return err
	}
	ev, err := p.event(cnievent.Del, args)
	if err != nil || ev == nil {
		return err
	}
	err = p.deliver(conf, ev)
	if errors.Is(err, cnievent.ErrAgentUnreachable) {
		return nil // spooled, or fail-closed without a spool: the agent drops sandboxes whose netns is gone
	}
	return err
}

// Check asks the agent whether the sandbox is in the state its labels
// want. Without an agent it passes unless the configuration is fail-closed.
func (p *Plugin) Check(args *skel.CmdArgs) error {
	conf, err := ParseConf(args.StdinData)
	if err != nil {
		return err
	}
	if conf.PrevResult == nil {
		return errors.New("ambit-cni: CHECK without prevResult")
	}
	ev, err := p.event(cnievent.Check, args)
	if err != nil || ev == nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), conf.timeout)
	defer cancel()
	_, err = cnievent.Send(ctx, conf.AgentSocket, ev)
	if errors.Is(err, cnievent.ErrAgentUnreachable) && !conf.FailClosed {
		return nil
	}
	return err
}

// Status reports whether ADDs would succeed: with fail-closed, only while
// the agent is reachable.
func (p *Plugin) Status(args *skel.CmdArgs) error {
	conf, err := ParseConf(args.StdinData)
	if err != nil {
		return err
	}
	if !conf.FailClosed {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), conf.timeout)
	defer cancel()
	if err := cnievent.Ping(ctx, conf.AgentSocket); err != nil {
		return &types.Error{Code: types.ErrPluginNotAvailable, Msg: "ambit-cni: node agent unreachable", Details: err.Error()}
	}
	return nil
}

// GC has nothing to do: the agent drops sandboxes whose netns is gone when
// it reconciles.
func (p *Plugin) GC(*skel.CmdArgs) error { return nil }

// event builds the event for a pod sandbox, or nil for a sandbox that is
// not a pod (no K8S_POD_* args), which ambit-cni leaves alone.
func (p *Plugin) event(cmd cnievent.Command, args *skel.CmdArgs) (*cnievent.Event, error) {
	var ka k8sArgs
	if err := types.LoadArgs(args.Args, &ka); err != nil {
		return nil, fmt.Errorf("ambit-cni: CNI_ARGS: %w", err)
	}
	if ka.K8S_POD_NAME == "" || ka.K8S_POD_NAMESPACE == "" {
		return nil, nil
	}
	now := time.Now
	if p.Now != nil {
		now = p.Now
	}
	ev := &cnievent.Event{
		Command:      cmd,
		ContainerID:  args.ContainerID,
		Netns:        args.Netns,
		IfName:       args.IfName,
		PodNamespace: string(ka.K8S_POD_NAMESPACE),
		PodName:      string(ka.K8S_POD_NAME),
		PodUID:       string(ka.K8S_POD_UID),
		At:           now().UTC(),
	}
	if err := ev.Validate(); err != nil {
		return nil, fmt.Errorf("ambit-cni: %w", err)
	}
	return ev, nil
}

// deliver sends ev to the agent; an unreachable agent gets the event
// spooled, and the call fails only in fail-closed mode.
func (p *Plugin) deliver(conf *Conf, ev *cnievent.Event) error {
	ctx, cancel := context.WithTimeout(context.Background(), conf.timeout)
	defer cancel()
	_, err := cnievent.Send(ctx, conf.AgentSocket, ev)
	if !errors.Is(err, cnievent.ErrAgentUnreachable) {
		return err
	}
	if conf.SpoolDir != "" {
		if _, serr := (cnievent.Spool{Dir: conf.SpoolDir}).Write(ev); serr != nil {
			return fmt.Errorf("ambit-cni: %w; spooling the event failed too: %w", err, serr)
		}
	}
	if conf.FailClosed {
		if ev.Command == cnievent.Add {
			return fmt.Errorf("ambit-cni: fail-closed: pod %s not started: %w", ev.PodKey(), err)
		}
		return err
	}
	return nil // fail open: the agent takes the event from the spool
}

// podIPs keeps the container-side addresses of the result: IPs whose
// interface is one of the sandbox's own (those with a netns path), or all
// of them when the primary plugin did not say.
func podIPs(r *current.Result) []cnievent.IP {
	var out []cnievent.IP
	for _, ip := range r.IPs {
		if ip.Interface != nil {
			i := *ip.Interface
			if i < 0 || i >= len(r.Interfaces) || r.Interfaces[i].Sandbox == "" {
				continue
			}
		}
		pfx, ok := netip.AddrFromSlice(ip.Address.IP)
		if !ok {
			continue
		}
		ones, _ := ip.Address.Mask.Size()
		v := cnievent.IP{Address: netip.PrefixFrom(pfx.Unmap(), ones)}
		if gw, ok := netip.AddrFromSlice(ip.Gateway); ok && ip.Gateway != nil {
			v.Gateway = gw.Unmap()
		}
		out = append(out, v)
	}
	return out
}

// About is printed when the plugin runs without CNI_COMMAND.
func About(version string) string {
	return strings.TrimSpace("ambit-cni " + version + ": chains after a primary plugin and enrolls pods through the Ambit node agent")
}
