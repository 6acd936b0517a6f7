package store

import (
	"net/netip"

	"github.com/ambitmesh/ambit/pkg/changefeed"
	"github.com/ambitmesh/ambit/services/config/internal/resource"
)

// allocPrefix holds address allocations: /ambit/v1/_alloc/<pool>/<ip> with
// the owning object's key as value. It is outside the resource prefix, so
// allocations never reach the change feed, and it is written in the same
// transaction as the object that owns the address.
const allocPrefix = "/ambit/v1/_alloc/"

func objectKey(k resource.Key) string {
	return changefeed.ResourceRef{Group: k.Group, Kind: k.Kind, Namespace: k.Namespace, Name: k.Name}.Key()
}

func allocKey(pool string, ip netip.Addr) string {
	return allocPrefix + pool + "/" + ip.String()
}

// kindPrefix is the key prefix of one kind, optionally in one namespace.
func kindPrefix(group, kind, namespace string) string {
	p := changefeed.GroupKind{Group: group, Kind: kind}.KeyPrefix()
	if namespace != "" {
		p += namespace + "/"
	}
	return p
}
