package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
)

// meshplug run refuses to start, with a message naming the file and field, for a bad
// policy, a missing module or a missing upstream.
func TestRunStartErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	assert.NoError(t, os.WriteFile(bad, []byte(`apiVersion: meshplug.io/v1alpha1
kind: TrafficPolicy
metadata: {name: bad, namespace: default}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: g}]
  rateLimit:
    rules:
    - name: r
      descriptors: [{key: c, header: x-c}]
      limit: {requests: 0, unit: minute}
`), 0o644))
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"bad policy", []string{"run", bad, "--upstream", "v1=127.0.0.1:1"}, []string{"bad.yaml", "rateLimit.rules[0].limit.requests"}},
		{"missing module", []string{"run", "../../demo/policy.yaml", "--upstream", "v1=127.0.0.1:1", "--wasm-dir", dir},
			[]string{"spec.auth", filepath.Join(dir, "meshplug.wasm"), "make build"}},
		{"missing filter module", []string{"run", "../../demo/policy.yaml", "--upstream", "v1=127.0.0.1:1", "--wasm-dir", dir, "--per-filter-modules"},
			[]string{"spec.auth", filepath.Join(dir, "auth.wasm"), "make build"}},
		{"no upstream", []string{"run", "../../demo/policy.yaml"}, []string{"--upstream NAME=HOST:PORT"}},
		{"demo with a policy", []string{"run", "--demo", "../../demo/policy.yaml"}, []string{"--demo takes no policy file"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, "", tc.args...)
			assert.NotEqual(t, 0, code)
			for _, w := range tc.want {
				assert.Contains(t, stderr, w)
			}
		})
	}
}
