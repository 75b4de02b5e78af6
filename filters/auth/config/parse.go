package config

import (
	"crypto/sha256"
	"encoding/hex"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/meshplug/meshplug/filters/auth/jwt"
)

// Reserved method names in rules[].requires; providers cannot use them.
const (
	NameAPIKeys   = "api_keys"
	NameBasicAuth = "basic_auth"
	NameExtAuthz  = "ext_authz"
)

// Parse parses and validates a configuration. Every error is a *FieldError.
func Parse(data []byte) (*Config, error) {
	v, err := decodeStrict(data)
	if err != nil {
		return nil, err
	}
	o, err := asObj("", v)
	if err != nil {
		return nil, ferr("", "configuration must be a JSON object")
	}
	c := &Config{Providers: map[string]*Provider{}, GRPC: true, Realm: DefaultRealm}
	p := &parser{c: c}
	if err := p.top(o); err != nil {
		return nil, err
	}
	return c, nil
}

type parser struct {
	c *Config
}

func (p *parser) top(o *obj) error {
	c := p.c
	if err := o.str("realm", &c.Realm); err != nil {
		return err
	}
	if !quotable(c.Realm) || c.Realm == "" {
		return ferr("realm", "must be non-empty printable ASCII without '\"' or '\\\\'")
	}
	if err := o.boolean("grpc", &c.GRPC); err != nil {
		return err
	}
	if po, err := o.object("providers"); err != nil {
		return err
	} else if po != nil {
		names := make([]string, 0, len(po.m))
		for k := range po.m {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, name := range names {
			v, _ := po.get(name)
			path := po.p(name)
			if !validName(name) {
				return ferr(path, "provider name must match [A-Za-z0-9_.-]+")
			}
			if name == NameAPIKeys || name == NameBasicAuth || name == NameExtAuthz {
				return ferr(path, "%q is reserved for the built-in method", name)
			}
			pv, err := asObj(path, v)
			if err != nil {
				return err
			}
			prov, err := parseProvider(pv, name)
			if err != nil {
				return err
			}
			prov.Index = len(c.ProviderList)
			c.Providers[name] = prov
			c.ProviderList = append(c.ProviderList, prov)
		}
	}
	if ao, err := o.object("api_keys"); err != nil {
		return err
	} else if ao != nil {
		if c.APIKeys, err = parseAPIKeys(ao); err != nil {
			return err
		}
	}
	if bo, err := o.object("basic_auth"); err != nil {
		return err
	} else if bo != nil {
		if c.BasicAuth, err = parseBasic(bo); err != nil {
			return err
		}
	}
	if eo, err := o.object("ext_authz"); err != nil {
		return err
	} else if eo != nil {
		if c.ExtAuthz, err = parseExtAuthz(eo); err != nil {
			return err
		}
	}
	c.Identity = Identity{ConsumerHeader: DefaultConsumerHeader, ProviderHeader: DefaultProviderHeader}
	if io, err := o.object("identity"); err != nil {
		return err
	} else if io != nil {
		for _, f := range []struct {
			key string
			dst *string
		}{{"consumer_header", &c.Identity.ConsumerHeader}, {"provider_header", &c.Identity.ProviderHeader}} {
			if err := io.str(f.key, f.dst); err != nil {
				return err
			}
			if *f.dst != "" { // "" disables the header
				h, err := headerName(io.p(f.key), *f.dst)
				if err != nil {
					return err
				}
				*f.dst = h
			}
		}
		if err := io.done(); err != nil {
			return err
		}
	}
	c.TokenCache = TokenCache{MaxEntries: DefaultTokenCacheEntries, MaxTTL: DefaultTokenCacheMaxTTL}
	if to, err := o.object("token_cache"); err != nil {
		return err
	} else if to != nil {
		n := int64(c.TokenCache.MaxEntries)
		if err := to.integer("max_entries", &n, 0, 1<<20); err != nil {
			return err
		}
		c.TokenCache.MaxEntries = int(n)
		if err := to.duration("max_ttl", &c.TokenCache.MaxTTL, time.Second, 24*time.Hour); err != nil {
			return err
		}
		if err := to.done(); err != nil {
			return err
		}
	}
	rules, path, err := o.array("rules")
	if err != nil {
		return err
	}
	for i, rv := range rules {
		rp := path + "[" + strconv.Itoa(i) + "]"
		ro, err := asObj(rp, rv)
		if err != nil {
			return err
		}
		r, err := p.rule(ro, i)
		if err != nil {
			return err
		}
		c.Rules = append(c.Rules, r)
	}
	if do, err := o.object("default_rule"); err != nil {
		return err
	} else if do != nil {
		if do.has("match") {
			return ferr("default_rule.match", "not allowed: the default rule applies when no rule matches")
		}
		if c.DefaultRule, err = p.rule(do, -1); err != nil {
			return err
		}
	}
	if len(c.Rules) == 0 && c.DefaultRule == nil {
		return ferr("rules", "at least one rule or a default_rule is required (with neither, every request is denied)")
	}
	if err := o.done(); err != nil {
		return err
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

func parseProvider(o *obj, name string) (*Provider, error) {
	pr := &Provider{Name: name, ClockSkewSeconds: DefaultClockSkewSeconds, MaxTokenBytes: DefaultMaxTokenBytes,
		RequireExpiration: true, ConsumerClaim: DefaultConsumerClaim}
	if err := o.str("issuer", &pr.Issuer); err != nil {
		return nil, err
	}
	var err error
	if pr.Audiences, err = o.strList("audiences", nil); err != nil {
		return nil, err
	}
	if pr.AlgNames, err = o.strList("algorithms", func(path, s string) (string, error) {
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
		return nil, ferr(o.p("algorithms"), "required: an explicit allow-list such as [\"RS256\"]")
	}
	fh, fhPath, err := o.array("from_headers")
	if err != nil {
		return nil, err
	}
	for i, v := range fh {
		ip := fhPath + "[" + strconv.Itoa(i) + "]"
		ho, err := asObj(ip, v)
		if err != nil {
			return nil, err
		}
		var hs HeaderSource
		if err := ho.reqStr("name", &hs.Name); err != nil {
			return nil, err
		}
		if hs.Name, err = headerName(ho.p("name"), hs.Name); err != nil {
			return nil, err
		}
		if err := ho.str("value_prefix", &hs.ValuePrefix); err != nil {
			return nil, err
		}
		if err := ho.done(); err != nil {
			return nil, err
		}
		for _, prev := range pr.FromHeaders {
			if prev.Name == hs.Name && strings.EqualFold(prev.ValuePrefix, hs.ValuePrefix) {
				return nil, ferr(ip, "duplicate source")
			}
		}
		pr.FromHeaders = append(pr.FromHeaders, hs)
	}
	if pr.FromParams, err = o.strList("from_params", paramName); err != nil {
		return nil, err
	}
	if pr.FromCookies, err = o.strList("from_cookies", cookieName); err != nil {
		return nil, err
	}
	if len(pr.FromHeaders)+len(pr.FromParams)+len(pr.FromCookies) == 0 {
		pr.FromHeaders = []HeaderSource{{Name: "authorization", ValuePrefix: "Bearer "}}
	}
	if err := o.integer("clock_skew_seconds", &pr.ClockSkewSeconds, 0, 3600); err != nil {
		return nil, err
	}
	mtb := int64(pr.MaxTokenBytes)
	if err := o.integer("max_token_bytes", &mtb, 64, 65536); err != nil {
		return nil, err
	}
	pr.MaxTokenBytes = int(mtb)
	if err := o.boolean("require_expiration", &pr.RequireExpiration); err != nil {
		return nil, err
	}
	var life int64
	if err := o.integer("max_lifetime_seconds", &life, 0, 10*365*86400); err != nil {
		return nil, err
	}
	pr.MaxLifetime = time.Duration(life) * time.Second
	if pr.RequiredClaims, err = requiredClaims(o, "required_claims"); err != nil {
		return nil, err
	}
	lo, err := o.object("local_jwks")
	if err != nil {
		return nil, err
	}
	ro, err := o.object("remote_jwks")
	if err != nil {
		return nil, err
	}
	switch {
	case lo != nil && ro != nil:
		return nil, ferr(o.p("remote_jwks"), "only one of local_jwks and remote_jwks may be set")
	case lo == nil && ro == nil:
		return nil, ferr(o.p("local_jwks"), "one of local_jwks and remote_jwks is required")
	case lo != nil:
		var inline string
		if err := lo.reqStr("inline_string", &inline); err != nil {
			return nil, err
		}
		if err := lo.done(); err != nil {
			return nil, err
		}
		ks, err := jwt.ParseJWKS([]byte(inline))
		if err != nil {
			return nil, ferr(lo.p("inline_string"), "%v", err)
		}
		pr.LocalJWKS = ks
	default:
		if pr.RemoteJWKS, err = parseRemote(ro); err != nil {
			return nil, err
		}
	}
	if err := o.boolean("forward", &pr.Forward); err != nil {
		return nil, err
	}
	if err := o.str("forward_payload_header", &pr.ForwardPayloadHeader); err != nil {
		return nil, err
	}
	if pr.ForwardPayloadHeader != "" {
		if pr.ForwardPayloadHeader, err = headerName(o.p("forward_payload_header"), pr.ForwardPayloadHeader); err != nil {
			return nil, err
		}
	}
	ch, chPath, err := o.array("claim_to_headers")
	if err != nil {
		return nil, err
	}
	for i, v := range ch {
		ip := chPath + "[" + strconv.Itoa(i) + "]"
		co, err := asObj(ip, v)
		if err != nil {
			return nil, err
		}
		var c ClaimToHeader
		if err := co.reqStr("claim", &c.Claim); err != nil {
			return nil, err
		}
		if err := co.reqStr("header", &c.Header); err != nil {
			return nil, err
		}
		if c.Header, err = headerName(co.p("header"), c.Header); err != nil {
			return nil, err
		}
		if err := co.done(); err != nil {
			return nil, err
		}
		for _, prev := range pr.ClaimToHeaders {
			if prev.Header == c.Header {
				return nil, ferr(co.p("header"), "header %q is already written by another claim", c.Header)
			}
		}
		pr.ClaimToHeaders = append(pr.ClaimToHeaders, c)
	}
	if err := o.str("consumer_claim", &pr.ConsumerClaim); err != nil {
		return nil, err
	}
	if pr.ConsumerClaim == "" {
		return nil, ferr(o.p("consumer_claim"), "must not be empty")
	}
	if err := o.done(); err != nil {
		return nil, err
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

func requiredClaims(o *obj, key string) ([]jwt.RequiredClaim, error) {
	ro, err := o.object(key)
	if err != nil || ro == nil {
		return nil, err
	}
	names := make([]string, 0, len(ro.m))
	for k := range ro.m {
		names = append(names, k)
	}
	sort.Strings(names)
	out := make([]jwt.RequiredClaim, 0, len(names))
	for _, name := range names {
		path := ro.p(name)
		if name == "" {
			return nil, ferr(path, "claim name must not be empty")
		}
		var rc jwt.RequiredClaim
		rc.Name = name
		switch v := ro.m[name].(type) {
		case string:
			rc.Values = []string{v}
		case []any:
			if rc.Values, err = ro.strList(name, nil); err != nil {
				return nil, err
			}
			if rc.Values == nil {
				rc.Values = []string{}
			}
		default:
			return nil, ferr(path, "must be a string or an array of strings, got %s", typeName(v))
		}
		ro.used[name] = true
		out = append(out, rc)
	}
	return out, nil
}

func parseHTTPURI(o *obj) (uri, cluster, authority, path string, timeout time.Duration, err error) {
	timeout = DefaultJWKSTimeout
	if err = o.reqStr("uri", &uri); err != nil {
		return
	}
	u, perr := url.Parse(uri)
	if perr != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.Fragment != "" {
		err = ferr(o.p("uri"), "must be an absolute http(s) URL without user info or fragment, got %q", uri)
		return
	}
	authority = u.Host
	path = u.EscapedPath()
	if path == "" {
		path = "/"
	}
	if u.RawQuery != "" {
		path += "?" + u.RawQuery
	}
	if err = o.reqStr("cluster", &cluster); err != nil {
		return
	}
	if err = o.duration("timeout", &timeout, time.Millisecond, time.Minute); err != nil {
		return
	}
	err = o.done()
	return
}

func parseRemote(o *obj) (*RemoteJWKS, error) {
	r := &RemoteJWKS{CacheDuration: DefaultCacheDuration, RefreshBefore: DefaultRefreshBefore,
		MinRefetchInterval: DefaultMinRefetchInterval, BackoffBase: DefaultBackoffBase, BackoffMax: DefaultBackoffMax}
	ho, err := o.object("http_uri")
	if err != nil {
		return nil, err
	}
	if ho == nil {
		return nil, ferr(o.p("http_uri"), "required")
	}
	if r.URI, r.Cluster, r.Authority, r.Path, r.Timeout, err = parseHTTPURI(ho); err != nil {
		return nil, err
	}
	if err := o.duration("cache_duration", &r.CacheDuration, time.Second, 7*24*time.Hour); err != nil {
		return nil, err
	}
	if err := o.duration("refresh_before", &r.RefreshBefore, 0, 7*24*time.Hour); err != nil {
		return nil, err
	}
	if r.RefreshBefore >= r.CacheDuration {
		return nil, ferr(o.p("refresh_before"), "must be shorter than cache_duration (%s), got %s", r.CacheDuration, r.RefreshBefore)
	}
	if err := o.duration("min_refetch_interval", &r.MinRefetchInterval, 0, 24*time.Hour); err != nil {
		return nil, err
	}
	if bo, err := o.object("backoff"); err != nil {
		return nil, err
	} else if bo != nil {
		if err := bo.duration("base_interval", &r.BackoffBase, time.Millisecond, time.Hour); err != nil {
			return nil, err
		}
		if err := bo.duration("max_interval", &r.BackoffMax, time.Millisecond, 24*time.Hour); err != nil {
			return nil, err
		}
		if r.BackoffMax < r.BackoffBase {
			return nil, ferr(bo.p("max_interval"), "must be >= base_interval (%s), got %s", r.BackoffBase, r.BackoffMax)
		}
		if err := bo.done(); err != nil {
			return nil, err
		}
	}
	return r, o.done()
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

func parseAPIKeys(o *obj) (*APIKeys, error) {
	a := &APIKeys{ByHash: map[[32]byte]string{}}
	var err error
	if a.FromHeaders, err = o.strList("from_headers", headerName); err != nil {
		return nil, err
	}
	if a.FromParams, err = o.strList("from_params", paramName); err != nil {
		return nil, err
	}
	if len(a.FromHeaders)+len(a.FromParams) == 0 {
		a.FromHeaders = []string{DefaultAPIKeyHeader}
	}
	if err := o.boolean("forward", &a.Forward); err != nil {
		return nil, err
	}
	keys, path, err := o.array("keys")
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, ferr(o.p("keys"), "required: at least one key")
	}
	for i, v := range keys {
		ip := path + "[" + strconv.Itoa(i) + "]"
		ko, err := asObj(ip, v)
		if err != nil {
			return nil, err
		}
		var consumer, hx string
		if err := ko.reqStr("consumer", &consumer); err != nil {
			return nil, err
		}
		if err := ko.reqStr("sha256", &hx); err != nil {
			return nil, err
		}
		h, err := decodeHash(ko.p("sha256"), hx)
		if err != nil {
			return nil, err
		}
		if err := ko.done(); err != nil {
			return nil, err
		}
		if prev, dup := a.ByHash[h]; dup {
			return nil, ferr(ko.p("sha256"), "same key as consumer %q", prev)
		}
		a.ByHash[h] = consumer
	}
	return a, o.done()
}

func parseBasic(o *obj) (*BasicAuth, error) {
	b := &BasicAuth{Credentials: map[string]*BasicCredential{}}
	if err := o.boolean("forward", &b.Forward); err != nil {
		return nil, err
	}
	creds, path, err := o.array("credentials")
	if err != nil {
		return nil, err
	}
	if len(creds) == 0 {
		return nil, ferr(o.p("credentials"), "required: at least one credential")
	}
	for i, v := range creds {
		ip := path + "[" + strconv.Itoa(i) + "]"
		co, err := asObj(ip, v)
		if err != nil {
			return nil, err
		}
		cr := &BasicCredential{}
		var hx string
		if err := co.reqStr("username", &cr.Username); err != nil {
			return nil, err
		}
		if strings.ContainsRune(cr.Username, ':') || !quotable(cr.Username) {
			return nil, ferr(co.p("username"), "must be printable ASCII without ':'")
		}
		if err := co.reqStr("password_sha256", &hx); err != nil {
			return nil, err
		}
		if cr.Hash, err = decodeHash(co.p("password_sha256"), hx); err != nil {
			return nil, err
		}
		if err := co.str("salt", &cr.Salt); err != nil {
			return nil, err
		}
		if err := co.done(); err != nil {
			return nil, err
		}
		if _, dup := b.Credentials[cr.Username]; dup {
			return nil, ferr(co.p("username"), "duplicate username %q", cr.Username)
		}
		b.Credentials[cr.Username] = cr
	}
	return b, o.done()
}

func parseExtAuthz(o *obj) (*ExtAuthz, error) {
	e := &ExtAuthz{Timeout: DefaultExtAuthzTimeout, StatusOnError: DefaultExtAuthzStatus}
	ho, err := o.object("http_service")
	if err != nil {
		return nil, err
	}
	if ho == nil {
		return nil, ferr(o.p("http_service"), "required")
	}
	if err := ho.reqStr("cluster", &e.Cluster); err != nil {
		return nil, err
	}
	e.Authority = e.Cluster
	if err := ho.str("authority", &e.Authority); err != nil {
		return nil, err
	}
	if err := ho.str("path_prefix", &e.PathPrefix); err != nil {
		return nil, err
	}
	if e.PathPrefix != "" && (!strings.HasPrefix(e.PathPrefix, "/") || strings.ContainsAny(e.PathPrefix, "?# ")) {
		return nil, ferr(ho.p("path_prefix"), "must start with '/' and contain no '?', '#' or space")
	}
	if err := ho.duration("timeout", &e.Timeout, time.Millisecond, time.Minute); err != nil {
		return nil, err
	}
	if err := ho.done(); err != nil {
		return nil, err
	}
	if e.AllowedRequestHeaders, err = o.strList("allowed_request_headers", headerName); err != nil {
		return nil, err
	}
	if e.AllowedUpstreamHeaders, err = o.strList("allowed_upstream_headers", headerName); err != nil {
		return nil, err
	}
	if e.AllowedClientHeaders, err = o.strList("allowed_client_headers", headerName); err != nil {
		return nil, err
	}
	if !o.has("allowed_client_headers") {
		e.AllowedClientHeaders = []string{"www-authenticate"}
	}
	if err := o.boolean("failure_mode_allow", &e.FailureModeAllow); err != nil {
		return nil, err
	}
	st := int64(e.StatusOnError)
	if err := o.integer("status_on_error", &st, 400, 599); err != nil {
		return nil, err
	}
	e.StatusOnError = int(st)
	return e, o.done()
}

func (p *parser) rule(o *obj, index int) (*Rule, error) {
	r := &Rule{Index: index}
	if index >= 0 {
		mo, err := o.object("match")
		if err != nil {
			return nil, err
		}
		if mo == nil {
			return nil, ferr(o.p("match"), "required")
		}
		if err := parseMatch(mo, &r.Match); err != nil {
			return nil, err
		}
	}
	if err := o.boolean("public", &r.Public); err != nil {
		return nil, err
	}
	names, err := o.strList("requires", nil)
	if err != nil {
		return nil, err
	}
	if err := o.boolean("allow_missing", &r.AllowMissing); err != nil {
		return nil, err
	}
	consumers, err := o.strList("allowed_consumers", nil)
	if err != nil {
		return nil, err
	}
	if len(consumers) > 0 {
		r.AllowedConsumers = map[string]bool{}
		for _, c := range consumers {
			r.AllowedConsumers[c] = true
		}
	}
	if r.RequiredClaims, err = requiredClaims(o, "required_claims"); err != nil {
		return nil, err
	}
	if r.Public {
		for _, k := range []string{"requires", "allow_missing", "allowed_consumers", "required_claims"} {
			if o.has(k) {
				return nil, ferr(o.p(k), "not allowed on a public rule")
			}
		}
		return r, o.done()
	}
	if len(names) == 0 {
		return nil, ferr(o.p("requires"), "required unless \"public\": true")
	}
	c := p.c
	hasExt := false
	for i, n := range names {
		ip := o.p("requires") + "[" + strconv.Itoa(i) + "]"
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
			return nil, ferr(o.p("requires"), "\"ext_authz\" cannot be combined with other methods")
		}
		for _, k := range []string{"allow_missing", "allowed_consumers", "required_claims"} {
			if o.has(k) {
				return nil, ferr(o.p(k), "not allowed with \"ext_authz\" (the authorization service decides)")
			}
		}
	}
	return r, o.done()
}

func parseMatch(o *obj, m *Match) error {
	n := 0
	for _, k := range []string{"prefix", "path", "regex"} {
		if o.has(k) {
			n++
		}
	}
	if n != 1 {
		return ferr(o.path, "exactly one of prefix, path and regex is required")
	}
	if err := o.str("prefix", &m.Prefix); err != nil {
		return err
	}
	if o.has("prefix") && !strings.HasPrefix(m.Prefix, "/") {
		return ferr(o.p("prefix"), "must start with '/'")
	}
	if err := o.str("path", &m.Path); err != nil {
		return err
	}
	if o.has("path") && (!strings.HasPrefix(m.Path, "/") || strings.Contains(m.Path, "?")) {
		return ferr(o.p("path"), "must start with '/' and have no query")
	}
	if err := o.str("regex", &m.Regex); err != nil {
		return err
	}
	if o.has("regex") {
		if m.Regex == "" {
			return ferr(o.p("regex"), "must not be empty")
		}
		re, err := regexp.Compile(m.Regex)
		if err != nil {
			return ferr(o.p("regex"), "invalid regexp: %v", err)
		}
		m.re = re
	}
	methods, err := o.strList("methods", func(path, s string) (string, error) {
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
	if err := o.boolean("strict_methods", &m.StrictMethods); err != nil {
		return err
	}
	return o.done()
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
func (p *parser) identityHeaders() error {
	c := p.c
	type writer struct{ path, kind string }
	w := map[string]writer{}
	sources := map[string]string{}
	for _, pr := range c.ProviderList {
		for i, hs := range pr.FromHeaders {
			sources[hs.Name] = "providers." + pr.Name + ".from_headers[" + strconv.Itoa(i) + "]"
		}
	}
	if c.APIKeys != nil {
		for i, h := range c.APIKeys.FromHeaders {
			sources[h] = "api_keys.from_headers[" + strconv.Itoa(i) + "]"
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
			if err := add(ch.Header, "providers."+pr.Name+".claim_to_headers["+strconv.Itoa(i)+"].header", "claim"); err != nil {
				return err
			}
		}
		if h := pr.ForwardPayloadHeader; h != "" {
			if err := add(h, "providers."+pr.Name+".forward_payload_header", "payload"); err != nil {
				return err
			}
		}
	}
	if c.ExtAuthz != nil {
		for i, h := range c.ExtAuthz.AllowedUpstreamHeaders {
			if err := add(h, "ext_authz.allowed_upstream_headers["+strconv.Itoa(i)+"]", "ext"); err != nil {
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
