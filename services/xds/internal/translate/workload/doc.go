// Package workload is stage 2 for the workload API: it builds one
// istio.workload.Address (a Workload or a Service) from the index, with
// the aliases it answers to.
//
// Decisions, with Istio's ambient mode as the reference:
//
//   - Names: pods "<cluster>//Pod/<ns>/<name>", WorkloadEntries
//     "<cluster>/networking.istio.io/WorkloadEntry/<ns>/<name>",
//     ServiceEntry endpoints ".../ServiceEntry/<ns>/<name>/<address>",
//     services "<ns>/<hostname>" (one per ServiceEntry host). Aliases are
//     "<network>/<ip>" for every address; the default network is the empty
//     string, so its aliases read "/10.0.0.1" — exactly the key a client
//     forms for an on-demand lookup on that network. Host-network pods get
//     no aliases: their IP is their node's and names many workloads.
//   - Enrollment (tunnel_protocol HBONE): a pod labelled
//     istio.io/dataplane-mode=ambient, or in a namespace so labelled,
//     unless the pod says "none", uses host networking or carries a
//     sidecar. WorkloadEntries and ServiceEntry endpoints run no CNI, so
//     only their own label enrolls them (a VM running ztunnel). The label
//     networking.istio.io/tunnel=http marks a native HBONE endpoint.
//   - Waypoints: istio.io/use-waypoint on the object, else on its
//     namespace ("none" opts out; istio.io/use-waypoint-namespace points
//     across namespaces). The Gateway must exist, be of class
//     istio-waypoint and serve the traffic type (istio.io/waypoint-for:
//     service by default, so a namespace label alone gives services a
//     waypoint but not workloads, as in Istio). Gateway pods and Services
//     themselves never get one. The address is the Gateway's hostname
//     (status, else "<gw>.<ns>.svc.<suffix>") or status IP, port 15008 or
//     its HBONE listener's.
//   - Services map: every Service/ServiceEntry selecting the workload, by
//     "<ns>/<hostname>", with target ports resolved for this workload
//     (named targetPorts from the pod's container ports or the
//     WorkloadEntry's ports; a port that does not resolve is left out,
//     as Istio does). When two definitions share a host, core Services
//     beat ServiceEntries, then the oldest wins.
//   - Status: HEALTHY when ready (pod Ready condition, or Running without
//     conditions; WorkloadEntry unless its Healthy condition is False) and
//     not being deleted. Terminated pods and pods without IPs produce no
//     workload at all.
//   - workload_type is POD for every workload, as Istio sends today;
//     workload_name is the controller (Deployment from the ReplicaSet,
//     CronJob from the Job); canonical name/revision follow Istio's label
//     precedence.
//   - service_account defaults to "default" for WorkloadEntries and
//     ServiceEntry endpoints that name none, as Kubernetes does for pods
//     (config fills it for pods): every HBONE peer needs an identity.
//   - trust_domain is always set (not elided when it is cluster.local) so
//     a client needs no mesh default to form identities.
//   - authorization_policies: selector AuthorizationPolicies of the
//     workload's namespace and the root namespace, then the
//     PeerAuthentication-derived name (see package authz). ServiceEntry
//     endpoints are selected through their ServiceEntry's labels.
//   - Service load balancing: internalTrafficPolicy Local → STRICT [NODE];
//     trafficDistribution (or annotation networking.istio.io/
//     traffic-distribution) PreferSameZone/PreferClose → FAILOVER
//     [NETWORK, REGION, ZONE, SUBZONE], PreferSameNode adds NODE;
//     publishNotReadyAddresses → health ALLOW_ALL.
package workload
