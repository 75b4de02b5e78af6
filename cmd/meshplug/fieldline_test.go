package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

const fieldDoc = `apiVersion: meshplug.io/v1alpha1
kind: TrafficPolicy
metadata: {name: p, namespace: ns}
spec:
  selector:
    matchLabels: {app: a}
  auth:
    providers:
      "corp.v2":
        algorithms: [RS256]
        remote_jwks:
          http_uri: {uri: "https://idp/jwks"}
    rules:
    - match: {prefix: /healthz}
      public: true
    - match:
        prefix: /
      require: [corp]
      requires: [api_keys]
`

// TestFieldLine: errors point at their field's own line in many path shapes.
func TestFieldLine(t *testing.T) {
	for path, want := range map[string]int{
		"spec":                                      4,
		"spec.selector.matchLabels":                 6,
		"spec.auth.rules[1]":                        16,
		"spec.auth.rules[1].require":                18,
		"spec.auth.rules[1].match.prefix":           17,
		"spec.auth.rules[0].match.prefix":           14,
		`spec.auth.providers["corp.v2"].algorithms`: 10,
		`spec.auth.providers["corp.v2"].remote_jwks.http_uri.cluster`: 12, // missing: its parent
		"spec.auth.rules[7].match":                                    13, // no such item: the array
		"metadata.name":                                               3,
		"nonsense[":                                                   0,
	} {
		assert.Equal(t, want, fieldLine([]byte(fieldDoc), path), path)
	}
	assert.Equal(t, 0, fieldLine([]byte("a: [\n"), "a"), "invalid YAML")
}

// TestDidYouMean: unknown fields get the nearest field of their parent type, through
// slices, maps and inline structs; far-off names get none.
func TestDidYouMean(t *testing.T) {
	for path, want := range map[string]string{
		"spec.auth.rules[0].require":                ` (did you mean "requires"?)`,
		"spec.auth.rulez":                           ` (did you mean "rules"?)`,
		"spec.selectr":                              ` (did you mean "selector"?)`,
		"spec.atachTo":                              ` (did you mean "attachTo"?)`,
		`spec.auth.providers["corp.v2"].remote_jwk`: ` (did you mean "remote_jwks"?)`,
		"spec.rateLimit.rules[2].limit.request":     ` (did you mean "requests"?)`,
		"apiVersio":                                 ` (did you mean "apiVersion"?)`,
		"spec.auth.rules[0].xyzzy":                  "",
		"spec.auth.rules[0]":                        "",
		"spec.nosuch.field":                         "",
	} {
		assert.Equal(t, want, didYouMean(path), path)
	}
}
