package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/meshplug/meshplug/filters/auth/jwt"
	"github.com/meshplug/meshplug/filters/configjson"
	"github.com/meshplug/meshplug/filters/httpreq"
)

// FieldError is a configuration error at a field path such as `rules[2].match.regex`
// or `providers.corp.remote_jwks.http_uri.cluster`: configjson's, so that the
// controller and the CLI report every filter's errors alike.
type FieldError = configjson.FieldError

// Reserved method names in rules[].requires; providers cannot use them.
const (
	NameAPIKeys   = "api_keys"
	NameBasicAuth = "basic_auth"
	NameExtAuthz  = "ext_authz"
)

func ferr(path, format string, args ...any) *FieldError {
	return configjson.Errorf(path, format, args...)
}

// Parse decodes data strictly into a Spec (configjson.Unmarshal) and compiles it.
// Every error is a *FieldError naming the field path; the first problem found is
// reported.
func Parse(data []byte) (*Config, error) {
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) > 0 && t[0] != '{' && (t[0] == '[' || t[0] == '"' || t[0] == 't' || t[0] == 'f' || t[0] == 'n' || t[0] == '-' || t[0] >= '0' && t[0] <= '9') {
		return nil, ferr("", "configuration must be a JSON object")
	}
	var s Spec
	if err := configjson.Unmarshal(data, &s); err != nil {
		return nil, err
	}
	return Compile(&s)
}

// Compile validates s and builds the runtime Config (sorted providers, parsed JWKS,
// compiled regexps, decoded hashes, lower-case header names, the identity headers to
// strip). Every error is a *FieldError; the first problem found is reported.
func Compile(s *Spec) (*Config, error) {
	c := &Config{Providers: map[string]*Provider{}, GRPC: true, Realm: DefaultRealm}
	p := &compiler{c: c}
	if err := p.top(s); err != nil {
		return nil, err
	}
	return c, nil
}

type compiler struct {
	c *Config
}

func (p *compiler) top(s *Spec) error {
	c := p.c
	if s.Realm != nil {
		c.Realm = *s.Realm
	}
	if !quotable(c.Realm) || c.Realm == "" {
		return ferr("realm", "must be non-empty printable ASCII without '\"' or '\\\\'")
	}
	if s.GRPC != nil {
		c.GRPC = *s.GRPC
	}
	names := make([]string, 0, len(s.Providers))
	for k := range s.Providers {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, name := range names {
		path := configjson.Key("providers", name)
		if !validName(name) {
			return ferr(path, "provider name must match [A-Za-z0-9_.-]+")
		}
		if name == NameAPIKeys || name == NameBasicAuth || name == NameExtAuthz {
			return ferr(path, "%q is reserved for the built-in method", name)
		}
		ps := s.Providers[name]
		prov, err := compileProvider(path, &ps, name)
		if err != nil {
			return err
		}
		prov.Index = len(c.ProviderList)
		c.Providers[name] = prov
		c.ProviderList = append(c.ProviderList, prov)
	}
	var err error
	if s.APIKeys != nil {
		if c.APIKeys, err = compileAPIKeys("api_keys", s.APIKeys); err != nil {
			return err
		}
	}
	if s.BasicAuth != nil {
		if c.BasicAuth, err = compileBasic("basic_auth", s.BasicAuth); err != nil {
			return err
		}
	}
	if s.ExtAuthz != nil {
		if c.ExtAuthz, err = compileExtAuthz("ext_authz", s.ExtAuthz); err != nil {
			return err
		}
	}
	c.Identity = Identity{ConsumerHeader: DefaultConsumerHeader, ProviderHeader: DefaultProviderHeader}
	if id := s.Identity; id != nil {
		for _, f := range []struct {
			path string
			src  *string
			dst  *string
		}{{"identity.consumer_header", id.ConsumerHeader, &c.Identity.ConsumerHeader},
			{"identity.provider_header", id.ProviderHeader, &c.Identity.ProviderHeader}} {
			if f.src == nil {
				continue
			}
			*f.dst = *f.src
			if *f.dst != "" { // "" disables the header
				h, err := headerName(f.path, *f.dst)
				if err != nil {
					return err
				}
				*f.dst = h
			}
		}
	}
	c.TokenCache = TokenCache{MaxEntries: DefaultTokenCacheEntries, MaxBytes: DefaultTokenCacheBytes, MaxTTL: DefaultTokenCacheMaxTTL}
	if tc := s.TokenCache; tc != nil {
		if tc.MaxEntries != nil {
			n, err := intIn("token_cache.max_entries", *tc.MaxEntries, 0, 1<<20)
			if err != nil {
				return err
			}
			c.TokenCache.MaxEntries = int(n)
		}
		if tc.MaxBytes != nil {
			n, err := intIn("token_cache.max_bytes", *tc.MaxBytes, 16<<10, 1<<30)
			if err != nil {
				return err
			}
			c.TokenCache.MaxBytes = int(n)
		}
		if err := duration("token_cache.max_ttl", tc.MaxTTL, &c.TokenCache.MaxTTL, time.Second, 24*time.Hour); err != nil {
			return err
		}
	}
	if err := p.pathPolicy(s.PathNormalization); err != nil {
		return err
	}
	for i := range s.Rules {
		r, err := p.rule(configjson.Index("rules", i), &s.Rules[i], i)
		if err != nil {
			return err
		}
		c.Rules = append(c.Rules, r)
	}
	if s.DefaultRule != nil {
		if s.DefaultRule.Match != nil {
			return ferr("default_rule.match", "not allowed: the default rule applies when no rule matches")
		}
		if c.DefaultRule, err = p.rule("default_rule", s.DefaultRule, -1); err != nil {
			return err
		}
	}
	if len(c.Rules) == 0 && c.DefaultRule == nil {
		return ferr("rules", "at least one rule or a default_rule is required (with neither, every request is denied)")
	}
	return p.identityHeaders()
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// quotable: printable ASCII that can sit in a quoted-string without escaping.
func quotable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e || s[i] == '"' || s[i] == '\\' {
			return false
		}
	}
	return true
}

// isToken reports whether s is an RFC 9110 token (header names, methods, cookie names).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			continue
		}
		if !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
			return false
		}
	}
	return true
}

// headerName validates and lower-cases a header name.
func headerName(path, s string) (string, error) {
	if !isToken(s) {
		return "", ferr(path, "invalid header name %q", s)
	}
	return strings.ToLower(s), nil
}

func paramName(path, s string) (string, error) {
	if strings.ContainsAny(s, "&=#?% +") {
		return "", ferr(path, "invalid query parameter name %q", s)
	}
	return s, nil
}

func cookieName(path, s string) (string, error) {
	if !isToken(s) {
		return "", ferr(path, "invalid cookie name %q", s)
	}
	return s, nil
}

// required refuses an empty string.
func required(path, s string) error {
	if s == "" {
		return ferr(path, "required")
	}
	return nil
}

// intIn checks that v is in [lo, hi].
func intIn(path string, v, lo, hi int64) (int64, error) {
	if v < lo || v > hi {
		return 0, ferr(path, "must be in [%d, %d], got %d", lo, hi, v)
	}
	return v, nil
}

// duration sets *dst from d when d is given, checking it is in [min, max].
func duration(path string, d *configjson.Duration, dst *time.Duration, min, max time.Duration) error {
	if d == nil {
		return nil
	}
	v := d.D()
	if v < min || v > max {
		return ferr(path, "must be in [%s, %s], got %s", min, max, v)
	}
	*dst = v
	return nil
}

// strList checks a list of non-empty strings with check (if not nil) and refuses
// duplicates (after check's normalization).
func strList(path string, in []string, check func(path, s string) (string, error)) ([]string, error) {
	if in == nil {
		return nil, nil
	}
	out := make([]string, 0, len(in))
	seen := map[string]bool{}
	for i, s := range in {
		ip := configjson.Index(path, i)
		if s == "" {
			return nil, ferr(ip, "must not be empty")
		}
		if check != nil {
			var err error
			if s, err = check(ip, s); err != nil {
				return nil, err
			}
		}
		if seen[s] {
			return nil, ferr(ip, "duplicate value %q", s)
		}
		seen[s] = true
		out = append(out, s)
	}
	return out, nil
}

func compileProvider(path string, s *ProviderSpec, name string) (*Provider, error) {
	f := func(name string) string { return configjson.Field(path, name) }
	pr := &Provider{Name: name, ClockSkewSeconds: DefaultClockSkewSeconds, MaxTokenBytes: DefaultMaxTokenBytes,
		RequireExpiration: true, ConsumerClaim: DefaultConsumerClaim, Issuer: s.Issuer}
	var err error
	if pr.Audiences, err = strList(f("audiences"), s.Audiences, nil); err != nil {
		return nil, err
	}
	if pr.AlgNames, err = strList(f("algorithms"), s.Algorithms, func(path, s string) (string, error) {
		a, ok := jwt.ParseAlg(s)
		if !ok {
			return "", ferr(path, "unsupported algorithm %q (supported: %s)", s, jwt.AllAlgs())
		}
		pr.Algorithms |= jwt.NewAlgSet(a)
		return s, nil
	}); err != nil {
		return nil, err
	}
	if len(pr.AlgNames) == 0 {
		return nil, ferr(f("algorithms"), "required: an explicit allow-list such as [\"RS256\"]")
	}
	for i, h := range s.FromHeaders {
		ip := configjson.Index(f("from_headers"), i)
		hs := HeaderSource{ValuePrefix: h.ValuePrefix}
		if err := required(configjson.Field(ip, "name"), h.Name); err != nil {
			return nil, err
		}
		if hs.Name, err = headerName(configjson.Field(ip, "name"), h.Name); err != nil {
			return nil, err
		}
		for _, prev := range pr.FromHeaders {
			if prev.Name == hs.Name && strings.EqualFold(prev.ValuePrefix, hs.ValuePrefix) {
				return nil, ferr(ip, "duplicate source")
			}
		}
		pr.FromHeaders = append(pr.FromHeaders, hs)
	}
	if pr.FromParams, err = strList(f("from_params"), s.FromParams, paramName); err != nil {
		return nil, err
	}
	if pr.FromCookies, err = strList(f("from_cookies"), s.FromCookies, cookieName); err != nil {
		return nil, err
	}
	if len(pr.FromHeaders)+len(pr.FromParams)+len(pr.FromCookies) == 0 {
		pr.FromHeaders = []HeaderSource{{Name: "authorization", ValuePrefix: "Bearer "}}
	}
	if s.ClockSkewSeconds != nil {
		if pr.ClockSkewSeconds, err = intIn(f("clock_skew_seconds"), *s.ClockSkewSeconds, 0, 3600); err != nil {
			return nil, err
		}
	}
	if s.MaxTokenBytes != nil {
		n, err := intIn(f("max_token_bytes"), *s.MaxTokenBytes, 64, 65536)
		if err != nil {
			return nil, err
		}
		pr.MaxTokenBytes = int(n)
	}
	if s.RequireExpiration != nil {
		pr.RequireExpiration = *s.RequireExpiration
	}
	life, err := intIn(f("max_lifetime_seconds"), s.MaxLifetimeSeconds, 0, 10*365*86400)
	if err != nil {
		return nil, err
	}
	pr.MaxLifetime = time.Duration(life) * time.Second
	if pr.RequiredClaims, err = requiredClaims(f("required_claims"), s.RequiredClaims); err != nil {
		return nil, err
	}
	switch {
	case s.LocalJWKS != nil && s.RemoteJWKS != nil:
		return nil, ferr(f("remote_jwks"), "only one of local_jwks and remote_jwks may be set")
	case s.LocalJWKS == nil && s.RemoteJWKS == nil:
		return nil, ferr(f("local_jwks"), "one of local_jwks and remote_jwks is required")
	case s.LocalJWKS != nil:
		ip := configjson.Field(f("local_jwks"), "inline_string")
		if err := required(ip, s.LocalJWKS.InlineString); err != nil {
			return nil, err
		}
		ks, err := jwt.ParseJWKS([]byte(s.LocalJWKS.InlineString))
		if err != nil {
			return nil, ferr(ip, "%v", err)
		}
		pr.LocalJWKS = ks
	default:
		if pr.RemoteJWKS, err = compileRemote(f("remote_jwks"), s.RemoteJWKS); err != nil {
			return nil, err
		}
	}
	pr.Forward = s.Forward
	if s.ForwardPayloadHeader != "" {
		if pr.ForwardPayloadHeader, err = headerName(f("forward_payload_header"), s.ForwardPayloadHeader); err != nil {
			return nil, err
		}
	}
	for i, ch := range s.ClaimToHeaders {
		ip := configjson.Index(f("claim_to_headers"), i)
		if err := required(configjson.Field(ip, "claim"), ch.Claim); err != nil {
			return nil, err
		}
		if err := required(configjson.Field(ip, "header"), ch.Header); err != nil {
			return nil, err
		}
		c := ClaimToHeader{Claim: ch.Claim}
		if c.Header, err = headerName(configjson.Field(ip, "header"), ch.Header); err != nil {
			return nil, err
		}
		for _, prev := range pr.ClaimToHeaders {
			if prev.Header == c.Header {
				return nil, ferr(configjson.Field(ip, "header"), "header %q is already written by another claim", c.Header)
			}
		}
		pr.ClaimToHeaders = append(pr.ClaimToHeaders, c)
	}
	if s.ConsumerClaim != nil {
		pr.ConsumerClaim = *s.ConsumerClaim
		if pr.ConsumerClaim == "" {
			return nil, ferr(f("consumer_claim"), "must not be empty")
		}
	}
	pr.Validation = jwt.Validation{
		ClockSkew:   float64(pr.ClockSkewSeconds),
		Issuer:      pr.Issuer,
		Audiences:   pr.Audiences,
		RequireExp:  pr.RequireExpiration,
		MaxLifetime: pr.MaxLifetime.Seconds(),
		Required:    pr.RequiredClaims,
	}
	return pr, nil
}

func requiredClaims(path string, m map[string]ClaimValues) ([]jwt.RequiredClaim, error) {
	if m == nil {
		return nil, nil
	}
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	out := make([]jwt.RequiredClaim, 0, len(names))
	for _, name := range names {
		ip := configjson.Key(path, name)
		if name == "" {
			return nil, ferr(ip, "claim name must not be empty")
		}
		values, err := strList(ip, m[name], nil)
		if err != nil {
			return nil, err
		}
		if values == nil {
			values = []string{}
		}
		out = append(out, jwt.RequiredClaim{Name: name, Values: values})
	}
	return out, nil
}

func compileHTTPURI(path string, s *HTTPURISpec) (uri, cluster, authority, rpath string, timeout time.Duration, err error) {
	timeout = DefaultJWKSTimeout
	uri = s.URI
	if err = required(configjson.Field(path, "uri"), uri); err != nil {
		return
	}
	u, perr := url.Parse(uri)
	if perr != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.Fragment != "" {
		err = ferr(configjson.Field(path, "uri"), "must be an absolute http(s) URL without user info or fragment, got %q", uri)
		return
	}
	authority = u.Host
	rpath = u.EscapedPath()
	if rpath == "" {
		rpath = "/"
	}
	if u.RawQuery != "" {
		rpath += "?" + u.RawQuery
	}
	cluster = s.Cluster
	if err = required(configjson.Field(path, "cluster"), cluster); err != nil {
		return
	}
	err = duration(configjson.Field(path, "timeout"), s.Timeout, &timeout, time.Millisecond, time.Minute)
	return
}

func compileRemote(path string, s *RemoteJWKSSpec) (*RemoteJWKS, error) {
	f := func(name string) string { return configjson.Field(path, name) }
	r := &RemoteJWKS{CacheDuration: DefaultCacheDuration, RefreshBefore: DefaultRefreshBefore,
		MinRefetchInterval: DefaultMinRefetchInterval, BackoffBase: DefaultBackoffBase, BackoffMax: DefaultBackoffMax}
	if s.HTTPURI == nil {
		return nil, ferr(f("http_uri"), "required")
	}
	var err error
	if r.URI, r.Cluster, r.Authority, r.Path, r.Timeout, err = compileHTTPURI(f("http_uri"), s.HTTPURI); err != nil {
		return nil, err
	}
	if err := duration(f("cache_duration"), s.CacheDuration, &r.CacheDuration, time.Second, 7*24*time.Hour); err != nil {
		return nil, err
	}
	if err := duration(f("refresh_before"), s.RefreshBefore, &r.RefreshBefore, 0, 7*24*time.Hour); err != nil {
		return nil, err
	}
	if r.RefreshBefore >= r.CacheDuration {
		return nil, ferr(f("refresh_before"), "must be shorter than cache_duration (%s), got %s", r.CacheDuration, r.RefreshBefore)
	}
	if err := duration(f("min_refetch_interval"), s.MinRefetchInterval, &r.MinRefetchInterval, 0, 24*time.Hour); err != nil {
		return nil, err
	}
	if b := s.Backoff; b != nil {
		bp := f("backoff")
		if err := duration(configjson.Field(bp, "base_interval"), b.BaseInterval, &r.BackoffBase, time.Millisecond, time.Hour); err != nil {
			return nil, err
		}
		if err := duration(configjson.Field(bp, "max_interval"), b.MaxInterval, &r.BackoffMax, time.Millisecond, 24*time.Hour); err != nil {
			return nil, err
		}
		if r.BackoffMax < r.BackoffBase {
			return nil, ferr(configjson.Field(bp, "max_interval"), "must be >= base_interval (%s), got %s", r.BackoffBase, r.BackoffMax)
		}
	}
	return r, nil
}

func decodeHash(path, s string) ([32]byte, error) {
	var h [32]byte
	if len(s) != 64 {
		return h, ferr(path, "must be 64 hex digits (SHA-256), got %d characters", len(s))
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, ferr(path, "must be 64 hex digits (SHA-256)")
	}
	return h, nil
}

func compileAPIKeys(path string, s *APIKeysSpec) (*APIKeys, error) {
	f := func(name string) string { return configjson.Field(path, name) }
	a := &APIKeys{ByHash: map[[32]byte]string{}, Forward: s.Forward}
	var err error
	if a.FromHeaders, err = strList(f("from_headers"), s.FromHeaders, headerName); err != nil {
		return nil, err
	}
	if a.FromParams, err = strList(f("from_params"), s.FromParams, paramName); err != nil {
		return nil, err
	}
	if len(a.FromHeaders)+len(a.FromParams) == 0 {
		a.FromHeaders = []string{DefaultAPIKeyHeader}
	}
	if len(s.Keys) == 0 {
		return nil, ferr(f("keys"), "required: at least one key")
	}
	for i, k := range s.Keys {
		ip := configjson.Index(f("keys"), i)
		if err := required(configjson.Field(ip, "consumer"), k.Consumer); err != nil {
			return nil, err
		}
		if err := required(configjson.Field(ip, "sha256"), k.SHA256); err != nil {
			return nil, err
		}
		h, err := decodeHash(configjson.Field(ip, "sha256"), k.SHA256)
		if err != nil {
			return nil, err
		}
		if prev, dup := a.ByHash[h]; dup {
			return nil, ferr(configjson.Field(ip, "sha256"), "same key as consumer %q", prev)
		}
		a.ByHash[h] = k.Consumer
	}
	return a, nil
}

func compileBasic(path string, s *BasicAuthSpec) (*BasicAuth, error) {
	b := &BasicAuth{Credentials: map[string]*BasicCredential{}, Forward: s.Forward}
	if len(s.Credentials) == 0 {
		return nil, ferr(configjson.Field(path, "credentials"), "required: at least one credential")
	}
	for i, cs := range s.Credentials {
		ip := configjson.Index(configjson.Field(path, "credentials"), i)
		cr := &BasicCredential{Username: cs.Username, Salt: cs.Salt}
		if err := required(configjson.Field(ip, "username"), cr.Username); err != nil {
			return nil, err
		}
		if strings.ContainsRune(cr.Username, ':') || !quotable(cr.Username) {
			return nil, ferr(configjson.Field(ip, "username"), "must be printable ASCII without ':'")
		}
		if err := required(configjson.Field(ip, "password_sha256"), cs.PasswordSHA256); err != nil {
			return nil, err
		}
		var err error
		if cr.Hash, err = decodeHash(configjson.Field(ip, "password_sha256"), cs.PasswordSHA256); err != nil {
			return nil, err
		}
		if _, dup := b.Credentials[cr.Username]; dup {
			return nil, ferr(configjson.Field(ip, "username"), "duplicate username %q", cr.Username)
		}
		b.Credentials[cr.Username] = cr
	}
	return b, nil
}

func compileExtAuthz(path string, s *ExtAuthzSpec) (*ExtAuthz, error) {
	f := func(name string) string { return configjson.Field(path, name) }
	e := &ExtAuthz{Timeout: DefaultExtAuthzTimeout, StatusOnError: DefaultExtAuthzStatus, FailureModeAllow: s.FailureModeAllow}
	hs := s.HTTPService
	if hs == nil {
		return nil, ferr(f("http_service"), "required")
	}
	hp := f("http_service")
	e.Cluster = hs.Cluster
	if err := required(configjson.Field(hp, "cluster"), e.Cluster); err != nil {
		return nil, err
	}
	e.Authority = e.Cluster
	if hs.Authority != "" {
		e.Authority = hs.Authority
	}
	e.PathPrefix = hs.PathPrefix
	if e.PathPrefix != "" && (!strings.HasPrefix(e.PathPrefix, "/") || strings.ContainsAny(e.PathPrefix, "?# ")) {
		return nil, ferr(configjson.Field(hp, "path_prefix"), "must start with '/' and contain no '?', '#' or space")
	}
	if err := duration(configjson.Field(hp, "timeout"), hs.Timeout, &e.Timeout, time.Millisecond, time.Minute); err != nil {
		return nil, err
	}
	var err error
	if e.AllowedRequestHeaders, err = strList(f("allowed_request_headers"), s.AllowedRequestHeaders, headerName); err != nil {
		return nil, err
	}
	if e.AllowedUpstreamHeaders, err = strList(f("allowed_upstream_headers"), s.AllowedUpstreamHeaders, headerName); err != nil {
		return nil, err
	}
	if e.AllowedClientHeaders, err = strList(f("allowed_client_headers"), s.AllowedClientHeaders, headerName); err != nil {
		return nil, err
	}
	if s.AllowedClientHeaders == nil {
		e.AllowedClientHeaders = []string{"www-authenticate"}
	}
	if s.StatusOnError != nil {
		st, err := intIn(f("status_on_error"), *s.StatusOnError, 400, 599)
		if err != nil {
			return nil, err
		}
		e.StatusOnError = int(st)
	}
	return e, nil
}

func (p *compiler) rule(path string, s *RuleSpec, index int) (*Rule, error) {
	f := func(name string) string { return configjson.Field(path, name) }
	r := &Rule{Index: index, Public: s.Public}
	if index >= 0 {
		if s.Match == nil {
			return nil, ferr(f("match"), "required")
		}
		if err := compileMatch(f("match"), s.Match, &r.Match, p.c.Path.Options); err != nil {
			return nil, err
		}
	}
	names, err := strList(f("requires"), s.Requires, nil)
	if err != nil {
		return nil, err
	}
	if s.AllowMissing != nil {
		r.AllowMissing = *s.AllowMissing
	}
	consumers, err := strList(f("allowed_consumers"), s.AllowedConsumers, nil)
	if err != nil {
		return nil, err
	}
	if len(consumers) > 0 {
		r.AllowedConsumers = map[string]bool{}
		for _, c := range consumers {
			r.AllowedConsumers[c] = true
		}
	}
	if r.RequiredClaims, err = requiredClaims(f("required_claims"), s.RequiredClaims); err != nil {
		return nil, err
	}
	// present reports which of the fields that a public or ext_authz rule refuses are set.
	present := []struct {
		name string
		set  bool
	}{{"requires", s.Requires != nil}, {"allow_missing", s.AllowMissing != nil},
		{"allowed_consumers", s.AllowedConsumers != nil}, {"required_claims", s.RequiredClaims != nil}}
	if r.Public {
		for _, x := range present {
			if x.set {
				return nil, ferr(f(x.name), "not allowed on a public rule")
			}
		}
		return r, nil
	}
	if len(names) == 0 {
		return nil, ferr(f("requires"), "required unless \"public\": true")
	}
	c := p.c
	hasExt := false
	for i, n := range names {
		ip := configjson.Index(f("requires"), i)
		switch n {
		case NameAPIKeys:
			if c.APIKeys == nil {
				return nil, ferr(ip, "\"api_keys\" is not configured")
			}
			r.Requires = append(r.Requires, Method{Kind: MethodAPIKeys, Name: n})
		case NameBasicAuth:
			if c.BasicAuth == nil {
				return nil, ferr(ip, "\"basic_auth\" is not configured")
			}
			r.Requires = append(r.Requires, Method{Kind: MethodBasicAuth, Name: n})
			r.ChallengeBasic = true
		case NameExtAuthz:
			if c.ExtAuthz == nil {
				return nil, ferr(ip, "\"ext_authz\" is not configured")
			}
			r.Requires = append(r.Requires, Method{Kind: MethodExtAuthz, Name: n})
			hasExt = true
		default:
			prov := c.Providers[n]
			if prov == nil {
				return nil, ferr(ip, "unknown provider %q", n)
			}
			r.Requires = append(r.Requires, Method{Kind: MethodJWT, Provider: prov, Name: n})
			r.ChallengeBearer = true
		}
	}
	if hasExt {
		if len(names) > 1 {
			return nil, ferr(f("requires"), "\"ext_authz\" cannot be combined with other methods")
		}
		for _, x := range present[1:] {
			if x.set {
				return nil, ferr(f(x.name), "not allowed with \"ext_authz\" (the authorization service decides)")
			}
		}
	}
	return r, nil
}

func compileMatch(path string, s *MatchSpec, m *Match, po httpreq.PathOptions) error {
	f := func(name string) string { return configjson.Field(path, name) }
	n := 0
	for _, x := range []*string{s.Prefix, s.Path, s.Regex} {
		if x != nil {
			n++
		}
	}
	if n != 1 {
		return ferr(path, "exactly one of prefix, path and regex is required")
	}
	switch {
	case s.Prefix != nil:
		if !strings.HasPrefix(*s.Prefix, "/") {
			return ferr(f("prefix"), "must start with '/'")
		}
		var err error
		if m.Prefix, err = httpreq.CanonicalRulePath(*s.Prefix, po); err != nil {
			return ferr(f("prefix"), "%v", err)
		}
	case s.Path != nil:
		if !strings.HasPrefix(*s.Path, "/") || strings.Contains(*s.Path, "?") {
			return ferr(f("path"), "must start with '/' and have no query")
		}
		var err error
		if m.Path, err = httpreq.CanonicalRulePath(*s.Path, po); err != nil {
			return ferr(f("path"), "%v", err)
		}
	default:
		m.Regex = *s.Regex
		if m.Regex == "" {
			return ferr(f("regex"), "must not be empty")
		}
		expr := m.Regex
		if po.IgnoreCase {
			expr = "(?i)" + expr // the canonical path is lower-cased
		}
		re, err := regexp.Compile(expr)
		if err != nil {
			return ferr(f("regex"), "invalid regexp: %v", err)
		}
		m.re = re
	}
	methods, err := strList(f("methods"), s.Methods, func(path, s string) (string, error) {
		if !isToken(s) {
			return "", ferr(path, "invalid method %q", s)
		}
		return strings.ToUpper(s), nil
	})
	if err != nil {
		return err
	}
	if len(methods) > 0 {
		m.Methods = map[string]bool{}
		for _, x := range methods {
			m.Methods[x] = true
		}
	}
	m.StrictMethods = s.StrictMethods
	return nil
}

// forbiddenIdentity are headers the filter must never strip or write.
var forbiddenIdentity = map[string]bool{
	"host": true, "authorization": true, "cookie": true, "content-length": true, "content-type": true,
	"transfer-encoding": true, "connection": true, "upgrade": true, "te": true, "keep-alive": true,
	"proxy-connection": true, "proxy-authorization": true, "x-forwarded-for": true, "x-request-id": true,
}

// identityHeaders computes Config.IdentityHeaders and refuses identity headers that
// are also credential sources or hop-by-hop/framing headers, and clashes between the
// per-request singletons (consumer/provider header) and the rest.
func (p *compiler) identityHeaders() error {
	c := p.c
	type writer struct{ path, kind string }
	w := map[string]writer{}
	sources := map[string]string{}
	for _, pr := range c.ProviderList {
		for i, hs := range pr.FromHeaders {
			sources[hs.Name] = configjson.Index(configjson.Field(configjson.Key("providers", pr.Name), "from_headers"), i)
		}
	}
	if c.APIKeys != nil {
		for i, h := range c.APIKeys.FromHeaders {
			sources[h] = configjson.Index("api_keys.from_headers", i)
		}
	}
	add := func(h, path, kind string) error {
		if forbiddenIdentity[h] {
			return ferr(path, "%q cannot be an identity header (the filter strips identity headers from every request)", h)
		}
		if src, ok := sources[h]; ok {
			return ferr(path, "%q is also a credential source (%s)", h, src)
		}
		if prev, ok := w[h]; ok && (prev.kind == "singleton" || kind == "singleton") {
			return ferr(path, "%q is also written by %s", h, prev.path)
		}
		if _, ok := w[h]; !ok {
			w[h] = writer{path, kind}
		}
		return nil
	}
	if h := c.Identity.ConsumerHeader; h != "" {
		if err := add(h, "identity.consumer_header", "singleton"); err != nil {
			return err
		}
	}
	if h := c.Identity.ProviderHeader; h != "" {
		if err := add(h, "identity.provider_header", "singleton"); err != nil {
			return err
		}
	}
	for _, pr := range c.ProviderList {
		for i, ch := range pr.ClaimToHeaders {
			if err := add(ch.Header, configjson.Field(configjson.Index(configjson.Field(configjson.Key("providers", pr.Name), "claim_to_headers"), i), "header"), "claim"); err != nil {
				return err
			}
		}
		if h := pr.ForwardPayloadHeader; h != "" {
			if err := add(h, configjson.Field(configjson.Key("providers", pr.Name), "forward_payload_header"), "payload"); err != nil {
				return err
			}
		}
	}
	if c.ExtAuthz != nil {
		for i, h := range c.ExtAuthz.AllowedUpstreamHeaders {
			if err := add(h, configjson.Index("ext_authz.allowed_upstream_headers", i), "ext"); err != nil {
				return err
			}
		}
	}
	for h := range w {
		c.IdentityHeaders = append(c.IdentityHeaders, h)
	}
	sort.Strings(c.IdentityHeaders)
	return nil
}

// HashSecret returns the hex SHA-256 of salt || secret: the form api_keys[].sha256
// (empty salt) and basic_auth.credentials[].password_sha256 take.
func HashSecret(salt, secret string) string {
	h := sha256.Sum256([]byte(salt + secret))
	return hex.EncodeToString(h[:])
}

func (p *compiler) pathPolicy(s *PathNormalizationSpec) error {
	if s == nil {
		return nil
	}
	pp := &p.c.Path
	switch s.Ambiguous {
	case "", "reject":
	case "same_rule":
		pp.SameRule = true
	default:
		return ferr("path_normalization.ambiguous", "must be one of reject, same_rule; got %q", s.Ambiguous)
	}
	var err error
	if pp.Options.Params, err = httpreq.ParsePathParams(s.PathParams); err != nil {
		return ferr("path_normalization.path_params", "%v", err)
	}
	pp.Options.IgnoreCase = s.IgnoreCase
	return nil
}
