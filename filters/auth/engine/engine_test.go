package engine_test

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshplug/meshplug/filters/auth/config"
	"github.com/meshplug/meshplug/filters/auth/engine"
	"github.com/meshplug/meshplug/filters/auth/engine/enginetest"
	"github.com/meshplug/meshplug/filters/auth/jwt"
	"github.com/meshplug/meshplug/filters/auth/jwt/jwttest"
	"github.com/meshplug/meshplug/filters/httpreq"
	"github.com/meshplug/meshplug/internal/race"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var (
	rs     = enginetest.RS
	es     = enginetest.ES
	now    = enginetest.Now
	nowS   = enginetest.NowS
	apiKey = enginetest.APIKey
)

// Case is a row of the shared decision table.
type Case = enginetest.Case

func testConfig() map[string]any               { return enginetest.Config() }
func claims(kv ...any) map[string]any          { return enginetest.Claims(kv...) }
func bearer(tok string) map[string]string      { return enginetest.Bearer(tok) }
func jwtIdentity(sub string) map[string]string { return enginetest.JWTIdentity(sub) }
func withPayload(m map[string]string, tok string) map[string]string {
	return enginetest.WithPayload(m, tok)
}

func newEngine(t testing.TB, mod func(map[string]any)) *engine.Engine {
	t.Helper()
	m := testConfig()
	if mod != nil {
		mod(m)
	}
	b, _ := json.Marshal(m)
	cfg, err := config.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	return engine.New(cfg)
}

func request(c Case) *engine.Request { return c.Request(now) }

func decide(e *engine.Engine, req *engine.Request) engine.Verdict { return enginetest.Decide(e, req) }

// decideInto reads into x (reused, as the glue does) and decides.
func decideInto(e *engine.Engine, req *engine.Request, x *engine.Extracted) engine.Verdict {
	e.Read(req, x)
	return e.Decide(x)
}

func check(t *testing.T, c Case, v engine.Verdict) {
	t.Helper()
	if v.Kind != c.Kind {
		t.Fatalf("kind %v, want %v (reason %q, %s)", v.Kind, c.Kind, v.Reason, v.Detail)
	}
	if v.Reason != c.Reason {
		t.Fatalf("reason %q, want %q (%s)", v.Reason, c.Reason, v.Detail)
	}
	if c.Kind == engine.Deny {
		if v.Response == nil || v.Response.Status != c.Status {
			t.Fatalf("response %+v, want status %d", v.Response, c.Status)
		}
		var body map[string]string
		if err := json.Unmarshal([]byte(v.Response.Body), &body); err != nil || body["error_description"] != c.Reason.Description() {
			t.Fatalf("body %q", v.Response.Body)
		}
		www := ""
		for _, h := range v.Response.Headers {
			if h.Name == "www-authenticate" {
				www = h.Value
			}
		}
		if c.WWWAuth == "-" && www != "" || c.WWWAuth != "-" && !strings.Contains(www, c.WWWAuth) {
			t.Fatalf("www-authenticate %q, want %q", www, c.WWWAuth)
		}
	}
	if c.Kind == engine.Allow && c.Set != nil {
		got := map[string]string{}
		for _, h := range v.SetHeaders {
			got[h.Name] = h.Value
		}
		if len(got) != len(c.Set) {
			t.Fatalf("set headers %v, want %v", got, c.Set)
		}
		for k, want := range c.Set {
			if got[k] != want {
				t.Fatalf("header %s = %q, want %q (all: %v)", k, got[k], want, got)
			}
		}
		if strings.Join(v.RemoveHeaders, ",") != strings.Join(c.Remove, ",") {
			t.Fatalf("remove %v, want %v", v.RemoveHeaders, c.Remove)
		}
		if v.NewPath != c.NewPath {
			t.Fatalf("new path %q, want %q", v.NewPath, c.NewPath)
		}
	}
	if c.ExtraMatch != nil {
		c.ExtraMatch(t, v)
	}
}

func TestDecide(t *testing.T) {
	cases := enginetest.DecideCases()
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			e := newEngine(t, nil)
			check(t, c, decide(e, request(c)))
		})
	}
}

func TestCache(t *testing.T) {
	e := newEngine(t, nil)
	tok := rs.Sign(claims())
	c := Case{Path: "/v1/x", Headers: bearer(tok), Kind: engine.Allow, Set: withPayload(jwtIdentity("alice"), tok), Remove: []string{"authorization"}}
	v1 := decide(e, request(c))
	check(t, c, v1)
	if v1.Cache != engine.CacheMiss || e.Cache.Len() != 1 {
		t.Fatalf("first: %v, len %d", v1.Cache, e.Cache.Len())
	}
	v2 := decide(e, request(c))
	check(t, c, v2)
	if v2.Cache != engine.CacheHit || v2.Identity != v1.Identity {
		t.Fatalf("second: %v", v2.Cache)
	}
	// Rule checks still apply on a hit.
	check(t, Case{Method: "POST", Path: "/admin", Headers: bearer(tok), Kind: engine.Deny, Status: 403, Reason: engine.ReasonConsumerNotAllowed}, decide(e, request(Case{Method: "POST", Path: "/admin", Headers: bearer(tok)})))
	// Expiry honoured on a hit: exp+skew passes.
	later := request(c)
	later.Now = now.Add(661 * time.Second)
	if v := decide(e, later); v.Kind != engine.Deny || v.Reason != engine.ReasonExpired {
		t.Fatalf("expired cached token: %v %v", v.Kind, v.Reason)
	}
	// Zero allocations on a hit.
	req := request(c)
	var x engine.Extracted
	decideInto(e, req, &x)
	if a := testing.AllocsPerRun(100, func() { decideInto(e, req, &x) }); a != 0 && !race.Enabled {
		t.Fatalf("cache hit allocates %v times", a)
	}
}

func TestTokenCacheBoundsAndCollisions(t *testing.T) {
	c := engine.NewTokenCache(config.TokenCache{MaxEntries: 8, MaxTTL: time.Hour})
	id := &engine.Identity{}
	for i := 0; i < 100; i++ {
		tok := "tok" + string(rune('a'+i%26)) + strings.Repeat("x", i)
		c.Put(0, tok, 0, now.Add(time.Minute), now, id)
		if c.Len() > 8 {
			t.Fatalf("len %d > 8", c.Len())
		}
		if _, ok := c.Get(0, tok, 0, now); !ok {
			t.Fatalf("just-put token missing")
		}
	}
	c.Put(0, "a", 1, now.Add(time.Minute), now, id)
	if _, ok := c.Get(0, "a", 2, now); ok {
		t.Fatal("generation ignored")
	}
	if _, ok := c.Get(1, "a", 1, now); ok {
		t.Fatal("provider ignored")
	}
	if _, ok := c.Get(0, "b", 1, now); ok {
		t.Fatal("other token hit")
	}
	if _, ok := c.Get(0, "a", 1, now.Add(time.Minute)); ok {
		t.Fatal("expired entry returned")
	}
	// max TTL caps tokens without exp.
	c.Put(0, "noexp", 0, time.Time{}, now, id)
	if _, ok := c.Get(0, "noexp", 0, now.Add(59*time.Minute)); !ok {
		t.Fatal("noexp within ttl")
	}
	if _, ok := c.Get(0, "noexp", 0, now.Add(time.Hour)); ok {
		t.Fatal("noexp past ttl")
	}
	var nilCache *engine.TokenCache
	nilCache.Put(0, "x", 0, now, now, id)
	if _, ok := nilCache.Get(0, "x", 0, now); ok {
		t.Fatal("nil cache hit")
	}
}

func TestRemoteJWKSFlow(t *testing.T) {
	e := newEngine(t, nil)
	p := e.Cfg.Providers["remote"]
	st := e.Keys.State(p)
	tok := es.Sign(map[string]any{"iss": "https://remote", "exp": nowS + 3600, "sub": "r"})
	req := request(Case{Path: "/remote", Headers: map[string]string{"x-remote-token": tok}})
	v := decide(e, req)
	if v.Kind != engine.FetchJWKS || !v.StartFetch {
		t.Fatalf("%+v", v)
	}
	st.OnFetchStart(now)
	if v := decide(e, req); v.Kind != engine.FetchJWKS || v.StartFetch {
		t.Fatalf("in flight: %+v", v)
	}
	// Failure with no keys: deny jwks_unavailable during backoff.
	st.OnFetchFailure(now, errors.New("503"))
	if v := decide(e, req); v.Kind != engine.Deny || v.Reason != engine.ReasonJWKSUnavailable || v.Response.Status != 401 {
		t.Fatalf("after failure: %v %v", v.Kind, v.Reason)
	}
	// After backoff: fetch again; a garbage body is a failure.
	req.Now = now.Add(time.Second)
	if v := decide(e, req); v.Kind != engine.FetchJWKS || !v.StartFetch {
		t.Fatalf("after backoff: %+v", v)
	}
	st.OnFetchStart(req.Now)
	if err := st.OnFetchSuccess([]byte("<html>"), req.Now); err == nil || st.Failures() != 2 {
		t.Fatalf("garbage accepted: %v", err)
	}
	if !st.RetryAt().Equal(req.Now.Add(2 * time.Second)) {
		t.Fatalf("backoff %v", st.RetryAt().Sub(req.Now))
	}
	req.Now = req.Now.Add(2 * time.Second)
	st.OnFetchStart(req.Now)
	if err := st.OnFetchSuccess([]byte(jwttest.JWKS(es)), req.Now); err != nil {
		t.Fatal(err)
	}
	check(t, Case{Kind: engine.Allow, Set: map[string]string{"x-consumer": "r", "x-auth-provider": "remote"}, Remove: []string{"x-remote-token"}}, decide(e, req))
	// Rotation: a token with a new kid triggers a refetch (rate-limited).
	es2 := jwttest.New(jwt.ES256, "es2")
	tok2 := es2.Sign(map[string]any{"iss": "https://remote", "exp": nowS + 3600, "sub": "r2"})
	req2 := request(Case{Path: "/remote", Headers: map[string]string{"x-remote-token": tok2}})
	req2.Now = req.Now.Add(time.Second)
	if v := decide(e, req2); v.Kind != engine.Deny || v.Reason != engine.ReasonUnknownKid {
		t.Fatalf("unknown kid right after a fetch: %v %v", v.Kind, v.Reason)
	}
	req2.Now = req.Now.Add(30 * time.Second)
	if v := decide(e, req2); v.Kind != engine.FetchJWKS || !v.StartFetch {
		t.Fatalf("unknown kid: %+v", v)
	}
	st.OnFetchStart(req2.Now)
	gen := st.Generation()
	if err := st.OnFetchSuccess([]byte(jwttest.JWKS(es)), req2.Now); err != nil { // IdP not rotated yet
		t.Fatal(err)
	}
	if st.Generation() != gen {
		t.Fatal("same body bumped the generation")
	}
	if v := decide(e, req2); v.Kind != engine.Deny || v.Reason != engine.ReasonUnknownKid {
		t.Fatalf("rate limited unknown kid: %v %v", v.Kind, v.Reason)
	}
	req2.Now = req2.Now.Add(30 * time.Second)
	if v := decide(e, req2); v.Kind != engine.FetchJWKS {
		t.Fatalf("after min_refetch_interval: %+v", v)
	}
	st.OnFetchStart(req2.Now)
	if err := st.OnFetchSuccess([]byte(jwttest.JWKS(es2)), req2.Now); err != nil {
		t.Fatal(err)
	}
	if st.Generation() == gen {
		t.Fatal("new keys did not bump the generation")
	}
	if v := decide(e, req2); v.Kind != engine.Allow {
		t.Fatalf("rotated: %v %v", v.Kind, v.Reason)
	}
	// The old key is gone: the cached old token is re-verified and now fails.
	req.Now = req2.Now
	if v := decide(e, req); v.Kind != engine.FetchJWKS && v.Reason != engine.ReasonUnknownKid {
		t.Fatalf("old key after rotation: %v %v", v.Kind, v.Reason)
	}
}

func TestJWKSStateMachine(t *testing.T) {
	cfg := &config.RemoteJWKS{Timeout: time.Second, CacheDuration: 600 * time.Second, RefreshBefore: 60 * time.Second,
		MinRefetchInterval: 30 * time.Second, BackoffBase: time.Second, BackoffMax: 8 * time.Second}
	s := engine.NewJWKSState(cfg)
	if !s.ShouldFetch(now, engine.FetchNoKeys) || !s.NeedsRefresh(now) {
		t.Fatal("empty state must fetch")
	}
	s.OnFetchStart(now)
	if s.ShouldFetch(now, engine.FetchNoKeys) || !s.InFlight(now) {
		t.Fatal("in flight")
	}
	if s.InFlight(now.Add(3*time.Second)) == true {
		t.Fatal("lost fetch never forgotten")
	}
	if err := s.OnFetchSuccess([]byte(jwttest.JWKS(es)), now); err != nil {
		t.Fatal(err)
	}
	if s.NeedsRefresh(now.Add(539*time.Second)) || !s.NeedsRefresh(now.Add(540*time.Second)) {
		t.Fatal("refresh_before")
	}
	// Backoff doubles and caps; stale keys kept.
	at := now.Add(600 * time.Second)
	var waits []time.Duration
	for i := 0; i < 6; i++ {
		s.OnFetchStart(at)
		s.OnFetchFailure(at, errors.New("down"))
		if s.ShouldFetch(at, engine.FetchRefresh) {
			t.Fatal("fetch during backoff")
		}
		waits = append(waits, s.RetryAt().Sub(at))
		at = s.RetryAt()
		if !s.ShouldFetch(at, engine.FetchRefresh) {
			t.Fatal("no fetch after backoff")
		}
	}
	want := []time.Duration{1, 2, 4, 8, 8, 8}
	for i := range want {
		if waits[i] != want[i]*time.Second {
			t.Fatalf("backoff %v", waits)
		}
	}
	if s.Keys().Len() != 1 || !s.Stale(at) || s.Failures() != 6 {
		t.Fatal("stale keys dropped")
	}
	if err := s.OnFetchSuccess([]byte(jwttest.JWKS(es)), at); err != nil || s.Failures() != 0 || s.Stale(at) {
		t.Fatal("recovery")
	}
}

func TestExtAuthzDecide(t *testing.T) {
	e := newEngine(t, nil)
	v := e.DecideExtAuthz(engine.ExtAuthzResponse{Status: 200, Headers: []engine.Header{{"x-ext-user", "u1"}, {"x-evil", "1"}, {"x-ext-user", "bad\r\nx: y"}}})
	if v.Kind != engine.Allow || len(v.SetHeaders) != 2 || v.SetHeaders[1].Value != "u1" {
		t.Fatalf("ok: %+v", v.SetHeaders)
	}
	v = e.DecideExtAuthz(engine.ExtAuthzResponse{Status: 401, Headers: []engine.Header{{"www-authenticate", "Custom"}, {"set-cookie", "x"}}, Body: []byte("no")})
	if v.Kind != engine.Deny || v.Response.Status != 401 || v.Response.Body != "no" || len(v.Response.Headers) != 1 || v.Reason != engine.ReasonExtAuthzDenied || v.Response.GRPCStatus != 16 {
		t.Fatalf("denied: %+v", v.Response)
	}
	v = e.DecideExtAuthz(engine.ExtAuthzResponse{Status: 0})
	if v.Kind != engine.Deny || v.Response.Status != 403 || v.Reason != engine.ReasonExtAuthzError {
		t.Fatalf("error: %+v", v)
	}
	e2 := newEngine(t, func(m map[string]any) {
		x := m["ext_authz"].(map[string]any)
		x["failure_mode_allow"] = true
		x["status_on_error"] = 503
	})
	if v := e2.DecideExtAuthz(engine.ExtAuthzResponse{}); v.Kind != engine.Allow || v.Reason != engine.ReasonExtAuthzError {
		t.Fatalf("failure_mode_allow: %+v", v)
	}
}

func TestNoMatchDefaultRule(t *testing.T) {
	e := newEngine(t, func(m map[string]any) { m["default_rule"] = map[string]any{"requires": []any{"api_keys"}} })
	v := decide(e, request(Case{Path: "/unmatched"}))
	if v.Kind != engine.Deny || v.Reason != engine.ReasonMissingCredential {
		t.Fatalf("%v %v", v.Kind, v.Reason)
	}
	e = newEngine(t, func(m map[string]any) { m["default_rule"] = map[string]any{"public": true} })
	if v := decide(e, request(Case{Path: "/unmatched"})); v.Kind != engine.Allow {
		t.Fatalf("%v", v.Kind)
	}
}

func TestGRPC(t *testing.T) {
	for in, want := range map[int]int{401: 16, 403: 7, 500: 2, 503: 14, 400: 13} {
		if got := engine.GRPCStatus(in); got != want {
			t.Errorf("GRPCStatus(%d) = %d, want %d", in, got, want)
		}
	}
	for ct, want := range map[string]bool{"application/grpc": true, "application/grpc+proto": true, "application/grpc-web": false, "application/json": false,
		"application/grpc;charset=utf-8": false} {
		if httpreq.IsGRPC(ct) != want {
			t.Errorf("IsGRPC(%q)", ct)
		}
	}
}

func TestHeaderInjectionInClaims(t *testing.T) {
	e := newEngine(t, nil)
	tok := rs.Sign(claims("sub", "alice\r\nx-admin: 1", "groups", []any{"a", map[string]any{}}))
	v := decide(e, request(Case{Path: "/v1/x", Headers: bearer(tok)}))
	if v.Kind != engine.Allow {
		t.Fatal(v.Reason)
	}
	for _, h := range v.SetHeaders {
		if h.Name == "x-user-id" || h.Name == "x-consumer" || h.Name == "x-groups" {
			t.Fatalf("unsafe claim written: %+v", h)
		}
	}
}

// TestNegativeCache: a flood of one forged token costs one signature check; another
// forgery, or the same one under another provider, is checked on its own.
func TestNegativeCache(t *testing.T) {
	e := newEngine(t, nil)
	good := rs.Sign(claims())
	p := strings.Split(good, ".")
	forged := p[0] + "." + jwttest.B64([]byte(`{"iss":"https://idp","aud":"api","sub":"root","exp":`+strconv.FormatInt(nowS+600, 10)+`}`)) + "." + p[2]
	other := p[0] + "." + jwttest.B64([]byte(`{"iss":"https://idp","aud":"api","sub":"root2","exp":`+strconv.FormatInt(nowS+600, 10)+`}`)) + "." + p[2]
	for i := range 5 {
		v := decide(e, request(Case{Path: "/v1/x", Headers: bearer(forged)}))
		require.Equal(t, engine.ReasonBadSignature, v.Reason, "attempt %d", i)
	}
	assert.Equal(t, uint64(1), e.SignatureFailures, "signature checks for one forged token")
	v := decide(e, request(Case{Path: "/v1/x", Headers: bearer(other)}))
	assert.Equal(t, engine.ReasonBadSignature, v.Reason)
	assert.Equal(t, uint64(2), e.SignatureFailures, "a different forgery is checked")
	v = decide(e, request(Case{Path: "/v1/x", Headers: bearer(good)}))
	assert.Equal(t, engine.Allow, v.Kind, "the genuine token still verifies")
}

// TestExtAuthzCookieLines: a check request that carries cookies carries every Cookie
// line, joined; a credential cookie on an ext_authz rule is refused.
func TestExtAuthzCookieLines(t *testing.T) {
	e := newEngine(t, func(m map[string]any) {
		x := m["ext_authz"].(map[string]any)
		x["allowed_request_headers"] = []any{"authorization", "cookie"}
	})
	v := decide(e, request(Case{Path: "/ext/a", Lines: [][2]string{{"cookie", "a=1"}, {"cookie", "b=2"}}}))
	require.Equal(t, engine.CallExtAuthz, v.Kind, v.Detail)
	got := map[string]string{}
	for _, h := range v.ExtAuthz.Headers {
		got[h.Name] = h.Value
	}
	assert.Equal(t, "a=1; b=2", got["cookie"])
	v = decide(e, request(Case{Path: "/ext/a", Lines: [][2]string{{"cookie", "a=1"}, {"cookie", "jwt=x"}}}))
	assert.Equal(t, engine.ReasonUnexpectedCredential, v.Reason)
}

// A cached identity keeps of its claims only the top-level ones rules' required_claims
// name (nil when none does), and a cache hit still decides those rules as the miss
// did: the first request of each token is a miss, the second a hit.
func TestCachedIdentityKeepsRuleClaims(t *testing.T) {
	withRoles := func(m map[string]any) {
		rules := m["rules"].([]any)
		m["rules"] = append([]any{map[string]any{"match": map[string]any{"prefix": "/roles"}, "requires": []any{"corp"},
			"required_claims": map[string]any{"realm.roles": "ops"}}}, rules...)
	}
	noClaimRules := func(m map[string]any) {
		m["rules"] = []any{map[string]any{"match": map[string]any{"prefix": "/"}, "requires": []any{"corp"}}}
	}
	cases := []struct {
		name     string
		mod      func(map[string]any)
		claims   []any
		path     string
		want     engine.Kind
		wantKept []string // the identity's claims (nil: no map)
	}{
		{"no rule needs claims: none kept", noClaimRules, nil, "/api", engine.Allow, nil},
		{"scope kept, rule satisfied", nil, nil, "/scoped", engine.Allow, []string{"scope"}},
		{"scope kept, rule not satisfied", nil, []any{"scope", "read"}, "/scoped", engine.Deny, []string{"scope"}},
		{"token without the claim", nil, []any{"scope", nil}, "/scoped", engine.Deny, []string{}},
		{"nested claim: its top-level object kept", withRoles, []any{"realm", map[string]any{"roles": []any{"ops"}}}, "/roles", engine.Allow, []string{"realm", "scope"}},
		{"nested claim not satisfied", withRoles, []any{"realm", map[string]any{"roles": []any{"dev"}}}, "/roles", engine.Deny, []string{"realm", "scope"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEngine(t, c.mod)
			tok := rs.Sign(claims(c.claims...))
			req := &engine.Request{Method: "GET", Path: c.path, Now: now, Headers: enginetest.Lines([][2]string{{"authorization", "Bearer " + tok}})}
			for pass, cache := range []engine.CacheUse{engine.CacheMiss, engine.CacheHit} {
				v := decide(e, req)
				require.Equal(t, c.want, v.Kind, "pass %d: %s %s", pass, v.Reason, v.Detail)
				assert.Equal(t, cache, v.Cache, "pass %d", pass)
				if c.want == engine.Deny {
					assert.Equal(t, engine.ReasonInsufficientScope, v.Reason)
				}
			}
			v := decide(e, &engine.Request{Method: "GET", Path: "/api", Now: now, Headers: req.Headers}) // the cached identity
			require.Equal(t, engine.CacheHit, v.Cache)
			id := v.Identity
			require.NotNil(t, id)
			if c.wantKept == nil {
				assert.Nil(t, id.Claims)
				return
			}
			var kept []string
			for k := range id.Claims {
				kept = append(kept, k)
			}
			assert.ElementsMatch(t, c.wantKept, kept)
		})
	}
}
