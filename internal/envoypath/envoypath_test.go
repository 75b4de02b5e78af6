package envoypath_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/meshplug/meshplug/internal/envoypath"
)

// The examples of Istio's path normalization reference (security/normalization) and
// of Envoy's HCM field docs, per preset.
func TestNormalize(t *testing.T) {
	fwd := func(p string) envoypath.Result { return envoypath.Result{Outcome: envoypath.Forward, Path: p} }
	for _, c := range []struct {
		name, in string
		o        envoypath.Options
		want     envoypath.Result
	}{
		{"none keeps everything", "/a/../b//%2Fc", envoypath.IstioNone, fwd("/a/../b//%2Fc")},
		{"base dot segments", "/a/../b", envoypath.IstioBase, fwd("/b")},
		{"base backslash", `\da`, envoypath.IstioBase, fwd("/da")},
		{"base keeps double slash", "//admin//x", envoypath.IstioBase, fwd("//admin//x")},
		{"base keeps escaped slash", "/a%2fb", envoypath.IstioBase, fwd("/a%2Fb")},
		{"base decodes unreserved", "/%61%2D%2e%5f%7E%30", envoypath.IstioBase, fwd("/a-._~0")},
		{"base encoded dot segment", "/a/%2e%2E/b", envoypath.IstioBase, fwd("/b")},
		{"base keeps path params", "/a/..;/b", envoypath.IstioBase, fwd("/a/..;/b")},
		{"base rejects %00", "/a%00", envoypath.IstioBase, envoypath.Result{Outcome: envoypath.Reject}},
		{"base keeps query", "/a/../b?x=/../%2F", envoypath.IstioBase, fwd("/b?x=/../%2F")},
		{"base empty segment popped by dot-dot", "/a//../b", envoypath.IstioBase, fwd("/a/b")},
		{"merge slashes", "/a//b", envoypath.IstioMergeSlashes, fwd("/a/b")},
		{"decode and merge", "/a%2fb%5Cc", envoypath.IstioDecodeAndMergeSlashes, fwd("/a/b/c")},
		{"decode before dot segments", "/public/..%2Fadmin", envoypath.IstioDecodeAndMergeSlashes, fwd("/admin")},
		{"rendered redirects escaped slashes", "/a%2Fb/../c", envoypath.Rendered, envoypath.Result{Outcome: envoypath.Redirect, Path: "/a/c"}},
		{"raw space rejected by the codec", "/a b", envoypath.IstioNone, envoypath.Result{Outcome: envoypath.Reject}},
	} {
		t.Run(c.name, func(t *testing.T) {
			assert.Equal(t, c.want, envoypath.Normalize(c.in, c.o))
		})
	}
}
