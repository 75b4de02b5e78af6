package cpphost

// ratelimit's decision table on proxy-wasm-cpp-host.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/meshplug/meshplug/filters/ratelimit/engine/enginetest"
)

// rlTableRow is one request of the table in the scenario: its case and step.
type rlTableRow struct {
	c    *enginetest.Case
	step enginetest.Step
	i    int
}

// renameRules gives every rule of a case's configuration a name unique to the case
// ("t07-r"), so the case starts on fresh buckets although the cases share one proxy's
// shared data (a rule's buckets outlive a reconfiguration: README "Reconfiguration").
func renameRules(t *testing.T, ci int, cfg string) string {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader([]byte(cfg)))
	d.UseNumber()
	var m map[string]any
	require.NoError(t, d.Decode(&m))
	for _, r := range m["rules"].([]any) {
		rule := r.(map[string]any)
		rule["name"] = fmt.Sprintf("t%02d-%s", ci, rule["name"])
	}
	b, err := json.Marshal(m)
	require.NoError(t, err)
	return string(b)
}

// ratelimitTableScenario turns enginetest.Cases into one scenario on two workers: each
// case's configuration (rules renamed per case) delivered as an xDS update, its steps
// taking turns on the workers (so every bucket is shared through shared data), its
// clock advances as clock steps. The driver's scripted clock counts milliseconds:
// an advance that is not a whole number of them is rounded down for a row that must
// be refused and up for a row that must pass (a bucket only gains tokens with time,
// so the row still says what the table says: the 3/s refill's "not yet at
// +333,333,333 ns, at 1 ns more" runs at +333 ms and 1 ms more).
func ratelimitTableScenario(t *testing.T, p Plugin) (Scenario, []rlTableRow) {
	var configs []string
	var steps []Step
	var rows []rlTableRow
	for ci := range enginetest.Cases {
		c := &enginetest.Cases[ci]
		cfg := renameRules(t, ci, c.Config)
		for i, s := range c.Steps {
			if d := int64(s.Advance); d > 0 {
				adv := d / 1e6
				if s.Status == 200 && s.GRPCStatus == 0 && d%1e6 != 0 {
					adv++
				}
				if adv > 0 {
					configs = append(configs, cfg)
					steps = append(steps, Step{AdvanceMS: adv})
				}
			}
			r := s.Req
			st := get(r.Path, r.Headers...)
			if st.Request.Path == "" {
				st.Request.Path = "/"
			}
			st.Request.Method = r.Method
			st.Request.SourceAddress = r.Source
			if r.Source == "" {
				st.Request.SourceAddress = enginetest.DefaultSource
			}
			st.Worker = i % 2
			configs = append(configs, cfg)
			steps = append(steps, st)
			rows = append(rows, rlTableRow{c: c, step: s, i: i})
		}
	}
	sc := tableScenario(p, configs, steps)
	sc.Workers = 2
	sc.StartUnixNS = enginetest.Start.UnixNano()
	sc.SeededSharedData = []string{"meshplug.ratelimit/ratelimit/"}
	sc.SeededMetrics = []string{"meshplug.ratelimit.keys_tracked"}
	return sc, rows
}

// TestRatelimitDecisionTable: ratelimit's decision table (enginetest.Cases, the rows
// filters/ratelimit's engine tests and TestDecisionTable drive natively and through
// ratelimit.wasm on testenv: every key source — header, cookie, query parameter,
// client address with and without trusted X-Forwarded-For hops, path, method, a
// constant — with the spellings refused as ambiguous, paths in canonical form and
// rules matched under every reading, exact refill and bursts with clock steps,
// overrides and unlimited keys, missing keys allowed / anonymous / denied, match
// conditions, shadow rules and shadow mode, several rules (the tightest reported, a
// rejection taking no token, Retry-After when every rule would pass), gRPC replies,
// custom status, header names and headers off) on two workers sharing the buckets,
// through ratelimit.wasm and the bundle meshplug.wasm (root id ratelimit). Besides
// the table's statuses and headers, each rejection is checked against the README's
// responses table (details, body, content type).
func TestRatelimitDecisionTable(t *testing.T) {
	for _, p := range modules(t, "ratelimit") {
		t.Run(moduleName(p), func(t *testing.T) {
			sc, rows := ratelimitTableScenario(t, p)
			check := func(t *testing.T, o Outcome) {
				require.True(t, o.Loaded(), "loads: %+v", o.Loads)
				for _, ok := range o.Reconfigures {
					require.True(t, ok, "every configuration of the table is taken")
				}
				require.Len(t, o.Results, len(rows))
				for k, row := range rows {
					checkRatelimitRow(t, row, o.Results[k])
				}
				// The shadow rules' rows (README "shadow": count and log, never reject).
				assert.Equal(t, int64(2), o.Metrics["meshplug.ratelimit."+shadowRule(t, "shadow")+".shadow_limited"])
				assert.Zero(t, o.Metrics["meshplug.ratelimit.errors"], "no shared-data or header-read failure")
				found := false
				for _, l := range o.Logs {
					found = found || l.Message == "ratelimit: shadow: rule "+shadowRule(t, "shadow")+" would limit GET /"
				}
				assert.True(t, found, "the shadow rule's log line")
			}
			want := RunTestenv(t, sc)
			check(t, want)
			tableDifferential(t, sc, want, check)
		})
	}
}

// shadowRule is the scenario's name of the only rule of the case named name.
func shadowRule(t *testing.T, name string) string {
	for ci, c := range enginetest.Cases {
		if c.Name == name {
			return fmt.Sprintf("t%02d-%s", ci, "r")
		}
	}
	t.Fatalf("no case %q in the table", name)
	return ""
}

// checkRatelimitRow asserts what the table says of a row (enginetest.Check: status,
// gRPC status, headers) and what the README's responses table says of its reply.
func checkRatelimitRow(t *testing.T, row rlTableRow, r Result) {
	t.Helper()
	headers := map[string]string{}
	for _, h := range r.Headers {
		headers[h[0]] = h[1]
	}
	grpc := -1
	if v, ok := headers["grpc-status"]; ok && r.LocalReply {
		grpc, _ = strconv.Atoi(v)
	}
	name := fmt.Sprintf("%s, step %d", row.c.Name, row.i)
	t.Run(name, func(t *testing.T) { enginetest.Check(t, row.i, row.step, r.Status, grpc, headers) })
	s := row.step
	if s.Status == 200 && s.GRPCStatus == 0 {
		assert.NotNil(t, r.Upstream, "%s: reaches the upstream", name)
		assert.False(t, r.LocalReply, "%s: no local reply", name)
		return
	}
	assert.Nil(t, r.Upstream, "%s: does not reach the upstream", name)
	assert.True(t, r.LocalReply, "%s: a local reply", name)
	_, retry := headers["retry-after"]
	switch {
	case grpc == 3 || (grpc < 0 && r.Status == 400):
		assert.Equal(t, "meshplug_ratelimit_ambiguous_key", r.Details, name)
	case !retry:
		assert.Equal(t, "meshplug_ratelimit_missing_key", r.Details, name)
	default:
		assert.Equal(t, "meshplug_ratelimit_limited", r.Details, name)
	}
	if grpc >= 0 {
		assert.Empty(t, r.Body, "%s: trailers-only", name)
		return
	}
	body := map[string]string{
		"meshplug_ratelimit_ambiguous_key": `{"error":"bad_request","message":"ambiguous rate limit key"}`,
		"meshplug_ratelimit_missing_key":   `{"error":"rate_limited","message":"request has no rate limit key"}`,
		"meshplug_ratelimit_limited":       `{"error":"rate_limited","message":"too many requests"}`,
	}[r.Details]
	assert.JSONEq(t, body, r.Body, name)
	assert.Equal(t, "application/json", headers["content-type"], name)
}

// TestRatelimitGlobalPrecheck: the global mode's hybrid local pre-check (README
// "Hybrid local pre-check"): each request first takes a token from a local bucket of
// the same limit, and a key this proxy alone has used up is answered 429 at once,
// without a call (the step answers UNAVAILABLE: a call would let it pass under the
// default failure mode); once the local bucket refills the service is asked again, and
// its OVER_LIMIT still rejects; on two workers sharing the local buckets; ratelimit.wasm
// and meshplug.wasm.
func TestRatelimitGlobalPrecheck(t *testing.T) {
	const cluster = "outbound|8081||ratelimit.shop.svc.cluster.local"
	cfg := `{"mode": "global", "domain": "checkout", "headers_on_allowed": true,
  "global": {"cluster": "` + cluster + `", "timeout": "1s", "local_precheck": true},
  "rules": [{"name": "per-user", "descriptors": [{"key": "user", "header": "x-user-id"}],
     "limit": {"requests": 2, "unit": "minute"}, "missing_key": "deny"}]}`
	msg := func(m *rlsv3.RateLimitResponse) GrpcAnswer {
		b, err := proto.Marshal(m)
		require.NoError(t, err)
		return GrpcAnswer{Response: b}
	}
	limit := &rlsv3.RateLimitResponse_RateLimit{RequestsPerUnit: 2, Unit: rlsv3.RateLimitResponse_RateLimit_MINUTE}
	ok := msg(&rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK,
		Statuses: []*rlsv3.RateLimitResponse_DescriptorStatus{{Code: rlsv3.RateLimitResponse_OK, CurrentLimit: limit, LimitRemaining: 1,
			DurationUntilReset: durationpb.New(20 * time.Second)}}})
	over := msg(&rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OVER_LIMIT,
		Statuses: []*rlsv3.RateLimitResponse_DescriptorStatus{{Code: rlsv3.RateLimitResponse_OVER_LIMIT, CurrentLimit: limit,
			DurationUntilReset: durationpb.New(5 * time.Second)}}})
	user := func(w int, id string, a *GrpcAnswer) Step {
		s := get("/checkout", [2]string{"x-user-id", id})
		s.Worker = w
		if a != nil {
			s.GrpcCallouts = map[string]GrpcAnswer{cluster: *a}
		}
		return s
	}
	steps := []Step{
		user(0, "alice", &ok), user(1, "alice", &ok),
		user(0, "alice", nil), // the local bucket is empty: 429, no call
		user(1, "alice", nil),
		{AdvanceMS: 30_000},   // one token back locally
		user(1, "alice", &ok), // asked again
		user(0, "bob", &over), // the service says over: 429 with its reset
	}
	type want struct {
		status int
		retry  string
	}
	wants := []want{{200, ""}, {200, ""}, {429, "30"}, {429, "30"}, {200, ""}, {429, "5"}}
	for _, p := range modules(t, "ratelimit") {
		t.Run(moduleName(p), func(t *testing.T) {
			p.Config = cfg
			sc := Scenario{Workers: 2, Plugins: []Plugin{p}, Steps: steps,
				SeededSharedData: []string{"meshplug.ratelimit/ratelimit/"},
				SeededMetrics:    []string{"meshplug.ratelimit.keys_tracked"}}
			check := func(t *testing.T, o Outcome) {
				require.True(t, o.Loaded(), "loads: %+v", o.Loads)
				require.Len(t, o.Results, len(wants))
				for i, w := range wants {
					r := o.Results[i]
					assert.Equal(t, w.status, r.Status, "request %d", i)
					retry := ""
					for _, h := range r.Headers {
						if h[0] == "retry-after" {
							retry = h[1]
						}
					}
					assert.Equal(t, w.retry, retry, "request %d: retry-after", i)
					if w.status == 429 {
						assert.Equal(t, "meshplug_ratelimit_limited", r.Details, "request %d", i)
					}
				}
				assert.Equal(t, int64(2), o.Metrics["meshplug.ratelimit.service.precheck_limited"], "answered without a call")
				assert.Equal(t, int64(3), o.Metrics["meshplug.ratelimit.service.ok"], "calls answered OK")
				assert.Equal(t, int64(1), o.Metrics["meshplug.ratelimit.service.over_limit"])
				assert.Zero(t, o.Metrics["meshplug.ratelimit.service.error"], "no call was made without an answer")
			}
			want := RunTestenv(t, sc)
			check(t, want)
			tableDifferential(t, sc, want, check)
		})
	}
}
