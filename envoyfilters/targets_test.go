package envoyfilters_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshplug/meshplug/envoyfilters"
)

// EnvoyOptions.TargetUpstreams: a route per target given an upstream, matching the
// target's headers, before the default route; wrong targets are refused.
func TestEnvoyBootstrapTargetUpstreams(t *testing.T) {
	p := byName(t, "public-gateway") // routeHints targets: beta {x-route-hint: beta}, stable
	b, err := envoyfilters.EnvoyBootstrap(p, envoyfilters.EnvoyOptions{TargetUpstreams: map[string]string{"beta": "10.0.0.2:8080"}})
	require.NoError(t, err)
	y, err := envoyfilters.MarshalEnvoyYAML(b)
	require.NoError(t, err)
	assert.Contains(t, string(y), "name: upstream-beta")
	assert.Regexp(t, `(?s)name: x-route-hint\s+string_match:\s+exact: beta.*cluster: upstream-beta.*cluster: upstream\b`, string(y))

	for _, tc := range []struct {
		name    string
		targets map[string]string
		want    string
	}{
		{"unknown target", map[string]string{"gamma": "10.0.0.3:80"}, `"gamma" is not a routeHints target`},
		{"target without headers", map[string]string{"stable": "10.0.0.3:80"}, `target "stable" has no headers`},
		{"bad address", map[string]string{"beta": "nope"}, `upstream of target "beta"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := envoyfilters.EnvoyBootstrap(p, envoyfilters.EnvoyOptions{TargetUpstreams: tc.targets})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	_, err = envoyfilters.EnvoyBootstrap(byName(t, "orders"), envoyfilters.EnvoyOptions{Upstream: "127.0.0.1:1", TargetUpstreams: map[string]string{"x": "1.2.3.4:5"}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no routeHints section")
}
