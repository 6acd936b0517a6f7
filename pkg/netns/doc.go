// Package netns gives Ambit components safe access to Linux network
// namespaces, and builds the two-level "fabric → nodes → pods" topology the
// local runtime and the privileged tests run on.
//
// # Threads
//
// setns(2) changes the namespace of the calling OS thread only, while Go
// moves goroutines between threads freely. Every operation here that must run
// inside a namespace therefore starts a fresh goroutine, locks it to its
// thread, switches, does its work and returns WITHOUT unlocking: the runtime
// then terminates that thread instead of handing a tainted thread to other
// goroutines. Nothing ever switches back. The main thread is never used for
// this: the runtime cannot terminate it and would park it, still inside the
// namespace, for the life of the process. Sockets keep the namespace they
// were created in, so a listener or netlink handle made inside [Handle.Do]
// stays bound to that namespace when used from any goroutine afterwards.
//
// # Commands
//
// [Handle.Start] starts an external process from a thread that has joined the
// namespace (the child inherits the thread's namespaces), rather than through
// "ip netns exec". This works for handles that have no name (a netns fd
// received over ZDS), needs no iproute2 and leaves the mount namespace alone.
// The one visible difference to "ip netns exec": the child's /sys still shows
// the host's network devices, so tools should use netlink, not sysfs.
//
// # Names
//
// Named namespaces are bind mounts under [RunDir], the same convention as
// iproute2, so "ip netns exec <name>" and "ip -n <name>" work on them.
package netns
