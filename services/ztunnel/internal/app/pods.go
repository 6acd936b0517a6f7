package app

import (
	"context"
	"os"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/ambitmesh/ambit/pkg/spiffe"
	zdspb "github.com/ambitmesh/ambit/proto/istio/zds"
	"github.com/ambitmesh/ambit/services/ztunnel/internal/certs"
	"github.com/ambitmesh/ambit/services/ztunnel/internal/inpod"
)

// podHandler is what ZDS drives: the in-pod listeners plus the workload
// certificates they need. A pod landing on the node retains (and
// prefetches) its identity's certificate before its listeners open, so
// the first connection does not wait for the CA; a pod leaving releases
// it, and an identity no pod holds any more stops being renewed.
type podHandler struct {
	pods  *inpod.Manager
	certs *certs.Manager
	td    spiffeid.TrustDomain
}

func (h podHandler) identity(namespace, sa string) (spiffe.Identity, error) {
	if sa == "" {
		sa = "default"
	}
	return spiffe.NewWorkload(h.td, namespace, sa)
}

func (h podHandler) Add(ctx context.Context, uid string, info *zdspb.WorkloadInfo, netns *os.File) error {
	id, err := h.identity(info.GetNamespace(), info.GetServiceAccount())
	if err != nil {
		netns.Close()
		return err
	}
	old, had := h.pods.Pod(uid)
	if err := h.certs.Retain(id); err != nil {
		netns.Close()
		return err
	}
	_ = h.certs.Prefetch(id)
	if err := h.pods.Add(ctx, uid, info, netns); err != nil {
		h.certs.Release(id)
		return err
	}
	if had { // a re-add holds the identity once
		h.release(old)
	}
	return nil
}

func (h podHandler) release(p *inpod.Pod) {
	if id, err := h.identity(p.Namespace(), p.ServiceAccount()); err == nil {
		h.certs.Release(id)
	}
}

func (h podHandler) Del(ctx context.Context, uid string) error {
	p, ok := h.pods.Pod(uid)
	if err := h.pods.Del(ctx, uid); err != nil {
		return err
	}
	if ok {
		h.release(p)
	}
	return nil
}

func (h podHandler) Keep(ctx context.Context, uid string) error { return h.pods.Keep(ctx, uid) }

func (h podHandler) Snapshot(ctx context.Context, uids []string) error {
	keep := map[string]bool{}
	for _, u := range uids {
		keep[u] = true
	}
	var dropped []*inpod.Pod
	for _, p := range h.pods.Pods() {
		if !keep[p.UID()] {
			dropped = append(dropped, p)
		}
	}
	if err := h.pods.Snapshot(ctx, uids); err != nil {
		return err
	}
	for _, p := range dropped {
		h.release(p)
	}
	return nil
}
