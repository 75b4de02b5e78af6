package v1alpha1_test

import (
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
