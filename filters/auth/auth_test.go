//go:build !wasip1

package main

// These tests drive the compiled auth.wasm through testenv: the same decision table as
// the native engine tests, then everything that needs the proxy around it — identity
// headers, remote JWKS over real loopback HTTP, ext_authz, gRPC replies, several
// workers, metrics and configuration errors.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshplug/meshplug/filters/auth/config"
	"github.com/meshplug/meshplug/filters/auth/engine"
	"github.com/meshplug/meshplug/filters/auth/engine/enginetest"
	"github.com/meshplug/meshplug/filters/auth/jwt"
	"github.com/meshplug/meshplug/filters/auth/jwt/jwttest"
	"github.com/meshplug/meshplug/testenv"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func authWasm(t testing.TB) []byte {
	t.Helper()
	return testenv.MustBuildGuest(t, ".")
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// start runs auth.wasm with cfg (a JSON-ready map or raw JSON bytes).
func start(t testing.TB, opts testenv.Options, cfg any) *testenv.Host {
	t.Helper()
	raw, ok := cfg.([]byte)
	if !ok {
		raw = mustJSON(t, cfg)
	}
	return testenv.NewForTest(t, opts, testenv.Plugin{Name: "auth", RootID: "auth", Wasm: authWasm(t), Config: raw})
}

func do(t testing.TB, h *testenv.Host, req testenv.Request) *testenv.Response {
	t.Helper()
	return h.MustDo(t, req)
}

func metric(h *testenv.Host, name string) int64 {
	v, _ := h.Metric(name)
	return v
}

// waitFor polls cond (an asynchronous callout completing); it bounds the wait, it does
// not assert on speed.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestDecisionTable replays the engine's decision table through auth.wasm: the same
// rows the native engine tests check, now with real header maps, local replies and
// identity headers on the upstream request.
func TestDecisionTable(t *testing.T) {
	cfg, err := config.Parse(mustJSON(t, enginetest.Config()))
	if err != nil {
		t.Fatal(err)
	}
	h := start(t, testenv.Options{Clock: testenv.NewFakeClock(enginetest.Now)}, enginetest.Config())
	ran := 0
	for _, c := range enginetest.DecideCases() {
		if c.Kind == engine.FetchJWKS || c.Kind == engine.CallExtAuthz {
			continue // need a JWKS server / authz service: see their own tests
		}
		ran++
		t.Run(c.Name, func(t *testing.T) {
			// A client-supplied copy of every identity header must never survive, in
			// any spelling an upstream may read as the same name.
			hdrs := c.HeaderLines()
			for _, name := range cfg.IdentityHeaders {
				hdrs = append(hdrs, [2]string{name, "spoofed"}, [2]string{strings.ReplaceAll(name, "-", "_"), "spoofed"},
					[2]string{strings.ToUpper(strings.ReplaceAll(name, "-", "_")), "spoofed"})
			}
			resp := do(t, h, testenv.Request{Method: c.Method, Path: c.Path, Headers: hdrs})
			switch c.Kind {
			case engine.Allow:
				if resp.LocalReply || resp.Upstream == nil {
					t.Fatalf("want allowed, got %d %s (%s)", resp.Status, resp.Body, resp.Details)
				}
				up := resp.Upstream
				for _, name := range cfg.IdentityHeaders {
					got, _ := up.Headers.Get(name)
					want, set := c.Set[name]
					if got == "spoofed" {
						t.Errorf("client-supplied %s reached the upstream", name)
					}
					if c.Set != nil && set && got != want {
						t.Errorf("%s = %q, want %q", name, got, want)
					}
					if c.Set != nil && !set && got != "" {
						t.Errorf("%s = %q, want absent", name, got)
					}
				}
				for _, name := range c.Remove {
					if v, ok := up.Headers.Get(name); ok {
						t.Errorf("credential header %s = %q reached the upstream", name, v)
					}
				}
				for _, kv := range up.Headers {
					if kv.Value == "spoofed" {
						t.Errorf("client-supplied %s reached the upstream", kv.Key)
					}
					if strings.Contains(kv.Value, "forged") {
						t.Errorf("unverified credential %s: %s reached the upstream", kv.Key, kv.Value)
					}
				}
				if strings.Contains(up.Path, "forged") {
					t.Errorf("unverified credential reached the upstream in %s", up.Path)
				}
				if c.NewPath == "" && !strings.Contains(c.Path, "?") && up.Path != c.Path {
					t.Errorf("upstream path %q, want %q", up.Path, c.Path)
				}
				if c.NewPath != "" && up.Path != c.NewPath {
					t.Errorf("upstream path %q, want %q", up.Path, c.NewPath)
				}
			case engine.Deny:
				if !resp.LocalReply || resp.Upstream != nil {
					t.Fatalf("want denied, upstream reached: status %d", resp.Status)
				}
				if resp.Status != c.Status {
					t.Errorf("status %d, want %d", resp.Status, c.Status)
				}
				if want := "meshplug_auth_" + string(c.Reason); resp.Details != want {
					t.Errorf("details %q, want %q", resp.Details, want)
				}
				var body map[string]string
				if err := json.Unmarshal(resp.Body, &body); err != nil || body["error_description"] != c.Reason.Description() {
					t.Errorf("body %q", resp.Body)
				}
				www, _ := resp.Headers.Get("www-authenticate")
				if c.WWWAuth == "-" && www != "" || c.WWWAuth != "-" && !strings.Contains(www, c.WWWAuth) {
					t.Errorf("www-authenticate %q, want %q", www, c.WWWAuth)
				}
				if ct, _ := resp.Headers.Get("content-type"); ct != "application/json" {
					t.Errorf("content-type %q", ct)
				}
			}
		})
	}
	if ran < 40 {
		t.Fatalf("only %d table rows ran", ran)
	}
	if metric(h, engine.MetricAllowed) == 0 || metric(h, engine.MetricDeniedPrefix+string(engine.ReasonExpired)) == 0 {
		t.Errorf("allowed/denied metrics not counted: %v", h.Metrics())
	}
}

func corpConfig(extra map[string]any) map[string]any {
	m := map[string]any{
		"providers": map[string]any{"corp": map[string]any{
			"issuer": "https://idp", "audiences": []any{"api"}, "algorithms": []any{"RS256", "ES256", "EdDSA", "HS256"},
			"local_jwks":       map[string]any{"inline_string": jwttest.JWKS(signers...)},
			"claim_to_headers": []any{map[string]any{"claim": "sub", "header": "x-user-id"}},
		}},
		"rules": []any{
			map[string]any{"match": map[string]any{"prefix": "/healthz"}, "public": true},
			map[string]any{"match": map[string]any{"prefix": "/"}, "requires": []any{"corp"}},
		},
	}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

var (
	rsSigner = enginetest.RS
	esSigner = enginetest.ES
	edSigner = jwttest.New(jwt.EdDSA, "ed1")
	hsSigner = enginetest.HS
	signers  = []*jwttest.Signer{rsSigner, esSigner, edSigner, hsSigner}
)

func corpToken(s *jwttest.Signer, sub string, now time.Time) string {
	return s.Sign(map[string]any{"iss": "https://idp", "aud": "api", "sub": sub,
		"iat": now.Unix() - 5, "exp": now.Unix() + 300})
}

func TestIdentityHeadersAndCache(t *testing.T) {
	now := time.Now()
	h := start(t, testenv.Options{}, corpConfig(nil))
	spoof := [][2]string{{"x-user-id", "admin"}, {"x-consumer", "admin"}, {"x-auth-provider", "corp"}}

	// Public route: spoofed identity removed, nothing set.
	resp := do(t, h, testenv.Request{Path: "/healthz", Headers: spoof})
	for _, n := range []string{"x-user-id", "x-consumer", "x-auth-provider"} {
		if v, ok := resp.Upstream.Headers.Get(n); ok {
			t.Errorf("public route: %s = %q reached the upstream", n, v)
		}
	}
	// Denied: 401 with the RFC 6750 challenge.
	resp = do(t, h, testenv.Request{Path: "/api", Headers: spoof})
	if resp.Status != 401 || resp.Upstream != nil {
		t.Fatalf("no credential: status %d", resp.Status)
	}
	if www, _ := resp.Headers.Get("www-authenticate"); www != `Bearer realm="meshplug"` {
		t.Errorf("www-authenticate = %q", www)
	}
	// Allowed with every algorithm; identity from the token only.
	for _, s := range signers {
		tok := corpToken(s, "user-"+string(s.Alg.String()), now)
		for i := 0; i < 3; i++ {
			resp = do(t, h, testenv.Request{Path: "/api", Headers: append([][2]string{{"authorization", "Bearer " + tok}}, spoof...)})
			if resp.Upstream == nil {
				t.Fatalf("%v: denied %d %s", s.Alg, resp.Status, resp.Body)
			}
			if got := resp.Upstream.Headers.Values("x-user-id"); !slices.Equal(got, []string{"user-" + s.Alg.String()}) {
				t.Errorf("%v: x-user-id = %v", s.Alg, got)
			}
			if v, _ := resp.Upstream.Headers.Get("x-consumer"); v != "user-"+s.Alg.String() {
				t.Errorf("%v: x-consumer = %q", s.Alg, v)
			}
			if _, ok := resp.Upstream.Headers.Get("authorization"); ok {
				t.Errorf("%v: the token was forwarded (forward: false)", s.Alg)
			}
		}
	}
	// A repeated credential header is refused: an upstream reading the other value
	// would get a credential nobody verified.
	tok := corpToken(rsSigner, "alice", now)
	resp = do(t, h, testenv.Request{Path: "/api", Headers: [][2]string{{"authorization", "Bearer " + tok}, {"authorization", "Bearer forged"}}})
	if resp.Status != 401 || resp.Details != "meshplug_auth_ambiguous_credential" || resp.Upstream != nil {
		t.Errorf("repeated authorization: %d %q", resp.Status, resp.Details)
	}
	if www, _ := resp.Headers.Get("www-authenticate"); www != `Bearer realm="meshplug"` { // RFC 9110 §11.6.1
		t.Errorf("repeated authorization: www-authenticate = %q", www)
	}
	// One miss then two hits per token.
	if hit, miss := metric(h, engine.MetricCacheHit), metric(h, engine.MetricCacheMiss); hit != 8 || miss != 4 {
		t.Errorf("cache hits %d misses %d, want 8 and 4", hit, miss)
	}
}

func TestCacheHonoursExpiry(t *testing.T) {
	clock := testenv.NewFakeClock(enginetest.Now)
	h := start(t, testenv.Options{Clock: clock}, corpConfig(nil))
	tok := corpToken(rsSigner, "alice", enginetest.Now) // exp = now+300, skew 60
	req := testenv.Request{Path: "/api", Headers: [][2]string{{"authorization", "Bearer " + tok}}}
	if resp := do(t, h, req); resp.Upstream == nil {
		t.Fatalf("fresh token denied: %s", resp.Body)
	}
	clock.Advance(359 * time.Second)
	if resp := do(t, h, req); resp.Upstream == nil {
		t.Fatalf("token within skew denied: %s", resp.Body)
	}
	clock.Advance(2 * time.Second)
	resp := do(t, h, req)
	if resp.Status != 401 || resp.Details != "meshplug_auth_expired" {
		t.Fatalf("expired cached token: status %d details %q", resp.Status, resp.Details)
	}
}

// jwksServer is a real loopback JWKS endpoint whose behaviour the test switches.
type jwksServer struct {
	*httptest.Server
	mu      sync.Mutex
	body    string
	status  int
	delay   time.Duration
	fetches atomic.Int64
}

func newJWKSServer(t *testing.T, body string) *jwksServer {
	j := &jwksServer{body: body, status: 200}
	j.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		j.fetches.Add(1)
		j.mu.Lock()
		body, status, delay := j.body, j.status, j.delay
		j.mu.Unlock()
		if delay > 0 {
			time.Sleep(delay)
		}
		if r.URL.Path != "/keys" || r.Method != "GET" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("content-type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(j.Close)
	return j
}

func (j *jwksServer) set(body string, status int, delay time.Duration) {
	j.mu.Lock()
	j.body, j.status, j.delay = body, status, delay
	j.mu.Unlock()
}

func (j *jwksServer) addr() string { return strings.TrimPrefix(j.URL, "http://") }

func remoteConfig(timeout string) map[string]any {
	return map[string]any{
		"providers": map[string]any{"idp": map[string]any{
			"issuer": "https://idp", "algorithms": []any{"ES256"},
			"remote_jwks": map[string]any{
				"http_uri":       map[string]any{"uri": "http://idp.local/keys", "cluster": "idp", "timeout": timeout},
				"cache_duration": "600s", "refresh_before": "60s", "min_refetch_interval": "30s",
				"backoff": map[string]any{"base_interval": "1s", "max_interval": "8s"},
			},
		}},
		"rules": []any{map[string]any{"match": map[string]any{"prefix": "/"}, "requires": []any{"idp"}}},
	}
}

func idpToken(s *jwttest.Signer, now time.Time) string {
	return s.Sign(map[string]any{"iss": "https://idp", "sub": "alice", "iat": now.Unix(), "exp": now.Unix() + 3600})
}

func TestRemoteJWKS(t *testing.T) {
	key1 := jwttest.New(jwt.ES256, "k1")
	key2 := jwttest.New(jwt.ES256, "k2")
	srv := newJWKSServer(t, jwttest.JWKS(key1))
	clock := testenv.NewFakeClock(enginetest.Now)
	h := start(t, testenv.Options{Clock: clock, Workers: 2, Clusters: map[string]string{"idp": srv.addr()}}, remoteConfig("1s"))
	now := enginetest.Now
	req := func(tok string, worker int) *testenv.Response {
		return do(t, h, testenv.Request{Worker: worker, Path: "/x", Headers: [][2]string{{"authorization", "Bearer " + tok}}})
	}

	// Every worker fetches at start; a request that arrives first waits for the fetch,
	// body included.
	for w := 0; w < 2; w++ {
		resp := do(t, h, testenv.Request{Worker: w, Method: "POST", Path: "/x", Body: []byte("b"),
			Headers: [][2]string{{"authorization", "Bearer " + idpToken(key1, now)}}})
		if resp.Upstream == nil || string(resp.Upstream.Body) != "b" {
			t.Fatalf("worker %d: first request: %d %s", w, resp.Status, resp.Details)
		}
	}
	waitFor(t, "both workers' fetches", func() bool { return metric(h, engine.MetricJWKSFetchSuccess) == 2 })

	// Rotation: an unknown kid refetches, at most once per min_refetch_interval.
	srv.set(jwttest.JWKS(key1, key2), 200, 0)
	resp := req(idpToken(key2, now), 0)
	if resp.Status != 401 || resp.Details != "meshplug_auth_unknown_kid" {
		t.Fatalf("new kid within min_refetch_interval: %d %s", resp.Status, resp.Details)
	}
	before := srv.fetches.Load()
	clock.Advance(31 * time.Second)
	if resp := req(idpToken(key2, now), 0); resp.Upstream == nil {
		t.Fatalf("new kid after the refetch interval: %d %s", resp.Status, resp.Details)
	}
	if srv.fetches.Load() <= before {
		t.Error("unknown kid did not refetch")
	}

	// Outage: after expiry the refresh fails, stale keys are kept, failures counted.
	srv.set("", 500, 0)
	failures := metric(h, engine.MetricJWKSFetchFailure)
	clock.Advance(600 * time.Second)
	waitFor(t, "a failed refresh", func() bool { return metric(h, engine.MetricJWKSFetchFailure) > failures })
	if resp := req(idpToken(key1, now), 1); resp.Upstream == nil {
		t.Fatalf("stale keys not kept during the outage: %d %s", resp.Status, resp.Details)
	}

	// Garbage: a 200 that is not a JWKS counts as a failure too, keys still kept.
	srv.set("<html>oops</html>", 200, 0)
	failures = metric(h, engine.MetricJWKSFetchFailure)
	clock.Advance(10 * time.Second) // past the backoff
	waitFor(t, "a garbage refresh", func() bool { return metric(h, engine.MetricJWKSFetchFailure) > failures })
	if resp := req(idpToken(key1, now), 0); resp.Upstream == nil {
		t.Fatalf("garbage JWKS dropped the keys: %d %s", resp.Status, resp.Details)
	}

	// Recovery.
	srv.set(jwttest.JWKS(key2), 200, 0)
	ok := metric(h, engine.MetricJWKSFetchSuccess)
	clock.Advance(10 * time.Second)
	waitFor(t, "a successful refresh", func() bool { return metric(h, engine.MetricJWKSFetchSuccess) >= ok+2 })
	if resp := req(idpToken(key1, now), 0); resp.Status != 401 {
		t.Errorf("key removed from the JWKS still verifies: %d", resp.Status)
	}
}

func TestRemoteJWKSUnavailable(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(*jwksServer)
	}{
		{"server error", func(s *jwksServer) { s.set("", 503, 0) }},
		{"garbage", func(s *jwksServer) { s.set("not json", 200, 0) }},
		{"slow", func(s *jwksServer) { s.set(jwttest.JWKS(enginetest.ES), 200, 2*time.Second) }},
		{"no server", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := "127.0.0.1:1"
			if tc.setup != nil {
				srv := newJWKSServer(t, "")
				tc.setup(srv)
				addr = srv.addr()
			} else {
				l, _ := net.Listen("tcp", "127.0.0.1:0")
				addr = l.Addr().String()
				l.Close()
			}
			h := start(t, testenv.Options{Clusters: map[string]string{"idp": addr}}, remoteConfig("200ms"))
			resp := do(t, h, testenv.Request{Path: "/x", Headers: [][2]string{{"authorization", "Bearer " + idpToken(enginetest.ES, time.Now())}}})
			if resp.Status != 401 || resp.Details != "meshplug_auth_jwks_unavailable" {
				t.Fatalf("status %d details %q body %s", resp.Status, resp.Details, resp.Body)
			}
			if metric(h, engine.MetricJWKSFetchFailure) == 0 {
				t.Error("fetch failure not counted")
			}
		})
	}
}

func TestExtAuthz(t *testing.T) {
	var seen atomic.Value
	authz := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Store(r.Method + " " + r.URL.RequestURI() + " auth=" + r.Header.Get("authorization") + " other=" + r.Header.Get("x-other") +
			" ext-user=" + r.Header.Get("x-ext-user") + r.Header.Get("x_ext_user"))
		switch r.Header.Get("authorization") {
		case "Bearer good":
			w.Header().Set("x-ext-user", "alice")
			w.Header().Set("x-not-allowed", "leak")
			w.WriteHeader(200)
		case "Bearer slow":
			time.Sleep(time.Second)
			w.WriteHeader(200)
		case "Bearer broken":
			w.WriteHeader(503)
		default:
			w.Header().Set("www-authenticate", `Bearer realm="ext"`)
			w.WriteHeader(403)
			io.WriteString(w, "go away")
		}
	}))
	defer authz.Close()
	cfg := func(failAllow bool) map[string]any {
		return map[string]any{
			"ext_authz": map[string]any{
				"http_service":             map[string]any{"cluster": "authz", "path_prefix": "/check", "timeout": "200ms"},
				"allowed_request_headers":  []any{"authorization", "x-ext-user"},
				"allowed_upstream_headers": []any{"x-ext-user"},
				"failure_mode_allow":       failAllow,
				"status_on_error":          503,
			},
			"rules": []any{map[string]any{"match": map[string]any{"prefix": "/"}, "requires": []any{"ext_authz"}}},
		}
	}
	clusters := map[string]string{"authz": strings.TrimPrefix(authz.URL, "http://")}
	h := start(t, testenv.Options{Clusters: clusters}, cfg(false))
	req := func(token string) *testenv.Response {
		return do(t, h, testenv.Request{Method: "POST", Path: "/orders?id=7", Headers: [][2]string{
			{"authorization", "Bearer " + token}, {"x-other", "secret"}, {"x-ext-user", "spoofed"}, {"x_ext_user", "spoofed"}}})
	}

	resp := req("good")
	if resp.Upstream == nil {
		t.Fatalf("allowed by the service but denied: %d %s", resp.Status, resp.Body)
	}
	if got := resp.Upstream.Headers.Values("x-ext-user"); !slices.Equal(got, []string{"alice"}) {
		t.Errorf("x-ext-user = %v, want [alice]", got)
	}
	if _, ok := resp.Upstream.Headers.Get("x-not-allowed"); ok {
		t.Error("a header outside allowed_upstream_headers was copied")
	}
	// The check request is built after the identity headers were stripped: the
	// service never sees a client's x-ext-user, in any spelling.
	if s, _ := seen.Load().(string); s != "POST /check/orders?id=7 auth=Bearer good other= ext-user=" {
		t.Errorf("check request = %q", s)
	}
	// The service decides on the canonical path (what the rules matched), whatever the
	// mesh handed over; the upstream gets the path as handed over.
	resp = do(t, h, testenv.Request{Method: "POST", Path: "//orders/./%61?id=%2F", Headers: [][2]string{{"authorization", "Bearer good"}}})
	if s, _ := seen.Load().(string); s != "POST /check/orders/a?id=%2F auth=Bearer good other= ext-user=" {
		t.Errorf("check request = %q", s)
	}
	if resp.Upstream == nil || resp.Upstream.Path != "//orders/./%61?id=%2F" {
		t.Errorf("upstream request = %+v", resp.Upstream)
	}
	// A repeated header the service reads is refused before any check: the service
	// would see one value, the upstream all of them.
	seen.Store("")
	for _, lines := range [][][2]string{
		{{"authorization", "Bearer good"}, {"authorization", "Bearer forged"}},
		{{"authorization", "Bearer good"}, {"Authorization", "Bearer forged"}},
	} {
		r := do(t, h, testenv.Request{Path: "/orders", Headers: lines})
		if r.Upstream != nil || r.Status != 401 || r.Details != "meshplug_auth_ambiguous_credential" {
			t.Errorf("repeated authorization: status %d %q", r.Status, r.Details)
		}
		if www, _ := r.Headers.Get("www-authenticate"); www == "" {
			t.Error("401 without a challenge")
		}
	}
	if s, _ := seen.Load().(string); s != "" {
		t.Errorf("a refused request reached the service: %q", s)
	}
	// A request with a body and trailers waits for the decision as a whole: neither
	// may carry the held headers upstream before the service has answered.
	for _, tok := range []string{"bad", "slow"} {
		r := do(t, h, testenv.Request{Method: "POST", Path: "/upload", Body: []byte("payload"),
			Trailers: [][2]string{{"x-checksum", "1"}}, Headers: [][2]string{{"authorization", "Bearer " + tok}}})
		if r.Upstream != nil || r.Status < 400 {
			t.Errorf("%s: request with a body reached the upstream before the decision (status %d)", tok, r.Status)
		}
	}
	r := do(t, h, testenv.Request{Method: "POST", Path: "/upload", Body: []byte("payload"),
		Headers: [][2]string{{"authorization", "Bearer good"}}})
	if r.Upstream == nil || string(r.Upstream.Body) != "payload" {
		t.Errorf("allowed request with a body: upstream %v", r.Upstream)
	}

	resp = req("bad")
	if resp.Status != 403 || string(resp.Body) != "go away" || resp.Upstream != nil {
		t.Errorf("denied by the service: %d %q", resp.Status, resp.Body)
	}
	if www, _ := resp.Headers.Get("www-authenticate"); www != `Bearer realm="ext"` {
		t.Errorf("service's www-authenticate not passed on: %q", www)
	}
	for _, tok := range []string{"slow", "broken"} {
		resp = req(tok)
		if resp.Status != 503 || resp.Upstream != nil || resp.Details != "meshplug_auth_ext_authz_error" {
			t.Errorf("%s service, fail closed: %d %q", tok, resp.Status, resp.Details)
		}
	}
	// failure_mode_allow lets those through.
	h = start(t, testenv.Options{Clusters: clusters}, cfg(true))
	for _, tok := range []string{"slow", "broken"} {
		resp = req(tok)
		if resp.Upstream == nil {
			t.Errorf("%s service with failure_mode_allow: %d", tok, resp.Status)
		}
	}
}

func TestGRPCReplies(t *testing.T) {
	h := start(t, testenv.Options{}, corpConfig(nil))
	resp := do(t, h, testenv.Request{Method: "POST", Path: "/pkg.Svc/Call", Headers: [][2]string{{"content-type", "application/grpc"}}})
	if resp.GrpcStatus == nil || *resp.GrpcStatus != 16 {
		t.Fatalf("grpc status %v, want 16 UNAUTHENTICATED", resp.GrpcStatus)
	}
	all := append(append(testenv.Headers{}, resp.Headers...), resp.Trailers...)
	if v, _ := all.Get("grpc-status"); v != "16" {
		t.Errorf("grpc-status = %q", v)
	}
	if v, _ := all.Get("grpc-message"); !strings.Contains(v, "credential required") {
		t.Errorf("grpc-message = %q", v)
	}
	// 403 → 7 PERMISSION_DENIED.
	h = start(t, testenv.Options{}, corpConfig(map[string]any{"rules": []any{
		map[string]any{"match": map[string]any{"prefix": "/"}, "requires": []any{"corp"}, "allowed_consumers": []any{"ops"}}}}))
	resp = do(t, h, testenv.Request{Method: "POST", Path: "/pkg.Svc/Call", Headers: [][2]string{
		{"content-type", "application/grpc+proto"}, {"authorization", "Bearer " + corpToken(rsSigner, "alice", time.Now())}}})
	if resp.GrpcStatus == nil || *resp.GrpcStatus != 7 {
		t.Fatalf("grpc status %v, want 7 PERMISSION_DENIED", resp.GrpcStatus)
	}
	// With "grpc": false the filter passes no gRPC status; Envoy still answers a gRPC
	// request trailers-only, deriving grpc-status from the HTTP status (401 → 16) and
	// grpc-message from the body.
	h = start(t, testenv.Options{}, corpConfig(map[string]any{"grpc": false}))
	resp = do(t, h, testenv.Request{Method: "POST", Path: "/pkg.Svc/Call", Headers: [][2]string{{"content-type", "application/grpc"}}})
	all = append(append(testenv.Headers{}, resp.Headers...), resp.Trailers...)
	if v, _ := all.Get("grpc-status"); resp.GrpcStatus != nil || v != "16" {
		t.Errorf("grpc disabled: passed status %v, grpc-status %q", resp.GrpcStatus, v)
	}
	if v, _ := all.Get("grpc-message"); !strings.Contains(v, "unauthorized") {
		t.Errorf("grpc disabled: grpc-message %q, want the JSON body", v)
	}
}

// TestNotGRPCContentTypesGetHTTPReplies: what Envoy does not treat as gRPC
// (application/grpc;charset=..., grpc-web) gets the HTTP reply, with no gRPC status:
// auth decides gRPC with the one function every filter uses (httpreq.IsGRPC).
func TestNotGRPCContentTypesGetHTTPReplies(t *testing.T) {
	h := start(t, testenv.Options{}, corpConfig(nil))
	for _, ct := range []string{"application/grpc;charset=utf-8", "application/grpc-web", "application/grpc-web+proto", "Application/GRPC"} {
		resp := do(t, h, testenv.Request{Method: "POST", Path: "/pkg.Svc/Call", Headers: [][2]string{{"content-type", ct}}})
		assert.Nil(t, resp.GrpcStatus, ct)
		assert.Equal(t, 401, resp.Status, ct)
		assert.Contains(t, string(resp.Body), "unauthorized", ct)
	}
}

func TestBadConfigurationRefused(t *testing.T) {
	for _, tc := range []struct{ cfg, want string }{
		{`{`, "invalid JSON"},
		{`{"rules":[]}`, "rules"},
		{`{"providers":{"corp":{"algorithms":["none"],"local_jwks":{"inline_string":"{}"}}},"default_rule":{"requires":["corp"]}}`, "providers.corp.algorithms[0]"},
		{`{"rules":[{"match":{"regex":"("},"public":true}]}`, "rules[0].match.regex"},
		{`{"rules":[{"match":{"prefix":"/"},"requires":["nobody"]}]}`, "rules[0].requires[0]"},
		{`{"rules":[{"match":{"prefix":"/"},"public":true}],"surprise":1}`, "surprise"},
	} {
		_, err := testenv.New(context.Background(), testenv.Options{}, testenv.Plugin{Name: "auth", Wasm: authWasm(t), Config: []byte(tc.cfg)})
		if err == nil {
			t.Errorf("config %s: accepted", tc.cfg)
			continue
		}
		if !strings.Contains(err.Error(), "invalid configuration") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("config %s: error %q does not name %q", tc.cfg, err, tc.want)
		}
	}
}

func TestSeveralWorkersConcurrently(t *testing.T) {
	h := start(t, testenv.Options{Workers: 4}, corpConfig(nil))
	now := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				sub := fmt.Sprintf("u%d-%d", g, i%5)
				resp, err := h.Do(context.Background(), testenv.Request{Worker: -1, Path: "/api",
					Headers: [][2]string{{"authorization", "Bearer " + corpToken(signers[i%4], sub, now)}}})
				if err != nil {
					errs <- err
					return
				}
				if v, _ := resp.Upstream.Headers.Get("x-user-id"); resp.Upstream == nil || v != sub {
					errs <- fmt.Errorf("request %d/%d: identity %q, want %q", g, i, v, sub)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := metric(h, engine.MetricAllowed); got != 400 {
		t.Errorf("allowed = %d, want 400", got)
	}
}

// TestHandOffFields drives the identity hand-off and cache fields through auth.wasm:
// renamed identity headers, forward, forward_payload_header, consumer_claim,
// from_params / from_cookies with credential stripping, token_cache.max_ttl and a
// cache of one entry.
func TestHandOffFields(t *testing.T) {
	clock := testenv.NewFakeClock(enginetest.Now)
	now := enginetest.Now
	cfg := corpConfig(map[string]any{
		"identity":    map[string]any{"consumer_header": "x-caller", "provider_header": ""},
		"token_cache": map[string]any{"max_entries": 1, "max_ttl": "30s"},
		"realm":       "orders",
	})
	p := cfg["providers"].(map[string]any)["corp"].(map[string]any)
	p["forward"] = true
	p["forward_payload_header"] = "x-jwt"
	p["consumer_claim"] = "email"
	p["from_headers"] = []any{map[string]any{"name": "authorization", "value_prefix": "Bearer "}}
	p["from_params"] = []any{"token"}
	p["from_cookies"] = []any{"session"}
	h := start(t, testenv.Options{Clock: clock}, cfg)
	tok := rsSigner.Sign(map[string]any{"iss": "https://idp", "aud": "api", "sub": "u1", "email": "a@example.com",
		"iat": now.Unix(), "exp": now.Unix() + 3600})

	resp := do(t, h, testenv.Request{Path: "/api", Headers: [][2]string{{"authorization", "Bearer " + tok}, {"x-auth-provider", "kept"}}})
	if resp.Upstream == nil {
		t.Fatalf("denied: %d %s", resp.Status, resp.Details)
	}
	up := resp.Upstream.Headers
	if v, _ := up.Get("x-caller"); v != "a@example.com" {
		t.Errorf("x-caller (consumer_claim email) = %q", v)
	}
	if v, _ := up.Get("x-jwt"); v != strings.Split(tok, ".")[1] {
		t.Errorf("x-jwt = %q, want the payload segment", v)
	}
	if v, _ := up.Get("authorization"); v != "Bearer "+tok {
		t.Errorf("forward: true must keep the token, got %q", v)
	}
	if v, _ := up.Get("x-auth-provider"); v != "kept" {
		t.Errorf("provider_header disabled: a client's x-auth-provider is not ours to strip, got %q", v)
	}
	if _, ok := up.Get("x-consumer"); ok {
		t.Error("the default consumer header was written although renamed")
	}

	// Query parameter and cookie sources (forward: true keeps them).
	resp = do(t, h, testenv.Request{Path: "/api?a=1&token=" + tok})
	if resp.Upstream == nil || resp.Upstream.Path != "/api?a=1&token="+tok {
		t.Errorf("from_params: %d, path %v", resp.Status, resp.Upstream)
	}
	resp = do(t, h, testenv.Request{Path: "/api", Headers: [][2]string{{"cookie", "a=1; session=" + tok}}})
	if resp.Upstream == nil {
		t.Errorf("from_cookies: %d %s", resp.Status, resp.Details)
	}

	// realm in the challenge.
	resp = do(t, h, testenv.Request{Path: "/api"})
	if www, _ := resp.Headers.Get("www-authenticate"); www != `Bearer realm="orders"` {
		t.Errorf("www-authenticate = %q", www)
	}

	// max_ttl 30s: a hit within, a miss after; max_entries 1: a second token evicts.
	hits, misses := metric(h, engine.MetricCacheHit), metric(h, engine.MetricCacheMiss)
	req := testenv.Request{Path: "/api", Headers: [][2]string{{"authorization", "Bearer " + tok}}}
	do(t, h, req)
	clock.Advance(31 * time.Second)
	do(t, h, req)
	if dh, dm := metric(h, engine.MetricCacheHit)-hits, metric(h, engine.MetricCacheMiss)-misses; dh != 1 || dm != 1 {
		t.Errorf("max_ttl: hits +%d misses +%d, want +1 +1", dh, dm)
	}
	other := corpToken(rsSigner, "u2", clock.Now())
	do(t, h, testenv.Request{Path: "/api", Headers: [][2]string{{"authorization", "Bearer " + other}}})
	misses = metric(h, engine.MetricCacheMiss)
	do(t, h, req)
	if metric(h, engine.MetricCacheMiss) != misses+1 {
		t.Error("max_entries 1: the first token survived a second one")
	}
}

// TestTokenCacheMaxBytes drives token_cache.max_bytes through auth.wasm: tokens are
// cached while their counted bytes fit, a token that does not fit evicts the oldest
// unreferenced ones (CLOCK, as max_entries does), and a token counted at more than
// max_bytes is never cached. Each case sends tokens of about tokenBytes bytes in order,
// then sends them again in reverse order and checks which ones hit the cache.
func TestTokenCacheMaxBytes(t *testing.T) {
	cases := []struct {
		name       string
		maxBytes   int
		tokenBytes int
		tokens     int
		wantHits   []bool // on the second pass, newest token first
	}{
		{"three 2 KiB tokens fit in 16 KiB", 16384, 2048, 3, []bool{true, true, true}},
		{"6 KiB tokens: two fit in 16 KiB, the third evicts the first", 16384, 6144, 3, []bool{true, true, false}},
		{"6 KiB tokens in 64 KiB: all fit", 65536, 6144, 3, []bool{true, true, true}},
		{"a 15 KiB token counted at more than 16 KiB is not cached", 16384, 15360, 1, []bool{false}},
		{"7 KiB tokens: one fits in 16 KiB at a time", 16384, 7168, 2, []bool{true, false}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := corpConfig(map[string]any{"token_cache": map[string]any{"max_bytes": c.maxBytes}})
			cfg["providers"].(map[string]any)["corp"].(map[string]any)["max_token_bytes"] = 65536
			h := start(t, testenv.Options{}, cfg)
			now := time.Now()
			var reqs []testenv.Request
			for i := range c.tokens {
				claims := map[string]any{"iss": "https://idp", "aud": "api", "sub": fmt.Sprintf("u%d", i), "iat": now.Unix() - 5, "exp": now.Unix() + 300}
				tok := rsSigner.Sign(claims)
				claims["pad"] = strings.Repeat("p", (c.tokenBytes-len(tok))*3/4) // base64url: 4 characters per 3 bytes
				tok = rsSigner.Sign(claims)
				require.InDelta(t, c.tokenBytes, len(tok), 16, "token size")
				reqs = append(reqs, testenv.Request{Path: "/api", Headers: [][2]string{{"authorization", "Bearer " + tok}}})
				require.Equal(t, 200, do(t, h, reqs[i]).Status)
			}
			require.EqualValues(t, c.tokens, metric(h, engine.MetricCacheMiss), "first pass: all misses")
			var hits []bool
			for i := len(reqs) - 1; i >= 0; i-- {
				before := metric(h, engine.MetricCacheHit)
				resp := do(t, h, reqs[i])
				require.Equal(t, 200, resp.Status)
				v, _ := resp.Upstream.Headers.Get("x-user-id")
				assert.Equal(t, fmt.Sprintf("u%d", i), v, "the identity of token %d, hit or miss", i)
				hits = append(hits, metric(h, engine.MetricCacheHit) == before+1)
			}
			assert.Equal(t, c.wantHits, hits)
		})
	}
}

// TestReadmeTokenCacheExample: the README's token-cache example is a configuration
// auth.wasm starts with, its bounds are the ones the text states, and its cache works.
func TestReadmeTokenCacheExample(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	m := regexp.MustCompile("(?s)<!-- example: token-cache -->\n```json\n(.*?)```").FindSubmatch(readme)
	require.NotNil(t, m, "README has no token-cache example")
	cfg, err := config.Parse(m[1])
	require.NoError(t, err)
	assert.Equal(t, config.TokenCache{MaxEntries: 16384, MaxBytes: 16 << 20, MaxTTL: 5 * time.Minute}, cfg.TokenCache)

	// The same, with the key set inline: a token's second request is a cache hit.
	var spec map[string]any
	require.NoError(t, json.Unmarshal(m[1], &spec))
	corp := spec["providers"].(map[string]any)["corp"].(map[string]any)
	delete(corp, "remote_jwks")
	corp["local_jwks"] = map[string]any{"inline_string": jwttest.JWKS(rsSigner)}
	h := start(t, testenv.Options{}, spec)
	now := time.Now().Unix()
	tok := rsSigner.Sign(map[string]any{"iss": "https://idp.example.com", "aud": "orders", "sub": "u1", "iat": now - 5, "exp": now + 300})
	req := testenv.Request{Path: "/orders", Headers: [][2]string{{"authorization", "Bearer " + tok}}}
	for _, want := range []string{engine.MetricCacheMiss, engine.MetricCacheHit} {
		before := metric(h, want)
		require.Equal(t, 200, do(t, h, req).Status)
		assert.Equal(t, before+1, metric(h, want), want)
	}
}

// TestMemorySteady is a short memory soak: after a warm-up, ~90k more requests of every
// kind (cache hits, misses, denials, API keys) must not grow the guest's memory by more
// than 1 MiB — a leak of 12 bytes per request would exceed it. The verified-token cache
// grows as tokens come, up to its bound (token_cache.max_bytes, 1 MiB by default), so
// the warm-up first fills it with 2,000 distinct tokens: what is measured is the steady
// state, where every new token evicts.
func TestMemorySteady(t *testing.T) {
	if testing.Short() {
		t.Skip("soak")
	}
	now := time.Now()
	h := start(t, testenv.Options{}, benchConfig(true))
	hit := testenv.Request{Path: "/api", Headers: [][2]string{{"authorization", "Bearer " + corpToken(hsSigner, "alice", now)}}}
	key := testenv.Request{Path: "/key", Headers: [][2]string{{"x-api-key", benchAPIKey}}}
	bad := testenv.Request{Path: "/api", Headers: [][2]string{{"authorization", "Bearer nope"}}}
	round := func(n int) {
		for i := 0; i < n; i++ {
			do(t, h, hit)
			do(t, h, key)
			do(t, h, bad)
			if i%50 == 0 { // a new token: a cache miss and an eviction candidate
				do(t, h, testenv.Request{Path: "/api", Headers: [][2]string{{"authorization", "Bearer " + corpToken(hsSigner, fmt.Sprint("u", i), now)}}})
			}
		}
	}
	for i := 0; i < 2000; i++ { // more distinct tokens than the default max_bytes holds
		do(t, h, testenv.Request{Path: "/api", Headers: [][2]string{{"authorization", "Bearer " + corpToken(hsSigner, fmt.Sprint("fill", i), now)}}})
	}
	round(15000) // the Go heap grows to its steady size (GC pacing), then must stay
	before := h.GuestMemory(0, 0)
	round(30000)
	after := h.GuestMemory(0, 0)
	if before == 0 || after > before+1<<20 {
		t.Errorf("guest memory grew from %d to %d bytes over ~90k requests after warm-up", before, after)
	}
	t.Logf("guest memory %d → %d bytes", before, after)
}
