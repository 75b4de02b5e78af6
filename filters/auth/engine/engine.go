// Package engine holds the auth filter's decision logic: pure functions of the parsed
// configuration, the request view, the key state and the token cache. It has no ABI
// calls, no goroutines and never reads the clock (Request.Now), so it is tested
// natively and the glue in filters/auth stays thin.
//
// Flow for the glue: remove cfg.IdentityHeaders from the request, build a Request, call
// Engine.Decide, and act on the Verdict:
//   - Allow: set Verdict.SetHeaders and ExtraHeaders, remove RemoveHeaders, replace
//     :path with NewPath if non-empty, continue.
//   - Deny: send Verdict.Response (gRPC-aware if cfg.GRPC and IsGRPC(content-type)).
//   - FetchJWKS: if StartFetch, call State(Provider).OnFetchStart and dispatch the
//     callout; park the request until that provider's fetch completes
//     (OnFetchSuccess/OnFetchFailure), then call Decide again.
//   - CallExtAuthz: dispatch Verdict.ExtAuthz, then call DecideExtAuthz with the result.
//
// Fail closed: a request is allowed only on an explicit success path; a panic inside
// Decide becomes Deny 500 internal_error.
//
// Spec: /tmp/spec/auth-core.md (filters/auth/engine); issue 3.
package engine

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/meshplug/meshplug/filters/auth/config"
	"github.com/meshplug/meshplug/filters/auth/jwt"
)

// Request is the engine's view of a request.
type Request struct {
	Method string
	Path   string // :path including the query string
	// Header returns the value of a request header (name lower-case). If a header
	// occurs several times the glue passes the first value (Envoy joins cookie
	// headers with "; "). The strings may alias memory the glue reuses after Decide
	// returns: the engine copies whatever it keeps.
	Header func(name string) (string, bool)
	Now    time.Time
}

func (r *Request) header(name string) (string, bool) {
	if r.Header == nil {
		return "", false
	}
	return r.Header(name)
}

// Kind is what the glue must do with a Verdict.
type Kind uint8

// Verdict kinds.
const (
	Allow Kind = iota
	Deny
	FetchJWKS
	CallExtAuthz
)

func (k Kind) String() string {
	return [...]string{"allow", "deny", "fetch_jwks", "call_ext_authz"}[k]
}

// CacheUse tells the glue which cache metric to count.
type CacheUse uint8

// Cache uses.
const (
	CacheNone CacheUse = iota
	CacheHit
	CacheMiss
)

// Verdict is the engine's decision.
type Verdict struct {
	Kind Kind
	// Allow: Identity is nil for public rules and anonymous (allow_missing) requests.
	Identity *Identity
	// SetHeaders are identity headers (shared, read-only: do not modify).
	SetHeaders []Header
	// ExtraHeaders are other headers to set (e.g. a rewritten cookie header).
	ExtraHeaders []Header
	// RemoveHeaders are credential headers to remove (forward: false).
	RemoveHeaders []string
	// NewPath, if non-empty, replaces :path (a credential query parameter removed).
	NewPath string

	// Deny: the reply. Reason is also set for Allow with ext_authz failure_mode_allow.
	Reason   Reason
	Response *Response
	// Detail explains the decision for logs; it may quote request data, never send it.
	Detail string

	// FetchJWKS: the provider whose keys are needed; StartFetch is false when a fetch
	// is already in flight (wait for it).
	Provider   *config.Provider
	StartFetch bool

	// CallExtAuthz: the check request to send.
	ExtAuthz *ExtAuthzRequest

	Cache CacheUse
}

// Engine is the per-VM decision state: the config, keys, token cache and precomputed
// responses and identities.
type Engine struct {
	Cfg   *config.Config
	Keys  *KeyStore
	Cache *TokenCache

	responses    map[respKey]*Response
	apiKeyIDs    map[string]*Identity
	basicIDs     map[string]*Identity
	removeHeader map[string][]string
	dummyHash    [32]byte
	credHeaders  []string
}

// New builds an Engine for cfg.
func New(cfg *config.Config) *Engine {
	e := &Engine{Cfg: cfg, Keys: NewKeyStore(cfg), Cache: NewTokenCache(cfg.TokenCache),
		responses: map[respKey]*Response{}, apiKeyIDs: map[string]*Identity{}, basicIDs: map[string]*Identity{},
		removeHeader: map[string][]string{}}
	if a := cfg.APIKeys; a != nil {
		for _, consumer := range a.ByHash {
			e.apiKeyIDs[consumer] = e.simpleIdentity(config.NameAPIKeys, consumer)
		}
		for _, h := range a.FromHeaders {
			e.removeHeader[h] = []string{h}
		}
	}
	if b := cfg.BasicAuth; b != nil {
		for u := range b.Credentials {
			e.basicIDs[u] = e.simpleIdentity(config.NameBasicAuth, u)
		}
		e.removeHeader["authorization"] = []string{"authorization"}
	}
	for _, p := range cfg.ProviderList {
		for _, hs := range p.FromHeaders {
			e.removeHeader[hs.Name] = []string{hs.Name}
		}
	}
	for h := range e.removeHeader {
		e.credHeaders = append(e.credHeaders, h)
	}
	slices.Sort(e.credHeaders)
	// Pre-render every response a rule can produce.
	rules := append([]*config.Rule{}, cfg.Rules...)
	if cfg.DefaultRule != nil {
		rules = append(rules, cfg.DefaultRule)
	}
	for _, r := range rules {
		ch := challengeOf(r)
		for _, reason := range AllReasons {
			e.response(reason, statusOf(reason), ch)
		}
	}
	e.response(ReasonNoMatchingRule, 403, 0)
	e.response(ReasonInternalError, 500, 0)
	return e
}

func (e *Engine) simpleIdentity(method, consumer string) *Identity {
	id := &Identity{Method: method, Consumer: consumer}
	if h := e.Cfg.Identity.ConsumerHeader; h != "" {
		id.Headers = append(id.Headers, Header{h, consumer})
	}
	if h := e.Cfg.Identity.ProviderHeader; h != "" {
		id.Headers = append(id.Headers, Header{h, method})
	}
	return id
}

func statusOf(r Reason) int {
	switch r {
	case ReasonConsumerNotAllowed, ReasonInsufficientScope, ReasonNoMatchingRule:
		return 403
	case ReasonInternalError:
		return 500
	}
	return 401
}

func challengeOf(r *config.Rule) challenge {
	var ch challenge
	for _, m := range r.Requires {
		switch m.Kind {
		case config.MethodJWT:
			ch |= chBearer
		case config.MethodBasicAuth:
			ch |= chBasic
		case config.MethodAPIKeys:
			ch |= chAPIKey
		}
	}
	return ch
}

// response returns the (cached) rendered response.
func (e *Engine) response(reason Reason, status int, ch challenge) *Response {
	if status == 403 && reason != ReasonInsufficientScope {
		ch = 0 // no challenge: authenticating again would not help
	}
	if status == 403 && reason == ReasonInsufficientScope {
		ch &= chBearer
	}
	if status >= 500 {
		ch = 0
	}
	k := respKey{reason, status, ch}
	if r, ok := e.responses[k]; ok {
		return r
	}
	r := buildResponse(e.Cfg.Realm, k)
	e.responses[k] = r
	return r
}

func (e *Engine) deny(reason Reason, ch challenge, detail string) Verdict {
	st := statusOf(reason)
	return Verdict{Kind: Deny, Reason: reason, Response: e.response(reason, st, ch), Detail: detail}
}

// credential records where a credential was found, for stripping.
type credential struct {
	value  string
	header string // header name, or
	param  string // query parameter name, or
	cookie string // cookie name
}

// Decide decides a request. It never panics (a panic becomes Deny 500).
func (e *Engine) Decide(req *Request) (v Verdict) {
	defer func() {
		if p := recover(); p != nil {
			v = e.deny(ReasonInternalError, 0, "panic in Decide")
		}
	}()
	rule := e.Cfg.Match(req.Method, req.Path)
	if rule == nil {
		return e.deny(ReasonNoMatchingRule, 0, "no rule matches "+req.Method+" "+pathOnly(req.Path))
	}
	if rule.Public {
		return Verdict{Kind: Allow}
	}
	ch := challengeOf(rule)
	var (
		failReason   Reason
		failDetail   string
		forbidReason Reason
		forbidDetail string
		present      bool
		cache        CacheUse
	)
	for _, m := range rule.Requires {
		var id *Identity
		var cred credential
		var forward bool
		switch m.Kind {
		case config.MethodExtAuthz:
			return Verdict{Kind: CallExtAuthz, ExtAuthz: e.extAuthzRequest(req)}
		case config.MethodJWT:
			p := m.Provider
			var ok bool
			if cred, ok = extractJWT(p, req); !ok {
				continue
			}
			present = true
			forward = p.Forward
			var fv *Verdict
			var reason Reason
			var detail string
			id, fv, reason, detail, cache = e.verifyJWT(p, cred.value, req.Now, cache)
			if fv != nil {
				fv.Cache = cache
				return *fv
			}
			if id == nil {
				if failReason == "" {
					failReason, failDetail = reason, m.Name+": "+detail
				}
				continue
			}
		case config.MethodAPIKeys:
			a := e.Cfg.APIKeys
			var ok bool
			if cred, ok = extractAPIKey(a, req); !ok {
				continue
			}
			present = true
			forward = a.Forward
			h := sha256.Sum256([]byte(cred.value))
			consumer, found := a.ByHash[h]
			if !found {
				if failReason == "" {
					failReason, failDetail = ReasonInvalidAPIKey, "api_keys: no such key"
				}
				continue
			}
			id = e.apiKeyIDs[consumer]
		case config.MethodBasicAuth:
			b := e.Cfg.BasicAuth
			auth, ok := req.header("authorization")
			if !ok || !hasPrefixFold(auth, "basic ") {
				continue
			}
			present = true
			forward = b.Forward
			cred = credential{header: "authorization"}
			user, okCred := e.checkBasic(b, strings.TrimSpace(auth[6:]))
			if !okCred {
				if failReason == "" {
					failReason, failDetail = ReasonInvalidBasicAuth, "basic_auth: bad credentials"
				}
				continue
			}
			id = e.basicIDs[user]
		}
		// Authenticated: check the rule's authorization conditions.
		if reason, detail := checkRule(rule, id); reason != "" {
			if forbidReason == "" {
				forbidReason, forbidDetail = reason, detail
			}
			continue
		}
		v := Verdict{Kind: Allow, Identity: id, SetHeaders: id.Headers, Cache: cache}
		if !forward {
			e.strip(&v, req, cred)
		}
		return v
	}
	var out Verdict
	switch {
	case forbidReason != "":
		out = e.deny(forbidReason, ch, forbidDetail)
	case failReason != "":
		out = e.deny(failReason, ch, failDetail)
	case !present && rule.AllowMissing:
		out = Verdict{Kind: Allow}
	default:
		out = e.deny(ReasonMissingCredential, ch, "no credential")
	}
	out.Cache = cache
	return out
}

func checkRule(r *config.Rule, id *Identity) (Reason, string) {
	if len(r.AllowedConsumers) > 0 && !r.AllowedConsumers[id.Consumer] {
		return ReasonConsumerNotAllowed, "consumer " + id.Consumer + " not in allowed_consumers"
	}
	for i := range r.RequiredClaims {
		if id.Claims == nil || jwt.MatchClaim(id.Claims, &r.RequiredClaims[i]) != "" {
			return ReasonInsufficientScope, "rule claim " + r.RequiredClaims[i].Name
		}
	}
	return "", ""
}

// verifyJWT returns an identity, or a verdict to return at once (JWKS needed), or a
// failure reason.
func (e *Engine) verifyJWT(p *config.Provider, raw string, now time.Time, cache CacheUse) (*Identity, *Verdict, Reason, string, CacheUse) {
	keys, gen := e.Keys.Keys(p)
	if id, ok := e.Cache.Get(p.Index, raw, gen, now); ok {
		return id, nil, "", "", CacheHit
	}
	if e.Cache != nil && cache == CacheNone {
		cache = CacheMiss
	}
	// raw may alias the glue's header buffer (see Request.Header); the cache and the
	// identity keep parts of it.
	raw = strings.Clone(raw)
	tok, err := jwt.Parse(raw, p.MaxTokenBytes)
	if err != nil {
		return nil, nil, Reason(jwt.ReasonOf(err)), err.Error(), cache
	}
	if !p.Algorithms.Has(tok.Header.Alg) {
		return nil, nil, ReasonAlgNotAllowed, "alg " + tok.Header.AlgName + " not allowed", cache
	}
	// Cheap pre-check: a token of another issuer needs no keys (and must not make us
	// fetch this provider's JWKS).
	if p.Issuer != "" && tok.Claims.Issuer != p.Issuer {
		return nil, nil, ReasonBadIssuer, "iss " + tok.Claims.Issuer, cache
	}
	if keys == nil {
		if e.Keys.ShouldFetch(p, now, FetchNoKeys) {
			return nil, &Verdict{Kind: FetchJWKS, Provider: p, StartFetch: true}, "", "", cache
		}
		if e.Keys.Fetching(p, now) {
			return nil, &Verdict{Kind: FetchJWKS, Provider: p}, "", "", cache
		}
		return nil, nil, ReasonJWKSUnavailable, "no keys for " + p.Name, cache
	}
	if err := keys.Verify(tok, p.Algorithms); err != nil {
		r := jwt.ReasonOf(err)
		if r == jwt.ReasonUnknownKid {
			if e.Keys.ShouldFetch(p, now, FetchUnknownKid) {
				return nil, &Verdict{Kind: FetchJWKS, Provider: p, StartFetch: true}, "", "", cache
			}
			if e.Keys.Fetching(p, now) {
				return nil, &Verdict{Kind: FetchJWKS, Provider: p}, "", "", cache
			}
		}
		return nil, nil, Reason(r), err.Error(), cache
	}
	val := p.Validation
	val.Now = float64(now.UnixNano()) / 1e9
	if err := tok.Claims.Validate(&val); err != nil {
		return nil, nil, Reason(jwt.ReasonOf(err)), err.Error(), cache
	}
	id := e.jwtIdentity(p, tok)
	var until time.Time
	if tok.Claims.HasExpiry {
		until = time.Unix(0, int64((tok.Claims.Expiry+val.ClockSkew)*1e9))
	}
	e.Cache.Put(p.Index, raw, gen, until, now, id)
	return id, nil, "", "", cache
}

func (e *Engine) jwtIdentity(p *config.Provider, tok *jwt.Token) *Identity {
	id := &Identity{Method: p.Name, Claims: tok.Claims.Raw}
	if v, ok := jwt.LookupClaim(tok.Claims.Raw, p.ConsumerClaim); ok {
		if s, ok := jwt.ScalarString(v); ok && headerValueOK(s) {
			id.Consumer = s
		}
	}
	n := len(p.ClaimToHeaders) + 3
	id.Headers = make([]Header, 0, n)
	if h := e.Cfg.Identity.ConsumerHeader; h != "" && id.Consumer != "" {
		id.Headers = append(id.Headers, Header{h, id.Consumer})
	}
	if h := e.Cfg.Identity.ProviderHeader; h != "" {
		id.Headers = append(id.Headers, Header{h, p.Name})
	}
	for _, ch := range p.ClaimToHeaders {
		if s, ok := claimHeaderValue(tok.Claims.Raw, ch.Claim); ok {
			id.Headers = append(id.Headers, Header{ch.Header, s})
		}
	}
	if p.ForwardPayloadHeader != "" {
		id.Headers = append(id.Headers, Header{p.ForwardPayloadHeader, tok.PayloadSegment})
	}
	return id
}

// claimHeaderValue renders a claim for a header: scalars as text, arrays of scalars
// joined with ","; objects, empty values and values with control characters are
// skipped (the header is then not set).
func claimHeaderValue(claims map[string]any, name string) (string, bool) {
	v, ok := jwt.LookupClaim(claims, name)
	if !ok {
		return "", false
	}
	var s string
	if arr, isArr := v.([]any); isArr {
		parts := make([]string, 0, len(arr))
		for _, x := range arr {
			t, ok := jwt.ScalarString(x)
			if !ok {
				return "", false
			}
			parts = append(parts, t)
		}
		s = strings.Join(parts, ",")
	} else if s, ok = jwt.ScalarString(v); !ok {
		return "", false
	}
	if s == "" || !headerValueOK(s) {
		return "", false
	}
	return s, true
}

// headerValueOK: visible ASCII, space, tab and UTF-8 bytes; no CR, LF, NUL or other
// controls (RFC 9110 field-value), no leading/trailing whitespace.
func headerValueOK(s string) bool {
	if s == "" || s[0] == ' ' || s[0] == '\t' || s[len(s)-1] == ' ' || s[len(s)-1] == '\t' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

func (e *Engine) checkBasic(b *config.BasicAuth, enc string) (string, bool) {
	raw, err := base64.StdEncoding.Strict().DecodeString(enc)
	if err != nil {
		return "", false
	}
	s := string(raw)
	i := strings.IndexByte(s, ':')
	if i < 0 {
		return "", false
	}
	user, pass := s[:i], s[i+1:]
	cred := b.Credentials[user]
	want, salt := &e.dummyHash, ""
	if cred != nil {
		want, salt = &cred.Hash, cred.Salt
	}
	got := sha256.Sum256([]byte(salt + pass))
	ok := subtle.ConstantTimeCompare(got[:], want[:]) == 1 // same work for unknown users
	return user, ok && cred != nil
}

// strip removes the credential from the upstream request.
func (e *Engine) strip(v *Verdict, req *Request, c credential) {
	switch {
	case c.header != "":
		v.RemoveHeaders = e.removeHeader[c.header]
	case c.param != "":
		v.NewPath = removeParam(req.Path, c.param)
	case c.cookie != "":
		raw, _ := req.header("cookie")
		if rest := removeCookie(raw, c.cookie); rest == "" {
			v.RemoveHeaders = []string{"cookie"}
		} else {
			v.ExtraHeaders = []Header{{"cookie", rest}}
		}
	}
}

func pathOnly(p string) string {
	if i := strings.IndexByte(p, '?'); i >= 0 {
		return p[:i]
	}
	return p
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

func extractJWT(p *config.Provider, req *Request) (credential, bool) {
	for _, hs := range p.FromHeaders {
		v, ok := req.header(hs.Name)
		if !ok || !hasPrefixFold(v, hs.ValuePrefix) {
			continue
		}
		return credential{value: strings.Trim(v[len(hs.ValuePrefix):], " \t"), header: hs.Name}, true
	}
	for _, name := range p.FromParams {
		if v, ok := queryParam(req.Path, name); ok {
			return credential{value: v, param: name}, true
		}
	}
	if len(p.FromCookies) > 0 {
		if ck, ok := req.header("cookie"); ok {
			for _, name := range p.FromCookies {
				if v, ok := cookieValue(ck, name); ok {
					return credential{value: v, cookie: name}, true
				}
			}
		}
	}
	return credential{}, false
}

func extractAPIKey(a *config.APIKeys, req *Request) (credential, bool) {
	for _, h := range a.FromHeaders {
		if v, ok := req.header(h); ok {
			return credential{value: v, header: h}, true
		}
	}
	for _, name := range a.FromParams {
		if v, ok := queryParam(req.Path, name); ok {
			return credential{value: v, param: name}, true
		}
	}
	return credential{}, false
}

// queryParam returns the first value of name in the query of path, URL-decoded.
func queryParam(path, name string) (string, bool) {
	i := strings.IndexByte(path, '?')
	if i < 0 {
		return "", false
	}
	q := path[i+1:]
	for q != "" {
		var kv string
		kv, q, _ = strings.Cut(q, "&")
		k, v, _ := strings.Cut(kv, "=")
		if k != name {
			continue
		}
		if strings.ContainsAny(v, "%+") {
			u, err := url.QueryUnescape(v)
			if err != nil {
				return "", true // present but undecodable: an invalid credential
			}
			v = u
		}
		return v, true
	}
	return "", false
}

// removeParam drops every occurrence of name from the query of path.
func removeParam(path, name string) string {
	i := strings.IndexByte(path, '?')
	if i < 0 {
		return path
	}
	var b strings.Builder
	b.WriteString(path[:i])
	sep := byte('?')
	for kv := range strings.SplitSeq(path[i+1:], "&") {
		if k, _, _ := strings.Cut(kv, "="); k == name || kv == "" {
			continue
		}
		b.WriteByte(sep)
		b.WriteString(kv)
		sep = '&'
	}
	return b.String()
}

// cookieValue finds a cookie in a Cookie header ("a=1; b=2").
func cookieValue(header, name string) (string, bool) {
	for part := range strings.SplitSeq(header, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if ok && k == name {
			return strings.Trim(v, `"`), true
		}
	}
	return "", false
}

// removeCookie drops cookie name from a Cookie header.
func removeCookie(header, name string) string {
	var kept []string
	for part := range strings.SplitSeq(header, ";") {
		p := strings.TrimSpace(part)
		if k, _, _ := strings.Cut(p, "="); k == name || p == "" {
			continue
		}
		kept = append(kept, p)
	}
	return strings.Join(kept, "; ")
}

// DenyVerdict is the Deny verdict for reason with no challenge, for failures the glue
// detects itself (keys still unavailable after a fetch ended without a callback).
func (e *Engine) DenyVerdict(reason Reason) Verdict {
	return e.deny(reason, 0, "decided by the glue")
}

// CredentialHeaders lists every header a credential can come from (sorted). The glue
// refuses a request that repeats one of them: the filter reads the first value, and an
// upstream that reads another could be handed a credential nobody verified.
func (e *Engine) CredentialHeaders() []string { return e.credHeaders }
