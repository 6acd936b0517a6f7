package store

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ambitmesh/ambit/pkg/changefeed"
	"github.com/ambitmesh/ambit/services/config/internal/resource"
)

// Delete removes an object and releases its addresses, in one transaction.
// Deleting a Namespace deletes everything in it, as Kubernetes does. A
// non-zero resourceVersion is a precondition.
func (s *Store) Delete(ctx context.Context, k resource.Key, resourceVersion int64) (Stored, error) {
	key := objectKey(k)
	ctx, span := s.tracer.Start(ctx, "store.Delete")
	defer span.End()
	for attempt := 0; attempt < s.attempts; attempt++ {
		cur, err := s.Get(ctx, k)
		if err != nil {
			return Stored{}, err
		}
		if resourceVersion != 0 && cur.Revision != resourceVersion {
			return Stored{}, conflict("%s has resourceVersion %d, not %d", key, cur.Revision, resourceVersion)
		}
		cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", cur.Revision)}
		ops := append([]clientv3.Op{clientv3.OpDelete(key)}, releaseOps(cur.Object)...)
		if k.Kind == "Namespace" && k.Group == resource.CoreKeyGroup {
			c, o, err := s.namespaceContents(ctx, k.Name)
			if err != nil {
				return Stored{}, err
			}
			cmps, ops = append(cmps, c...), append(ops, o...)
		}
		tctx, cancel := s.withTimeout(ctx)
		resp, err := s.etcd.Txn(tctx).If(cmps...).Then(changefeed.WithTrace(ctx, s.prop, ops...)...).Commit()
		cancel()
		if err != nil {
			return Stored{}, etcdErr("delete "+key, err)
		}
		if resp.Succeeded {
			return cur, nil
		}
		if resourceVersion != 0 {
			return Stored{}, conflict("%s changed while deleting", key)
		}
	}
	return Stored{}, conflict("%s: gave up after %d attempts under contention", key, s.attempts)
}

// releaseOps deletes the allocation keys of the addresses obj holds.
func releaseOps(obj *resource.Object) []clientv3.Op {
	var ops []clientv3.Op
	for pool, addrs := range objectAddresses(obj) {
		for _, ip := range addrs {
			ops = append(ops, clientv3.OpDelete(allocKey(pool, ip)))
		}
	}
	return ops
}

// namespaceContents returns compares and deletes for every object in a
// namespace, so the namespace and its contents go in one transaction and a
// concurrent write into it makes the transaction retry.
func (s *Store) namespaceContents(ctx context.Context, ns string) ([]clientv3.Cmp, []clientv3.Op, error) {
	var cmps []clientv3.Cmp
	var ops []clientv3.Op
	for _, kind := range s.kinds.All() {
		if !kind.Namespaced() {
			continue
		}
		prefix := kindPrefix(kind.KeyGroup(), kind.Name(), ns)
		tctx, cancel := s.withTimeout(ctx)
		resp, err := s.etcd.Get(tctx, prefix, clientv3.WithPrefix())
		cancel()
		if err != nil {
			return nil, nil, etcdErr("list "+prefix, err)
		}
		for _, kv := range resp.Kvs {
			st, err := s.decode(string(kv.Key), kv.Value, kv.ModRevision)
			if err != nil {
				return nil, nil, err
			}
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(string(kv.Key)), "=", kv.ModRevision))
			ops = append(ops, clientv3.OpDelete(string(kv.Key)))
			ops = append(ops, releaseOps(st.Object)...)
		}
		// Nothing may appear in the namespace between the read and the
		// delete: compare the count of keys under the prefix via the
		// newest create revision.
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(prefix), "<", resp.Header.Revision+1).WithPrefix())
	}
	return cmps, ops, nil
}

// UpdateStatus replaces the status of an object. Spec, metadata and
// generation are untouched. The new status must keep the object valid.
// A non-zero resourceVersion is a precondition.
func (s *Store) UpdateStatus(ctx context.Context, k resource.Key, status json.RawMessage, resourceVersion int64, validate func(*resource.Object) error) (Stored, error) {
	key := objectKey(k)
	ctx, span := s.tracer.Start(ctx, "store.UpdateStatus")
	defer span.End()
	if len(status) > 0 && !json.Valid(status) {
		return Stored{}, invalid("status is not valid JSON")
	}
	for attempt := 0; attempt < s.attempts; attempt++ {
		cur, err := s.Get(ctx, k)
		if err != nil {
			return Stored{}, err
		}
		if resourceVersion != 0 && cur.Revision != resourceVersion {
			return Stored{}, conflict("%s has resourceVersion %d, not %d", key, cur.Revision, resourceVersion)
		}
		next := cur.Object.DeepCopy()
		next.Status = slices.Clone(status)
		if validate != nil {
			if err := validate(next); err != nil {
				return Stored{}, fmt.Errorf("%w: %w", ErrInvalid, err)
			}
		}
		val, err := encode(next)
		if err != nil {
			return Stored{}, invalid("status of %s: %v", key, err)
		}
		tctx, cancel := s.withTimeout(ctx)
		resp, err := s.etcd.Txn(tctx).
			If(clientv3.Compare(clientv3.ModRevision(key), "=", cur.Revision)).
			Then(changefeed.WithTrace(ctx, s.prop, clientv3.OpPut(key, string(val)))...).Commit()
		cancel()
		if err != nil {
			return Stored{}, etcdErr("update status "+key, err)
		}
		if resp.Succeeded {
			next.Metadata.ResourceVersion = strconv.FormatInt(resp.Header.Revision, 10)
			return Stored{Object: next, Revision: resp.Header.Revision}, nil
		}
		if resourceVersion != 0 {
			return Stored{}, conflict("%s changed while updating its status", key)
		}
	}
	return Stored{}, conflict("%s: gave up after %d attempts under contention", key, s.attempts)
}
