// Package inpod runs ztunnel's listeners inside each enrolled pod's
// network namespace (DESIGN §5), from the netns descriptors the CNI agent
// hands over through ZDS.
//
// # Listeners
//
// Per pod, three TCP listeners on the wildcard address inside the pod's
// netns: 15001 (outbound capture), 15006 (inbound plaintext) and 15008
// (inbound HBONE), ports configurable. Each has SO_REUSEPORT, so during an
// upgrade the old and the new ztunnel both listen and the kernel spreads
// new connections between them (with net.ipv4.tcp_migrate_req=1, which
// Add also sets, connections queued on a closing listener move to the
// other one instead of being reset). Each has SO_MARK 0x539, which
// accepted sockets inherit, so the pod's redirection leaves ztunnel's own
// traffic alone.
//
// # Namespaces and threads
//
// A socket belongs to the netns of the thread that created it, and setns
// only moves the calling thread (DESIGN §11). Every socket here is created
// through pkg/netns, on a locked thread that joined the pod's netns and is
// then discarded; the listeners are served from ordinary goroutines. One
// such thread per Add creates the listeners, sets the sysctl and reads the
// pod's addresses.
//
// # Connections
//
// Accepted connections are handed to the proxy's Handlers, each in its own
// goroutine; the manager does not track them. Removing a pod (Del, a
// snapshot without it, a re-add with another netns) closes its listeners
// and its netns handle and closes Pod.Done, which the proxy watches to
// drain that pod's established connections as it sees fit. Pod.Dial opens
// connections from inside the pod's netns with the mark, so they leave
// with the pod's own IP (HBONE to a destination's 15008) or reach the app
// in its own netns (inbound), and are not redirected back to ztunnel.
package inpod
