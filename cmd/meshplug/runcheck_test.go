package main

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshplug/meshplug/api/v1alpha1"
	"github.com/meshplug/meshplug/internal/gateway"
)

// TestCheckRun: meshplug run warns about a JWKS cluster that does not answer and a
// hinted target without an upstream, and refuses an upstream no route reaches.
func TestCheckRun(t *testing.T) {
	up, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer up.Close()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	down := closed.Addr().String()
	require.NoError(t, closed.Close())

	p, err := v1alpha1.Decode([]byte(fmt.Sprintf(`apiVersion: meshplug.io/v1alpha1
kind: TrafficPolicy
metadata: {name: edge, namespace: ns}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: g}]
  auth:
    providers:
      up:
        algorithms: [RS256]
        remote_jwks: {http_uri: {uri: "http://%s/jwks", cluster: idp-up}}
      down:
        algorithms: [RS256]
        remote_jwks: {http_uri: {uri: "http://%s/jwks", cluster: idp-down}}
    default_rule: {requires: [up, down]}
  routeHints:
    targets: [{name: beta, headers: {x-route-hint: beta}}, {name: stable}]
`, up.Addr(), down)))
	require.NoError(t, err)
	require.NoError(t, p.Validate())

	for name, c := range map[string]struct {
		ups      string
		clusters map[string]string
		warnings []string
		err      string
	}{
		"beta without upstream": {ups: "stable", warnings: []string{
			`spec.routeHints.targets[0]: target "beta" has no --upstream beta=HOST:PORT: its requests go to the default upstream "stable"`,
			`spec.auth.providers.down.remote_jwks.http_uri.cluster: cluster "idp-down" at ` + down + ` is not reachable`,
		}},
		"beta with upstream, down given a live address": {ups: "stable,beta", clusters: map[string]string{"idp-down": up.Addr().String()}},
		"upstream nothing routes to":                    {ups: "stable,gamma", err: `--upstream gamma: no route reaches it`},
		"upstream for a target without headers":         {ups: "beta,stable", err: `--upstream stable: no route reaches it`},
	} {
		var ups []gateway.Upstream
		for _, n := range strings.Split(c.ups, ",") {
			ups = append(ups, gateway.Upstream{Name: n, Address: "127.0.0.1:1"})
		}
		ws, err := checkRun(context.Background(), p, ups, c.clusters, dialTCP)
		if c.err != "" {
			assert.ErrorContains(t, err, c.err, name)
			continue
		}
		require.NoError(t, err, name)
		require.Len(t, ws, len(c.warnings), "%s: %v", name, ws)
		for i, w := range c.warnings {
			assert.Contains(t, ws[i], w, name)
		}
	}
}
