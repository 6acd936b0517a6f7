// Package gateway is the Ambit component ambit-gateway, which runs Envoy as a waypoint or ingress gateway: bootstrap, SDS, supervision and drain, and the controller that reconciles Gateway resources into running proxies (DESIGN §1, §5).
//
// The module exists so the workspace, versions.yaml and the layout checks
// cover every component from the start; its code arrives with its issue.
package gateway

// Component is the component's name in versions.yaml, metrics and
// environment variables.
const Component = "gateway"
