package v1alpha1_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshplug/meshplug/api/v1alpha1"
	"github.com/meshplug/meshplug/internal/yamldoc"
)

func TestPathWarnings(t *testing.T) {
	doc := `apiVersion: meshplug.io/v1alpha1
kind: TrafficPolicy
metadata: {name: w, namespace: ns}
spec:
  selector: {matchLabels: {app: a}}
  auth:
    path_normalization: {path_params: literal}
    rules:
    - match: {regex: "^/admin//"}
      public: true
    - match: {regex: "^/api/v[0-9]+/"}
      public: true
    default_rule: {public: true}
  rateLimit:
    rules:
    - name: r
      match: {regex: "^/%2e%2e/login"}
      descriptors: [{key: k, value: v}]
      limit: {requests: 1, unit: minute}
  routeHints:
    targets: [{name: beta, headers: {x-route-hint: beta}}]
    rules:
    - name: r
      match: {any: [{all: [{from: path, op: regex, value: "^/a%2fb"}]}]}
      target: beta
  faults:
    faults:
    - abort: {http_status: 503, percentage: {numerator: 1}}
      headers: [{name: ":path", safe_regex_match: {regex: "/x/\\.\\./y"}}]
---
apiVersion: meshplug.io/v1alpha1
kind: TrafficPolicy
metadata: {name: v, namespace: ns}
spec:
  selector: {matchLabels: {app: a}}
  auth:
    rules:
    - match: {path: "/a;b"}
      public: true
    default_rule: {public: true}
`
	var got []string
	for _, d := range yamldoc.Split([]byte(doc)) {
		p, err := v1alpha1.Decode(d.Data)
		require.NoError(t, err)
		require.NoError(t, p.Validate())
		for _, w := range p.PathWarnings() {
			got = append(got, w.Path)
		}
	}
	assert.Equal(t, []string{
		"spec.auth.path_normalization.path_params",
		"spec.auth.rules[0].match.regex",
		"spec.rateLimit.rules[0].match.regex",
		"spec.routeHints.rules[0].match.any[0].all[0].value",
		"spec.faults.faults[0].headers[0].safe_regex_match.regex",
		"spec.auth.rules[0].match.path",
	}, got)
}

// TestDirectionWarnings: on sidecars, routeHints conditions and split keys on headers
// auth writes are reported, with their path; other headers, and gateways, are not.
func TestDirectionWarnings(t *testing.T) {
	const doc = `apiVersion: meshplug.io/v1alpha1
kind: TrafficPolicy
metadata: {name: p, namespace: ns}
spec:
  SELECTOR
  auth:
    api_keys:
      keys: [{consumer: ci, sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08}]
    providers:
      corp:
        algorithms: [RS256]
        remote_jwks: {http_uri: {uri: "https://idp/jwks", cluster: idp}}
        claim_to_headers: [{claim: sub, header: X-User-Id}]
    rules:
    - match: {prefix: /}
      requires: [api_keys, corp]
  routeHints:
    targets: [{name: beta, headers: {x-route-hint: beta}}, {name: stable}]
    rules:
    - name: by-consumer
      match:
        all: [{from: header, name: x-consumer, op: equal, value: ci}]
        any: [{all: [{from: header, name: x-user-id, op: exists}]}, {all: [{from: header, name: x-team, op: exists}]}]
      target: beta
    - name: sticky
      split: {key: {header: X-Consumer}, weights: [{target: beta, weight: 1}, {target: stable, weight: 99}]}
`
	for name, c := range map[string]struct {
		selector string
		want     []string
	}{
		"sidecar": {"selector: {matchLabels: {app: a}}", []string{
			"spec.routeHints.rules[0].match.all[0].name",
			"spec.routeHints.rules[0].match.any[0].all[0].name",
			"spec.routeHints.rules[1].split.key.header",
		}},
		"classic gateway": {"selector: {matchLabels: {istio: ingressgateway}}", nil},
		"Gateway API":     {"targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: g}]", nil},
	} {
		p, err := v1alpha1.Decode([]byte(strings.Replace(doc, "SELECTOR", c.selector, 1)))
		require.NoError(t, err, name)
		require.NoError(t, p.Validate(), name)
		var got []string
		for _, w := range p.DirectionWarnings() {
			got = append(got, w.Path)
			assert.Contains(t, w.Msg, "never sees auth's value", name)
		}
		assert.Equal(t, c.want, got, name)
	}
}
