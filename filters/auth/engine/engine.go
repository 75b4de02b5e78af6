// Package engine holds the auth filter's decision logic: pure functions of the parsed
// configuration, the request view, the key state and the token cache. It has no ABI
// calls, no goroutines and never reads the clock (Request.Now), so it is tested
// natively and the glue in filters/auth stays thin.
//
// Flow for the glue: build a Request, call Engine.Read into the stream's Extracted,
// remove Extracted.IdentityHeaders from the request (whatever happens next), call
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
package engine

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"slices"
	"strings"
	"time"

	"github.com/meshplug/meshplug/filters/auth/config"
	"github.com/meshplug/meshplug/filters/auth/jwt"
)

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

	responses map[respKey]*Response
	apiKeyIDs map[string]*Identity
	basicIDs  map[string]*Identity
	dummyHash [32]byte
	ex        *extractor
	allCh     challenge // every challenge the rules use (for 401s decided without a rule)
	bad       *badSigCache
	// ruleClaims are the top-level claims the rules' required_claims look at: all a
	// cached identity keeps of its claims.
	ruleClaims []string

	// SignatureFailures counts failed signature checks (for tests of the negative
	// cache: a repeated forged token must not be checked again).
	SignatureFailures uint64
}

// New builds an Engine for cfg.
func New(cfg *config.Config) *Engine {
	e := &Engine{Cfg: cfg, Keys: NewKeyStore(cfg), Cache: NewTokenCache(cfg.TokenCache),
		responses: map[respKey]*Response{}, apiKeyIDs: map[string]*Identity{}, basicIDs: map[string]*Identity{},
		ex: newExtractor(cfg), bad: newBadSigCache(badSigEntries)}
	if a := cfg.APIKeys; a != nil {
		for _, consumer := range a.ByHash {
			e.apiKeyIDs[consumer] = e.simpleIdentity(config.NameAPIKeys, consumer)
		}
	}
	if b := cfg.BasicAuth; b != nil {
		for u := range b.Credentials {
			e.basicIDs[u] = e.simpleIdentity(config.NameBasicAuth, u)
		}
	}
	// Pre-render every response a rule can produce.
	rules := append([]*config.Rule{}, cfg.Rules...)
	if cfg.DefaultRule != nil {
		rules = append(rules, cfg.DefaultRule)
	}
	for _, r := range rules {
		e.allCh |= challengeOf(r)
		for _, rc := range r.RequiredClaims {
			top, _, _ := strings.Cut(rc.Name, ".")
			if !slices.Contains(e.ruleClaims, top) {
				e.ruleClaims = append(e.ruleClaims, top)
			}
		}
	}
	if e.allCh == 0 {
		e.allCh = chBearer
	}
	for _, r := range rules {
		ch := challengeOf(r)
		for _, reason := range AllReasons {
			e.response(reason, statusOf(reason), ch)
		}
	}
	e.response(ReasonNoMatchingRule, 403, 0)
	e.response(ReasonAmbiguousPath, 400, 0)
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
	case ReasonAmbiguousPath:
		return 400
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
	if status >= 500 || status == 400 {
		ch = 0
	}
	if status == 401 && ch == 0 {
		ch = e.allCh // RFC 9110 §11.6.1: a 401 carries at least one challenge
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

// Decide decides a request read by Read. It never panics (a panic becomes Deny 500).
//
// On a rule that authenticates, every credential the configuration knows about that
// the request carries must be verified by one of the rule's methods, or the request is
// refused: a credential the rule's methods do not read (unexpected_credential), one
// that fails (its reason), one given twice or whose reading depends on the upstream's
// parser (ambiguous_credential). This is Envoy jwt_authn's rule (every token extracted
// for a provider is verified and one failure fails the request: AuthenticatorImpl::
// startVerify in source/extensions/filters/http/jwt_authn/authenticator.cc; "Multiple
// JWTs can be verified for a request" in the JwtProvider proto), applied to every
// method of an any-of rule. Then the first method in the rule's order whose identity
// passes allowed_consumers and required_claims is the caller, and every credential not
// verified by a method that forwards it is stripped: the upstream only gets verified
// credentials.
//
// Public rules verify nothing: every credential the configuration knows about is
// stripped (including forward: true ones, since none was verified), and nothing is
// refused; identity headers are stripped by the glue as on every request.
func (e *Engine) Decide(x *Extracted) (v Verdict) {
	defer func() {
		if p := recover(); p != nil {
			v = e.deny(ReasonInternalError, 0, "panic in Decide")
		}
	}()
	rule, amb, ok := e.Cfg.MatchRequest(x.Method, x.Path)
	if !ok {
		return e.deny(ReasonAmbiguousPath, 0, "ambiguous path ("+amb.String()+"): "+pathOnly(x.Path))
	}
	if rule == nil {
		return e.deny(ReasonNoMatchingRule, 0, "no rule matches "+x.Method+" "+pathOnly(x.Path))
	}
	if rule.Public {
		// Nothing is verified, so nothing the configuration knows as a credential
		// passes: the upstream of a public route never sees a credential auth did
		// not check (use allow_missing to have an optional one verified instead).
		v := Verdict{Kind: Allow}
		if len(x.found) > 0 {
			for i := range x.found {
				x.found[i].by, x.found[i].id = -1, nil
			}
			e.strip(&v, x, rule)
		}
		return v
	}
	ch := challengeOf(rule)
	switch {
	case x.repeated != "":
		return e.deny(ReasonAmbiguousCredential, ch, "credential "+x.repeated+" given more than once")
	case x.ambiguous != "":
		return e.deny(ReasonAmbiguousCredential, ch, x.ambiguous)
	}
	isExt := len(rule.Requires) == 1 && rule.Requires[0].Kind == config.MethodExtAuthz
	if isExt && x.extRepeated != "" {
		return e.deny(ReasonAmbiguousCredential, ch, "header "+x.extRepeated+" given more than once")
	}
	var cache CacheUse
	for i := range x.found {
		f := &x.found[i]
		f.by, f.id = -1, nil
		loc := &e.ex.locs[f.loc]
		if isExt {
			if loc.src != srcHeader || !e.extReads(loc.name) {
				return e.deny(ReasonUnexpectedCredential, ch, "credential "+loc.name+" not read by ext_authz")
			}
			continue // the authorization service checks it
		}
		var failReason Reason
		var failDetail string
		for mi, m := range rule.Requires {
			r := loc.readerFor(m)
			if r == nil {
				continue
			}
			tok := f.value
			if loc.src == srcHeader {
				var ok bool
				if tok, ok = r.token(f.value); !ok {
					continue
				}
			}
			id, fv, reason, detail := e.verify(m, tok, x.Now, &cache)
			if fv != nil {
				fv.Cache = cache
				return *fv
			}
			if id != nil {
				f.by, f.id = int32(mi), id
				break
			}
			if failReason == "" {
				failReason, failDetail = reason, m.Name+": "+detail
			}
		}
		if f.id == nil {
			out := e.deny(ReasonUnexpectedCredential, ch, "credential "+loc.name+" not read by this rule's methods")
			if failReason != "" {
				out = e.deny(failReason, ch, failDetail)
			}
			out.Cache = cache
			return out
		}
	}
	if isExt {
		return Verdict{Kind: CallExtAuthz, ExtAuthz: e.extAuthzRequest(x)}
	}
	if len(x.found) == 0 {
		if rule.AllowMissing {
			return Verdict{Kind: Allow}
		}
		return e.deny(ReasonMissingCredential, ch, "no credential")
	}
	var forbidReason Reason
	var forbidDetail string
	for mi := range rule.Requires {
		for i := range x.found {
			f := &x.found[i]
			if f.by != int32(mi) {
				continue
			}
			if reason, detail := checkRule(rule, f.id); reason != "" {
				if forbidReason == "" {
					forbidReason, forbidDetail = reason, detail
				}
				continue
			}
			v := Verdict{Kind: Allow, Identity: f.id, SetHeaders: f.id.Headers, Cache: cache}
			e.strip(&v, x, rule)
			return v
		}
	}
	out := e.deny(forbidReason, ch, forbidDetail)
	out.Cache = cache
	return out
}

// extReads reports whether ext_authz sends header name to the service.
func (e *Engine) extReads(name string) bool {
	for _, h := range e.Cfg.ExtAuthz.AllowedRequestHeaders {
		if canonHeader(h) == name {
			return true
		}
	}
	return false
}

// verify checks one credential with one method: an identity, or a verdict to return
// at once (JWKS needed), or a failure reason.
func (e *Engine) verify(m config.Method, tok string, now time.Time, cache *CacheUse) (*Identity, *Verdict, Reason, string) {
	switch m.Kind {
	case config.MethodJWT:
		id, fv, reason, detail, c := e.verifyJWT(m.Provider, tok, now, *cache)
		*cache = c
		return id, fv, reason, detail
	case config.MethodAPIKeys:
		// A map lookup by the key's SHA-256: the key itself is never compared, and
		// the hash of a guess reveals nothing about the stored hashes.
		h := sha256.Sum256([]byte(tok))
		if consumer, ok := e.Cfg.APIKeys.ByHash[h]; ok {
			return e.apiKeyIDs[consumer], nil, "", ""
		}
		return nil, nil, ReasonInvalidAPIKey, "no such key"
	case config.MethodBasicAuth:
		if user, ok := e.checkBasic(e.Cfg.BasicAuth, tok); ok {
			return e.basicIDs[user], nil, "", ""
		}
		return nil, nil, ReasonInvalidBasicAuth, "bad credentials"
	}
	return nil, nil, ReasonInternalError, "unexpected method"
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
	if e.bad.Has(p.Index, raw, gen) {
		return nil, nil, ReasonBadSignature, "signature failed before (negative cache)", cache
	}
	// raw may alias the glue's header buffer (see Request.Headers); the cache and the
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
		if r == jwt.ReasonBadSignature {
			e.bad.Add(p.Index, raw, gen)
		}
		e.SignatureFailures++
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

// jwtIdentity builds the identity of a verified token. It may live in the token cache
// as long as the token, so it holds only what requests need: header values are
// copied out of the decoded payload (which is then garbage) and the claims are those
// the rules' required_claims name (none: nil). Its bytes count them for max_bytes.
func (e *Engine) jwtIdentity(p *config.Provider, tok *jwt.Token) *Identity {
	id := &Identity{Method: p.Name}
	if len(e.ruleClaims) > 0 {
		kept := make(map[string]any, len(e.ruleClaims))
		for _, name := range e.ruleClaims {
			if v, ok := tok.Claims.Raw[name]; ok {
				kept[name] = v
			}
		}
		id.Claims = kept
		// The kept values are substrings of the decoded header and payload (at most
		// the token's length) or hold them.
		id.bytes += len(tok.Raw) + mapBytes(kept)
	}
	if v, ok := jwt.LookupClaim(tok.Claims.Raw, p.ConsumerClaim); ok {
		if s, ok := jwt.ScalarString(v); ok && headerValueOK(s) {
			id.Consumer = strings.Clone(s)
			id.bytes += stringBytes(s)
		}
	}
	n := len(p.ClaimToHeaders) + 3
	id.Headers = make([]Header, 0, n)
	id.bytes += 80 + 32*n // the Identity struct and the headers' array
	if h := e.Cfg.Identity.ConsumerHeader; h != "" && id.Consumer != "" {
		id.Headers = append(id.Headers, Header{h, id.Consumer})
	}
	if h := e.Cfg.Identity.ProviderHeader; h != "" {
		id.Headers = append(id.Headers, Header{h, p.Name})
	}
	for _, ch := range p.ClaimToHeaders {
		if s, ok := claimHeaderValue(tok.Claims.Raw, ch.Claim); ok {
			id.Headers = append(id.Headers, Header{ch.Header, strings.Clone(s)})
			id.bytes += stringBytes(s)
		}
	}
	if p.ForwardPayloadHeader != "" { // a substring of the token the cache keeps
		id.Headers = append(id.Headers, Header{p.ForwardPayloadHeader, tok.PayloadSegment})
	}
	return id
}

// stringBytes is a heap string's size rounded up to an allocator size class (within
// 1/8 above 128 bytes, to 16 below).
func stringBytes(s string) int {
	n := len(s)
	if n <= 128 {
		return (n + 15) &^ 15
	}
	return n + n/8
}

// mapBytes and valueBytes estimate the heap a decoded claim value holds besides the
// decoded text its strings point into: boxed string headers and numbers, slices and
// maps (a map slot is a 16-byte key and a 16-byte value, at a load of 7/8 and a
// group of 8 slots at least, plus its header).
func mapBytes(m map[string]any) int {
	n := 64 + max(8, len(m)*8/7+1)*34
	for _, v := range m {
		n += valueBytes(v)
	}
	return n
}

func valueBytes(v any) int {
	switch v := v.(type) {
	case []any:
		n := 24 + 16*len(v)
		for _, x := range v {
			n += valueBytes(x)
		}
		return n
	case map[string]any:
		return mapBytes(v)
	}
	return 16 // a boxed string, Number or bool
}

// claimHeaderValue renders a claim for a header: scalars as text (numbers and bools
// in JSON form), arrays of scalars joined with "," (no spaces). The encoding is
// unambiguous for a reader that splits on "," (RFC 9110 §5.3 list syntax): an array
// with an element that is empty, holds a ',' or a '"', or starts or ends with
// whitespace is not written, nor are objects, empty values and values with control
// characters (the header is then absent: the client's copy was stripped).
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
			if !ok || t == "" || strings.ContainsAny(t, ",\"") || strings.Trim(t, " \t") != t {
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

func pathOnly(p string) string {
	if i := strings.IndexByte(p, '?'); i >= 0 {
		return p[:i]
	}
	return p
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// DenyVerdict is the Deny verdict for reason, for failures the glue detects itself
// (keys still unavailable after a fetch ended without a callback). x, if not nil,
// selects the rule whose challenges a 401 carries.
func (e *Engine) DenyVerdict(reason Reason, x *Extracted) Verdict {
	var ch challenge
	if x != nil {
		if r, _, ok := e.Cfg.MatchRequest(x.Method, x.Path); ok && r != nil {
			ch = challengeOf(r)
		}
	}
	return e.deny(reason, ch, "decided by the glue")
}
