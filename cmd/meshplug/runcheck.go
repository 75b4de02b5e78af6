package main

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/meshplug/meshplug/api/v1alpha1"
	"github.com/meshplug/meshplug/internal/gateway"
)

// checkRun is what meshplug run says before it starts serving p behind upstreams:
// an error for an upstream nothing routes to (after the first, the default, each
// --upstream serves the route hint target of its name, which must set headers), and
// warnings for what starts but cannot work as the policy reads: a route hint target
// with headers but no upstream (its requests go to the default upstream while the
// echoed target says otherwise), and a callout cluster (JWKS endpoint, authorization
// or rate limit service) that does not accept a connection (every JWT then fails
// with "signing keys unavailable"). dial connects to a host:port.
func checkRun(ctx context.Context, p *v1alpha1.TrafficPolicy, ups []gateway.Upstream, clusters map[string]string,
	dial func(ctx context.Context, addr string) error) (warnings []string, err error) {
	hinted := map[string]bool{} // targets with headers
	if rh := p.Spec.RouteHints; rh != nil {
		for _, t := range rh.Targets {
			if len(t.Headers) > 0 {
				hinted[t.Name] = true
			}
		}
	}
	named := map[string]bool{}
	for i, u := range ups {
		named[u.Name] = true
		if i > 0 && !hinted[u.Name] {
			return nil, fmt.Errorf("--upstream %s: no route reaches it: after the first (the default route), each upstream serves the routeHints target of its name, and %s has no target %q with headers", u.Name, p, u.Name)
		}
	}
	if rh := p.Spec.RouteHints; rh != nil {
		for i, t := range rh.Targets {
			if hinted[t.Name] && !named[t.Name] && (len(ups) == 0 || ups[0].Name != t.Name) {
				warnings = append(warnings, fmt.Sprintf("spec.routeHints.targets[%d]: target %q has no --upstream %s=HOST:PORT: its requests go to the default upstream %q", i, t.Name, t.Name, ups[0].Name))
			}
		}
	}
	for _, sec := range v1alpha1.Sections {
		spec := sec.Spec(&p.Spec)
		if spec == nil {
			continue
		}
		for _, c := range sec.Callouts(spec) {
			addr, err := gateway.CalloutAddress(c, clusters)
			if err != nil {
				continue // gateway.New refuses it, naming the field
			}
			if err := dial(ctx, addr); err != nil {
				warnings = append(warnings, fmt.Sprintf("spec.%s.%s: cluster %q at %s is not reachable (%v): its callouts will fail (give its address with --cluster %s=HOST:PORT)",
					sec.Field, c.Path, c.Cluster, addr, err, c.Cluster))
			}
		}
	}
	return warnings, nil
}

// dialTCP connects to addr and closes the connection: whether a callout cluster
// answers at all.
func dialTCP(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return c.Close()
}
