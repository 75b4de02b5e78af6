//go:build !wasip1

package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshplug/meshplug/filters/auth/jwt"
	"github.com/meshplug/meshplug/filters/auth/jwt/jwttest"
	"github.com/meshplug/meshplug/testenv"
)

// tokenCacheBudget is the documented bound on a worker's linear memory with the bundle
// when auth's token cache is full at its default max_bytes (docs/benchmarks.md, auth's
// README): the same JWT traffic with no cache at all takes the worker to 8 MiB.
const tokenCacheBudget = 10 << 20

// jwtChain is statsChain with auth verifying RS256 JWTs (consumer from the "tenant"
// claim, 8 tenants, so ratelimit still tracks 8 buckets), the given token_cache
// section ("" for the defaults) and, if scope is set, a rule requiring that scope
// (so the cache keeps that claim).
func jwtChain(wasm []byte, signer *jwttest.Signer, tokenCache, scope string) []testenv.Plugin {
	ps := statsChain(wasm, "auth", "ratelimit", "routehint", "fault")
	tc, rc := "", ""
	if tokenCache != "" {
		tc = `"token_cache": ` + tokenCache + `,`
	}
	if scope != "" {
		rc = fmt.Sprintf(`, "required_claims": {"scope": %q}`, scope)
	}
	ps[1].Config = []byte(fmt.Sprintf(`{%s "providers": {"corp": {"issuer": "https://idp.example.com", "audiences": ["api"], "algorithms": ["RS256"],
	  "local_jwks": {"inline_string": %q}, "consumer_claim": "tenant", "claim_to_headers": [{"claim": "sub", "header": "x-user-id"}]}},
	  "rules": [{"match": {"prefix": "/public"}, "public": true}, {"match": {"prefix": "/"}, "requires": ["corp"]%s}]}`, tc, jwttest.JWKS(signer), rc))
	return ps
}

// userTokens signs n distinct tokens of the kind an OIDC provider issues (832 bytes
// each with RS256 and a 2048-bit key).
func userTokens(signer *jwttest.Signer, n int) []string {
	now := time.Now().Unix()
	toks := make([]string, n)
	for i := range toks {
		toks[i] = signer.Sign(map[string]any{
			"iss": "https://idp.example.com", "aud": "api", "sub": fmt.Sprintf("user-%06d", i),
			"tenant": fmt.Sprintf("c%d", i%8), "iat": now - 5, "nbf": now - 5, "exp": now + 3600,
			"jti": fmt.Sprintf("4f1c2a7e-%04x-4b1e-9c3d-%012x", i%65536, i), "azp": "web-frontend",
			"scope": "openid profile email items:read items:write", "email": fmt.Sprintf("user-%06d@example.com", i),
			"name": fmt.Sprintf("User %06d", i), "email_verified": true,
		})
	}
	return toks
}

// TestBundleTokenCacheMemory sends 3,000 distinct JWTs (valid ones: each verified and
// cached; or forged ones: each a bad signature) through meshplug.wasm, with auth's
// token cache at its default bounds (full from about 700 such tokens: max_bytes 1 MiB)
// or others, and checks that the worker's linear memory stays within the documented
// budget, that the live heap the cache adds stays within max_bytes (the cache's
// count of an entry's bytes is an upper bound of what it holds), and, where the cache
// is unbounded by bytes, that an entry holds at most 1.5 KiB. -v logs the figures
// docs/benchmarks.md gives. Before max_bytes, the default cache (4,096 entries) held
// 2,431 bytes per such token and took the worker to 18.5 MiB once full.
//
//	go test -count=1 -run TestBundleTokenCacheMemory -v ./filters/meshplug
func TestBundleTokenCacheMemory(t *testing.T) {
	const n = 3000
	wasm := testenv.MustBuildGuest(t, "testdata/membundle")
	signer := jwttest.New(jwt.RS256, "rs1")
	valid := userTokens(signer, n)
	forged := make([]string, n) // each valid token's header and payload with the next one's signature
	for i, tok := range valid {
		next := valid[(i+1)%n]
		forged[i] = tok[:strings.LastIndexByte(tok, '.')] + next[strings.LastIndexByte(next, '.'):]
	}
	cases := []struct {
		name       string
		tokenCache string
		scope      string // a rule's required scope ("": none)
		tokens     []string
		status     int
		maxLive    uint64 // bound on the live heap the requests add
		maxMemory  uint32
	}{
		{name: "valid tokens, default cache", tokens: valid, status: 200,
			maxLive: 1 << 20, maxMemory: tokenCacheBudget}, // the documented default
		{name: "valid tokens, a rule requiring a scope, max_bytes 512 KiB", tokenCache: `{"max_bytes": 524288}`, scope: "items:read",
			tokens: valid, status: 200, maxLive: 512 << 10, maxMemory: tokenCacheBudget},
		{name: "forged tokens (bad signature), default cache", tokens: forged, status: 401,
			maxLive: 64 << 10, maxMemory: tokenCacheBudget},
		{name: "valid tokens, max_bytes 1 GiB: all cached", tokenCache: `{"max_bytes": 1073741824}`, tokens: valid, status: 200,
			maxLive: n * 1536, maxMemory: 16 << 20},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := testenv.NewForTest(t, testenv.Options{Workers: 1}, jwtChain(wasm, signer, c.tokenCache, c.scope)...)
			before := readMemStats(t, h, true)["HeapAlloc"]
			for i, tok := range c.tokens {
				resp := h.MustDo(t, testenv.Request{Path: "/api/v1/items", Headers: [][2]string{{"authorization", "Bearer " + tok}}})
				require.Equal(t, c.status, resp.Status, "token %d", i)
			}
			live := readMemStats(t, h, true)["HeapAlloc"] - before
			mem := h.GuestMemory(0, 0)
			miss, _ := h.Metric("meshplug.auth.cache.miss")
			assert.EqualValues(t, len(c.tokens), miss, "every token a cache miss")
			if c.status == 200 { // the cache still works: the newest token is a hit
				hit0, _ := h.Metric("meshplug.auth.cache.hit")
				resp := h.MustDo(t, testenv.Request{Path: "/api/v1/items", Headers: [][2]string{{"authorization", "Bearer " + c.tokens[len(c.tokens)-1]}}})
				assert.Equal(t, 200, resp.Status, "cache hit")
				hit1, _ := h.Metric("meshplug.auth.cache.hit")
				assert.Equal(t, hit0+1, hit1, "the newest token is cached")
			}
			t.Logf("%d tokens of %d bytes: linear memory %.2f MiB per worker, live heap +%d bytes (%.0f per token)",
				len(c.tokens), len(c.tokens[0]), float64(mem)/(1<<20), live, float64(live)/float64(len(c.tokens)))
			assert.LessOrEqual(t, live, c.maxLive, "live heap added by %d tokens", len(c.tokens))
			assert.LessOrEqual(t, mem, c.maxMemory, "linear memory per worker: %.2f MiB", float64(mem)/(1<<20))
		})
	}
}
