package cpphost

// The bundle meshplug.wasm on proxy-wasm-cpp-host: the four filters from one module,
// in one VM (same vm_id and code: four root contexts), each selected by its root id;
// the decisions, headers, metrics and shared data must match testenv's.

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBundle(t *testing.T) {
	wasm := BuildGuest(t, "../../filters/meshplug")
	sum := sha256.Sum256([]byte("k-ci"))
	auth := `{"api_keys": {"from_headers": ["x-api-key"], "keys": [{"consumer": "ci", "sha256": "` + hex.EncodeToString(sum[:]) + `"}]},
	  "rules": [{"match": {"prefix": "/public"}, "public": true}, {"match": {"prefix": "/"}, "requires": ["api_keys"]}]}`
	plugins := []Plugin{
		{Name: "auth", RootID: "auth", VMID: "meshplug", Wasm: wasm, Config: auth},
		{Name: "ratelimit", RootID: "ratelimit", VMID: "meshplug", Wasm: wasm, FailOpen: true,
			Config: `{"rules": [{"name": "per-consumer", "descriptors": [{"key": "c", "header": "x-consumer"}], "limit": {"requests": 2, "unit": "minute"}}]}`},
		{Name: "routehint", RootID: "routehint", VMID: "meshplug", Wasm: wasm, FailOpen: true,
			Config: `{"targets": [{"name": "canary", "headers": {"x-route-hint": "canary"}}, {"name": "stable"}],
			  "rules": [{"name": "ci", "match": {"all": [{"from": "header", "name": "x-consumer", "op": "equal", "value": "ci"}]}, "target": "canary"}]}`},
		{Name: "fault", RootID: "fault", VMID: "meshplug", Wasm: wasm, FailOpen: true,
			Config: `{"faults": [{"name": "chaos", "headers": [{"name": "x-fault", "string_match": {"exact": "yes"}}], "abort": {"http_status": 503, "percentage": {"numerator": 100}}}]}`},
	}
	key := [2]string{"x-api-key", "k-ci"}
	sc := Scenario{
		Plugins:          plugins,
		SeededSharedData: []string{"meshplug.ratelimit/ratelimit/"},
		Steps: []Step{
			get("/orders"),      // auth: 401
			get("/orders", key), // routed to canary
			get("/orders", key, [2]string{"x-fault", "yes"}), // fault: 503
			get("/orders", key), // ratelimit: 429 (third of ci's two)
			get("/public/x"),    // public: no consumer, ratelimit skips, stable
		},
	}
	out := RunTestenv(t, sc)
	statuses := out.Statuses()
	assert.Equal(t, []int{401, 200, 503, 429, 200}, statuses, "each filter of the bundle decided")
	differential(t, sc)
}

// A trap in one filter of a shared VM fails every plugin in it, each by its own
// policy: with the trapping filter (fail open) first and auth (fail closed) after it,
// the trapping request and every later one get the host's 503 (wasm_fail_stream), on
// testenv (filters/meshplug's TestBundleTrapFailurePolicies) and on cpp-host alike.
// The outcomes are checked on each host rather than compared field by field: testenv
// and the driver differ on the grpc-status they record for a non-gRPC
// wasm_fail_stream reply and on the trap's log line, which is not the bundle's matter.
func TestBundleTrap(t *testing.T) {
	wasm := BuildGuest(t, "../../filters/meshplug/testdata/trapbundle")
	sum := sha256.Sum256([]byte("k-ci"))
	auth := `{"api_keys": {"from_headers": ["x-api-key"], "keys": [{"consumer": "ci", "sha256": "` + hex.EncodeToString(sum[:]) + `"}]},
	  "rules": [{"match": {"prefix": "/"}, "requires": ["api_keys"]}]}`
	key := [2]string{"x-api-key", "k-ci"}
	sc := Scenario{
		Plugins: []Plugin{
			{Name: "trap", RootID: "trap", VMID: "bundle", Wasm: wasm, Config: `{}`, FailOpen: true},
			{Name: "auth", RootID: "auth", VMID: "bundle", Wasm: wasm, Config: auth},
		},
		Steps: []Step{get("/a", key), get("/a"), get("/a", key, [2]string{"x-trap", "1"}), get("/a", key), get("/a")},
	}
	check := func(t *testing.T, o Outcome) {
		require.True(t, o.Loaded(), "%+v", o.Loads)
		var got []string
		for _, r := range o.Results {
			got = append(got, fmt.Sprint(r.Status, " ", r.Details))
		}
		assert.Equal(t, []string{"200 ", "401 meshplug_auth_missing_credential",
			"503 wasm_fail_stream", "503 wasm_fail_stream", "503 wasm_fail_stream"}, got)
	}
	check(t, RunTestenv(t, sc))
	for _, host := range []string{Host52a0291, Host3930b7b} {
		t.Run(host, func(t *testing.T) { check(t, RunCppHost(t, host, sc)) })
	}
}
