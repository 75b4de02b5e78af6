package engine_test

import (
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshplug/meshplug/filters/abi"
	"github.com/meshplug/meshplug/filters/fault/config"
	"github.com/meshplug/meshplug/filters/fault/engine"
)

// req is a Request over a header list (names lower-case, repeats allowed).
type req struct {
	headers        [][2]string
	cluster, route string
}

func (r *req) Header(name string) (string, bool) {
	var vals []string
	for _, h := range r.headers {
		if h[0] == name {
			vals = append(vals, h[1])
		}
	}
	return strings.Join(vals, ","), vals != nil
}

func (r *req) FirstHeader(name string) (string, bool) {
	for _, h := range r.headers {
		if h[0] == name {
			return h[1], true
		}
	}
	return "", false
}

func (r *req) UpstreamCluster() string { return r.cluster }
func (r *req) RouteName() string       { return r.route }

func hdrs(kv ...string) *req {
	r := &req{}
	for i := 0; i+1 < len(kv); i += 2 {
		r.headers = append(r.headers, [2]string{kv[i], kv[i+1]})
	}
	return r
}

// slots is a Slots with a local count.
type slots struct {
	active, overflow int
	held             bool
}

func (s *slots) TryAcquire(max uint64) bool {
	if s.held {
		return true
	}
	if uint64(s.active) >= max {
		s.overflow++
		return false
	}
	s.active++
	s.held = true
	return true
}

func mustParse(t testing.TB, js string) *config.Config {
	t.Helper()
	c, err := config.Parse([]byte(js))
	require.NoError(t, err)
	return c
}

func TestMatchHeader(t *testing.T) {
	for _, tc := range []struct {
		name    string
		matcher string
		r       *req
		want    bool
	}{
		{"exact", `{"name": "a", "string_match": {"exact": "x"}}`, hdrs("a", "x"), true},
		{"exact miss", `{"name": "a", "string_match": {"exact": "x"}}`, hdrs("a", "X"), false},
		{"exact ignore_case", `{"name": "a", "string_match": {"exact": "x", "ignore_case": true}}`, hdrs("a", "X"), true},
		{"prefix", `{"name": "a", "string_match": {"prefix": "/r"}}`, hdrs("a", "/reviews"), true},
		{"suffix", `{"name": "a", "suffix_match": ".json"}`, hdrs("a", "x.json"), true},
		{"contains", `{"name": "a", "contains_match": "mid"}`, hdrs("a", "amidst"), true},
		{"regex full match", `{"name": "a", "safe_regex_match": {"regex": "v[0-9]"}}`, hdrs("a", "v1"), true},
		{"regex not partial", `{"name": "a", "safe_regex_match": {"regex": "v[0-9]"}}`, hdrs("a", "xv1"), false},
		{"repeated joined", `{"name": "a", "exact_match": "1,2"}`, hdrs("a", "1", "a", "2"), true},
		{"repeated not first", `{"name": "a", "exact_match": "1"}`, hdrs("a", "1", "a", "2"), false},
		{"present", `{"name": "a", "present_match": true}`, hdrs("a", ""), true},
		{"present missing", `{"name": "a", "present_match": true}`, hdrs(), false},
		{"absent", `{"name": "a", "present_match": false}`, hdrs(), true},
		{"absent but there", `{"name": "a", "present_match": false}`, hdrs("a", "1"), false},
		{"present inverted, missing", `{"name": "a", "present_match": true, "invert_match": true}`, hdrs(), true},
		{"absent inverted, missing", `{"name": "a", "present_match": false, "invert_match": true}`, hdrs(), false},
		{"inverted exact", `{"name": "a", "exact_match": "x", "invert_match": true}`, hdrs("a", "y"), true},
		// Envoy: a missing header matches no value matcher, inverted or not.
		{"inverted exact, missing", `{"name": "a", "exact_match": "x", "invert_match": true}`, hdrs(), false},
		{"exact, missing", `{"name": "a", "exact_match": "x"}`, hdrs(), false},
		{"name case", `{"name": "End-User", "exact_match": "jason"}`, hdrs("end-user", "jason"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mustParse(t, `{"faults": [{"headers": [`+tc.matcher+`], "abort": {"http_status": 503, "percentage": {"numerator": 100}}}]}`)
			assert.Equal(t, tc.want, engine.MatchHeader(&c.Rules[0].Headers[0], tc.r))
		})
	}
}

func TestDecide(t *testing.T) {
	c := mustParse(t, `{"faults": [
	  {"name": "jason", "headers": [{"name": "end-user", "exact_match": "jason"}], "delay": {"fixed_delay": "7s", "percentage": {"numerator": 100}}},
	  {"name": "cluster", "upstream_cluster": "ratings", "abort": {"http_status": 500, "percentage": {"numerator": 100}}},
	  {"name": "node", "downstream_nodes": ["a", "b"], "abort": {"grpc_status": 14, "percentage": {"numerator": 100}}},
	  {"name": "hdr", "headers": [{"name": ":path", "prefix_match": "/hdr"}],
	   "delay": {"header_delay": {"max_delay": "1s"}, "percentage": {"numerator": 50}},
	   "abort": {"header_abort": {}, "percentage": {"numerator": 100}}},
	  {"name": "never", "abort": {"http_status": 500, "percentage": {"numerator": 0}}}
	]}`)
	rng := engine.NewRand(1)
	for _, tc := range []struct {
		name   string
		r      *req
		rule   string
		delay  time.Duration
		status uint32
		grpc   uint32
	}{
		{"jason", hdrs("end-user", "jason"), "jason", 7 * time.Second, 0, 0},
		{"cluster", &req{cluster: "ratings"}, "cluster", 0, 500, abi.GrpcStatusNone},
		{"node", hdrs("x-envoy-downstream-service-node", "b"), "node", 0, 200, 14},
		{"no node header", hdrs(), "never", 0, 0, 0},
		{"header abort", hdrs(":path", "/hdr", "x-envoy-fault-abort-request", "404"), "hdr", 0, 404, abi.GrpcStatusNone},
		{"header delay capped (50%, header lowers to 50)", hdrs(":path", "/hdr", "x-envoy-fault-delay-request", "5000", "x-envoy-fault-delay-request-percentage", "100000"), "hdr", -1, 0, 0},
		{"header delay 0%", hdrs(":path", "/hdr", "x-envoy-fault-delay-request", "5000", "x-envoy-fault-delay-request-percentage", "0"), "hdr", 0, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := engine.Decide(c, tc.r, engine.NewDraws(rng), &slots{})
			require.NotNil(t, v.Rule)
			assert.Equal(t, tc.rule, v.Rule.Name)
			if tc.delay >= 0 {
				assert.Equal(t, tc.delay, v.Delay)
			} else {
				assert.Contains(t, []time.Duration{0, time.Second}, v.Delay, "capped at max_delay")
			}
			if tc.status == 0 {
				assert.Nil(t, v.Abort)
				return
			}
			require.NotNil(t, v.Abort)
			assert.Equal(t, tc.status, v.Abort.Status)
			assert.Equal(t, tc.grpc, v.Abort.GRPCStatus)
		})
	}
}

// Envoy's order: a delay takes the slot; without a slot the delay is skipped and the
// abort tries (and overflows) again; after a delay the abort is a fresh draw.
func TestDecideSlotsAndAfterDelay(t *testing.T) {
	c := mustParse(t, `{"faults": [{"max_active_faults": 1,
	  "delay": {"fixed_delay": "1s", "percentage": {"numerator": 100}},
	  "abort": {"http_status": 503, "percentage": {"numerator": 100}}}]}`)
	rng := engine.NewRand(1)
	first := &slots{}
	v := engine.Decide(c, hdrs(), engine.NewDraws(rng), first)
	assert.Equal(t, time.Second, v.Delay)
	assert.Nil(t, v.Abort)
	assert.Equal(t, 1, first.active)

	full := &slots{active: 1}
	v = engine.Decide(c, hdrs(), engine.NewDraws(rng), full)
	assert.Zero(t, v.Delay)
	assert.Nil(t, v.Abort)
	assert.Equal(t, 2, full.overflow, "delay and abort each overflow")

	rep := engine.AfterDelay(c.Rules[0], hdrs(), rng.Uint64N(config.Million))
	require.NotNil(t, rep)
	assert.EqualValues(t, 503, rep.Status)
}

func TestAbortReplies(t *testing.T) {
	for _, tc := range []struct {
		name, abort string
		r           *req
		body, ct    string
	}{
		{"json default", `"http_status": 503`, hdrs(), config.DefaultAbortBody, "application/json"},
		{"grpc request", `"http_status": 503`, hdrs("content-type", "application/grpc+proto"), engine.GRPCMessage, ""},
		{"custom body", `"http_status": 503, "body": "x"`, hdrs(), "x", "text/plain; charset=utf-8"},
		// The reply is trailers-only with content-type application/grpc (the host's):
		// no second content-type beside it.
		{"custom body for grpc is the message", `"http_status": 503, "body": "x"`, hdrs("content-type", "application/grpc"), "x", ""},
		{"custom body for grpc+proto", `"grpc_status": 14, "body": "x"`, hdrs("content-type", "application/grpc+proto"), "x", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mustParse(t, `{"faults": [{"abort": {`+tc.abort+`, "percentage": {"numerator": 100}}}]}`)
			rep, ok := engine.AbortFor(c.Rules[0], tc.r, 0)
			require.True(t, ok)
			assert.Equal(t, tc.body, string(rep.Body))
			ct := ""
			for _, h := range rep.Headers {
				if h.Key == "content-type" {
					ct = h.Value
				}
			}
			assert.Equal(t, tc.ct, ct)
		})
	}
}

// Enabled over uniform draws in [0, 1e6): the share is within 5 standard deviations of
// the binomial mean for every denominator.
func TestEnabledIsBinomial(t *testing.T) {
	const n = 200_000
	rng := engine.NewRand(42)
	for _, p := range []config.Percent{{Numerator: 1, Denominator: 100}, {Numerator: 50, Denominator: 100}, {Numerator: 99, Denominator: 100}, {Numerator: 1, Denominator: 10_000}, {Numerator: 7777, Denominator: 10_000}, {Numerator: 1, Denominator: 1_000_000}, {Numerator: 500_000, Denominator: 1_000_000}} {
		k := 0
		for range n {
			if engine.Enabled(p, rng.Uint64N(config.Million)) {
				k++
			}
		}
		pr := float64(p.Numerator) / float64(p.Denominator)
		sigma := math.Sqrt(n * pr * (1 - pr))
		assert.InDelta(t, n*pr, float64(k), 5*sigma+1e-9, "%v: %d of %d", p, k, n)
	}
	assert.False(t, engine.Enabled(config.Percent{Numerator: 0, Denominator: 100}, 0))
	assert.True(t, engine.Enabled(config.Percent{Numerator: 100, Denominator: 100}, 999_999))
}

func TestParseUint(t *testing.T) {
	for _, tc := range []struct {
		in   string
		bits int
		want uint64
		ok   bool
	}{
		{"0", 32, 0, true}, {"42", 32, 42, true}, {" 42 ", 32, 42, true}, {"+7", 32, 7, true},
		{"4294967295", 32, 4294967295, true}, {"4294967296", 32, 0, false},
		{"18446744073709551615", 64, math.MaxUint64, true}, {"18446744073709551616", 64, 0, false},
		{"-1", 64, 0, false}, {"", 64, 0, false}, {"+", 64, 0, false}, {"1e3", 64, 0, false},
		{"0x10", 64, 0, false}, {"1 2", 64, 0, false}, {"١", 64, 0, false},
	} {
		got, ok := engine.ParseUint(tc.in, tc.bits)
		assert.Equal(t, tc.ok, ok, "%q", tc.in)
		assert.Equal(t, tc.want, got, "%q", tc.in)
	}
}

func FuzzParseUint(f *testing.F) {
	for _, s := range []string{"0", "+1", " 9 ", "18446744073709551615", "-0", "00000000000000000000001"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := engine.ParseUint(s, 64)
		ref, err := strconv.ParseUint(strings.TrimPrefix(strings.Trim(s, " \t\n\v\f\r"), "+"), 10, 64)
		trimmed := strings.Trim(s, " \t\n\v\f\r")
		if strings.HasPrefix(trimmed, "+") && (len(trimmed) == 1 || trimmed[1] == '+' || trimmed[1] == '-') {
			err = strconv.ErrSyntax // strconv would accept a second sign after ours
		}
		if ok != (err == nil && len(strings.TrimPrefix(trimmed, "+")) <= 20) || (ok && got != ref) {
			t.Fatalf("ParseUint(%q) = %d, %v; strconv %d, %v", s, got, ok, ref, err)
		}
	})
}

// FuzzHeaderControlled feeds arbitrary x-envoy-fault-* values: the engine never
// panics, never delays beyond max_delay, never aborts with a status outside 200–599
// or a gRPC status outside 0–16, and never faults more often than configured.
func FuzzHeaderControlled(f *testing.F) {
	f.Add("300", "50", "503", "14", "100")
	f.Add("99999999999999999999", "+1", "600", "17", "-1")
	f.Add(" 1 ", "4294967296", "199", "junk", "")
	c := mustParse(f, `{"faults": [{
	  "delay": {"header_delay": {"max_delay": "10s"}, "percentage": {"numerator": 40}},
	  "abort": {"header_abort": {}, "percentage": {"numerator": 30}}}]}`)
	f.Fuzz(func(t *testing.T, delay, delayPct, abort, grpc, abortPct string) {
		r := hdrs("x-envoy-fault-delay-request", delay, "x-envoy-fault-delay-request-percentage", delayPct,
			"x-envoy-fault-abort-request", abort, "x-envoy-fault-abort-grpc-request", grpc,
			"x-envoy-fault-abort-request-percentage", abortPct)
		// A draw of 39 (below 40, so the delay's percentage passes unless the header
		// lowers it) shows the bound.
		d, ok := engine.DelayFor(c.Rules[0], r, 39)
		if ok {
			if d <= 0 || d > 10*time.Second {
				t.Fatalf("delay %v outside (0, 10s]", d)
			}
			if n, valid := engine.ParseUint(delayPct, 32); valid && n <= 39 {
				t.Fatalf("delay percentage header %q did not lower the percentage", delayPct)
			}
		}
		if _, ok := engine.DelayFor(c.Rules[0], r, 40); ok {
			t.Fatal("a header raised the delay percentage above the configured 40")
		}
		rep, ok := engine.AbortFor(c.Rules[0], r, 0)
		if ok {
			if rep.Status < 200 || rep.Status > 599 {
				t.Fatalf("abort status %d", rep.Status)
			}
			if rep.GRPCStatus != abi.GrpcStatusNone && rep.GRPCStatus > 16 {
				t.Fatalf("grpc status %d", rep.GRPCStatus)
			}
		}
		if _, ok := engine.AbortFor(c.Rules[0], r, 30); ok {
			t.Fatal("a header raised the abort percentage above the configured 30")
		}
	})
}

// MayFault is false only when no rule's configured percentages pass with the draws.
func TestMayFault(t *testing.T) {
	c := mustParse(t, `{"faults": [
	  {"headers": [{"name": "a", "present_match": true}], "delay": {"fixed_delay": "1s", "percentage": {"numerator": 10}}},
	  {"abort": {"http_status": 503, "percentage": {"numerator": 1, "denominator": "TEN_THOUSAND"}}}]}`)
	assert.True(t, engine.MayFault(c, engine.Draws{Delay: 9, Abort: 5000}))
	assert.True(t, engine.MayFault(c, engine.Draws{Delay: 50, Abort: 10_000}))
	assert.False(t, engine.MayFault(c, engine.Draws{Delay: 10, Abort: 1}))
	assert.False(t, engine.MayFault(c, engine.Draws{Delay: 999_999, Abort: 999_999}))
}
