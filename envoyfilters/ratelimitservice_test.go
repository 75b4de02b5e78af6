package envoyfilters_test

import (
	"os"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshplug/meshplug/api/v1alpha1"
	"github.com/meshplug/meshplug/envoyfilters"
	ratelimitconfig "github.com/meshplug/meshplug/filters/ratelimit/config"
	"github.com/meshplug/meshplug/internal/crdschema"
	"github.com/meshplug/meshplug/internal/envoyvalidate"
)

const globalExampleFile = "../deploy/examples/ratelimit-global.yaml"

func globalExample(t *testing.T) *v1alpha1.TrafficPolicy {
	t.Helper()
	b, err := os.ReadFile(globalExampleFile)
	require.NoError(t, err)
	docs := crdschema.SplitYAML(b)
	require.Len(t, docs, 1)
	p, err := v1alpha1.Decode(docs[0])
	require.NoError(t, err)
	return p
}

// TestRateLimitServiceConfig: the service's descriptor tree of the global example
// (golden), and the shape the filter's descriptors need: a generic_key branch per rule,
// one level per entry, overrides as value paths.
func TestRateLimitServiceConfig(t *testing.T) {
	p := globalExample(t)
	c, err := envoyfilters.RateLimitService(p)
	require.NoError(t, err)
	out, err := envoyfilters.MarshalRateLimitService(c)
	require.NoError(t, err)
	golden(t, p.Name+".ratelimit-config.yaml", out)

	assert.Equal(t, "checkout", c.Domain)
	require.Len(t, c.Descriptors, 2)
	user := c.Descriptors[0]
	assert.Equal(t, ratelimitconfig.RuleKey, user.Key)
	assert.Equal(t, "per-user", user.Value)
	require.Len(t, user.Descriptors, 3)
	assert.Equal(t, envoyfilters.RateLimitServiceDescriptor{Key: "user", Value: "ci-bot", RateLimit: &envoyfilters.RateLimitServiceLimit{Unlimited: true}}, user.Descriptors[0])
	assert.Equal(t, "partner-*", user.Descriptors[1].Value)
	assert.Equal(t, &envoyfilters.RateLimitServiceLimit{Unit: "minute", RequestsPerUnit: 100}, user.Descriptors[2].RateLimit)
	path := c.Descriptors[1].Descriptors[0].Descriptors[0]
	assert.Equal(t, "path", path.Key)
	assert.Equal(t, &envoyfilters.RateLimitServiceLimit{Unit: "second", RequestsPerUnit: 20}, path.RateLimit)

	// An override repeating the default path keeps its own limit (overrides first).
	c, err = envoyfilters.RateLimitServiceFromSpec(&ratelimitconfig.Spec{Mode: "global", Global: &ratelimitconfig.GlobalSpec{Cluster: "rls"},
		Rules: []ratelimitconfig.RuleSpec{{Name: "r", Descriptors: []ratelimitconfig.DescriptorSpec{{Key: "k", Header: "x-k"}},
			Limit:     ratelimitconfig.LimitSpec{Requests: 1, Unit: "second"},
			Overrides: []ratelimitconfig.OverrideSpec{{Values: map[string]string{"k": "*"}, Limit: &ratelimitconfig.LimitSpec{Requests: 5, Unit: "hour"}}}}}})
	require.NoError(t, err)
	assert.Equal(t, &envoyfilters.RateLimitServiceLimit{Unit: "hour", RequestsPerUnit: 5}, c.Descriptors[0].Descriptors[0].RateLimit)

	_, err = envoyfilters.RateLimitServiceFromSpec(&ratelimitconfig.Spec{Rules: []ratelimitconfig.RuleSpec{{Name: "r",
		Descriptors: []ratelimitconfig.DescriptorSpec{{Key: "k", Value: "v"}}, Limit: ratelimitconfig.LimitSpec{Requests: 1, Unit: "second"}}}})
	assert.ErrorContains(t, err, `mode "global"`)
}

// TestGlobalRateLimitRendering: the envoy.yaml of the global example has the service's
// cluster speaking HTTP/2 (Envoy's gRPC client needs it), validated like every
// bootstrap; the WasmPlugin is golden and valid against Istio's CRD.
func TestGlobalRateLimitRendering(t *testing.T) {
	p := globalExample(t)
	bs, err := envoyfilters.EnvoyBootstrap(p, envoyfilters.EnvoyOptions{})
	require.NoError(t, err)
	out, err := envoyfilters.MarshalEnvoyYAML(bs)
	require.NoError(t, err)
	golden(t, p.Name+".envoy.yaml", out)
	got, err := envoyvalidate.BootstrapYAML(out)
	require.NoError(t, err)
	var rls *clusterv3.Cluster
	for _, c := range got.GetStaticResources().GetClusters() {
		if c.GetName() == "outbound|8081||ratelimit.shop.svc.cluster.local" {
			rls = c
		}
	}
	require.NotNil(t, rls, "the rate limit service's cluster")
	assert.Equal(t, "ratelimit.shop.svc.cluster.local", rls.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress().GetAddress())
	var po upstreamhttpv3.HttpProtocolOptions
	require.NoError(t, rls.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].UnmarshalTo(&po))
	assert.NotNil(t, po.GetExplicitHttpConfig().GetHttp2ProtocolOptions())

	ws, err := envoyfilters.WasmPlugins(p, options)
	require.NoError(t, err)
	require.Len(t, ws, 1)
	wout, err := envoyfilters.MarshalYAML(ws[0])
	require.NoError(t, err)
	golden(t, p.Name+".wasmplugin.yaml", wout)
	for _, doc := range crdschema.SplitYAML(wout) {
		assert.NoError(t, istioCRDs(t).ValidateYAML(doc))
	}
}
