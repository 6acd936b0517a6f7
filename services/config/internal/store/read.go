package store

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/ambitmesh/ambit/services/config/internal/resource"
)

// Get reads one object.
func (s *Store) Get(ctx context.Context, k resource.Key) (Stored, error) {
	key := objectKey(k)
	tctx, cancel := s.withTimeout(ctx)
	defer cancel()
	resp, err := s.etcd.Get(tctx, key)
	if err != nil {
		return Stored{}, etcdErr("get "+key, err)
	}
	if len(resp.Kvs) == 0 {
		return Stored{}, notFound("%s", k)
	}
	st, err := s.decode(key, resp.Kvs[0].Value, resp.Kvs[0].ModRevision)
	if err != nil {
		return Stored{}, err
	}
	return *st, nil
}

// ListOptions select and page a listing.
type ListOptions struct {
	// Namespace restricts the listing; empty lists every namespace.
	Namespace string
	// Selector filters by labels (Kubernetes syntax); empty matches all.
	Selector string
	// Limit is the page size; 0 means DefaultListLimit.
	Limit int64
	// Continue is the token of the previous page.
	Continue string
}

// DefaultListLimit is the page size when none is asked for, and MaxListLimit
// the largest accepted.
const (
	DefaultListLimit = 500
	MaxListLimit     = 10000
)

// ListResult is one page.
type ListResult struct {
	Items []Stored
	// Revision is the etcd revision every page of the listing is read at.
	Revision int64
	// Continue is non-empty when more pages follow.
	Continue string
}

// continueToken carries the listing's revision and where the next page
// starts, so every page is read at the same revision.
type continueToken struct {
	Rev   int64  `json:"rev"`
	Start string `json:"start"`
}

// List reads the objects of one kind, a page at a time, consistent at one
// revision across pages.
func (s *Store) List(ctx context.Context, group, kind string, opts ListOptions) (ListResult, error) {
	sel, err := labels.Parse(opts.Selector)
	if err != nil {
		return ListResult{}, invalid("label selector %q: %v", opts.Selector, err)
	}
	limit := opts.Limit
	if limit <= 0 {
		limit = DefaultListLimit
	}
	if limit > MaxListLimit {
		return ListResult{}, invalid("limit %d is above the maximum %d", limit, MaxListLimit)
	}
	prefix := kindPrefix(group, kind, opts.Namespace)
	end := clientv3.GetPrefixRangeEnd(prefix)
	start, rev := prefix, int64(0)
	if opts.Continue != "" {
		tok, err := decodeContinue(opts.Continue)
		if err != nil || !strings.HasPrefix(tok.Start, prefix) {
			return ListResult{}, invalid("continue token %q does not belong to this listing", opts.Continue)
		}
		start, rev = tok.Start, tok.Rev
	}

	var out ListResult
	// A selector may drop items, so read batches until the page is full.
	for {
		getOpts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(limit + 1)}
		if rev > 0 {
			getOpts = append(getOpts, clientv3.WithRev(rev))
		}
		tctx, cancel := s.withTimeout(ctx)
		resp, err := s.etcd.Get(tctx, start, getOpts...)
		cancel()
		if errors.Is(err, rpctypes.ErrCompacted) {
			return ListResult{}, fmt.Errorf("%w: revision %d was compacted; list again from the start", ErrExpired, rev)
		}
		if err != nil {
			return ListResult{}, etcdErr("list "+prefix, err)
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		more := int64(len(resp.Kvs)) > limit
		kvs := resp.Kvs
		if more {
			kvs = kvs[:limit]
		}
		for _, kv := range kvs {
			st, err := s.decode(string(kv.Key), kv.Value, kv.ModRevision)
			if err != nil {
				return ListResult{}, err
			}
			if sel.Matches(labels.Set(st.Object.Metadata.Labels)) {
				out.Items = append(out.Items, *st)
			}
		}
		if !more {
			break
		}
		start = string(resp.Kvs[limit].Key)
		if int64(len(out.Items)) >= limit {
			out.Continue = encodeContinue(continueToken{Rev: rev, Start: start})
			break
		}
	}
	out.Revision = rev
	return out, nil
}

func encodeContinue(t continueToken) string {
	b, _ := json.Marshal(t)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeContinue(s string) (continueToken, error) {
	var t continueToken
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return t, err
	}
	if err := json.Unmarshal(b, &t); err != nil {
		return t, err
	}
	if t.Rev <= 0 {
		return t, errors.New("no revision")
	}
	return t, nil
}
