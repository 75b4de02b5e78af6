// Package config holds the auth filter's configuration: the wire types (Spec and the
// types it is made of: JSON field names, doc comments that are the field reference,
// kubebuilder validation markers for the policy CRD's schema), and their compilation
// into typed, precomputed runtime structures (maps, regexps, decoded hashes, parsed
// inline JWKS, lower-case header names, the set of identity headers to strip).
//
// Parse = configjson.Unmarshal (strict: unknown fields, duplicate fields, wrong types
// are errors) + Compile (ranges, references between fields, defaults). Every error is a
// *FieldError naming its field path (`providers.corp.remote_jwks.http_uri.cluster:
// required`). The package has no ABI calls and compiles natively and for wasip1, so the
// controller and the CLI validate policies with the very code the filter runs. The
// README's configuration tables are checked against the wire types by a test.
//
// Caveat: a Config is immutable after Compile and may be shared; the mutable state
// (JWKS caches, token cache) lives in package engine.
package config

import (
	"regexp"
	"strings"
	"time"

	"github.com/meshplug/meshplug/filters/auth/jwt"
	"github.com/meshplug/meshplug/filters/httpreq"
)

// Defaults applied by Parse.
const (
	DefaultRealm              = "meshplug"
	DefaultClockSkewSeconds   = 60
	DefaultMaxTokenBytes      = 8192
	DefaultConsumerClaim      = "sub"
	DefaultConsumerHeader     = "x-consumer"
	DefaultProviderHeader     = "x-auth-provider"
	DefaultAPIKeyHeader       = "x-api-key"
	DefaultTokenCacheEntries  = 4096
	DefaultTokenCacheBytes    = 1 << 20
	DefaultTokenCacheMaxTTL   = 10 * time.Minute
	DefaultJWKSTimeout        = 5 * time.Second
	DefaultCacheDuration      = 10 * time.Minute
	DefaultRefreshBefore      = time.Minute
	DefaultMinRefetchInterval = 30 * time.Second
	DefaultBackoffBase        = time.Second
	DefaultBackoffMax         = time.Minute
	DefaultExtAuthzTimeout    = 200 * time.Millisecond
	DefaultExtAuthzStatus     = 403
)

// Config is the parsed filter configuration.
type Config struct {
	// Providers by name, and the same providers sorted by name (Provider.Index is the
	// position in ProviderList; engine state is indexed by it).
	Providers    map[string]*Provider
	ProviderList []*Provider
	APIKeys      *APIKeys   // nil if "api_keys" is absent
	BasicAuth    *BasicAuth // nil if "basic_auth" is absent
	ExtAuthz     *ExtAuthz  // nil if "ext_authz" is absent
	// Rules are matched in order; the first match decides. If none matches,
	// DefaultRule applies, and if it is nil the request is denied (403 no_matching_rule).
	Rules       []*Rule
	DefaultRule *Rule
	Identity    Identity
	TokenCache  TokenCache
	// GRPC: answer gRPC requests (content-type application/grpc*) with grpc-status
	// trailers-only replies instead of HTTP bodies. Default true.
	GRPC bool
	// Realm is the realm of WWW-Authenticate challenges. Default "meshplug".
	Realm string
	// IdentityHeaders is every header the filter can write (claim_to_headers of all
	// providers, forward_payload_header, identity.consumer_header,
	// identity.provider_header, ext_authz.allowed_upstream_headers): lower-case,
	// sorted, unique. The glue removes all of them from every request before deciding.
	IdentityHeaders []string
	// Path is how request paths are read for matching (path_normalization).
	Path PathPolicy
}

// PathPolicy is path_normalization compiled.
type PathPolicy struct {
	Options httpreq.PathOptions
	// SameRule: an ambiguous (not malformed) path passes when all its readings select
	// the same rule; otherwise every ambiguous path is refused.
	SameRule bool
}

// HeaderSource is a header a JWT is read from: the value must start with ValuePrefix
// (compared ASCII case-insensitively, so "bearer " matches "Bearer "); the token is
// the rest.
type HeaderSource struct {
	Name        string // lower-case
	ValuePrefix string
}

// ClaimToHeader copies a claim of a verified token into a request header.
type ClaimToHeader struct {
	Claim  string // top-level name or dotted path ("realm_access.roles")
	Header string // lower-case
}

// Provider is one JWT issuer.
type Provider struct {
	Name  string
	Index int // position in Config.ProviderList

	Issuer     string
	Audiences  []string
	Algorithms jwt.AlgSet
	AlgNames   []string

	FromHeaders []HeaderSource
	FromParams  []string
	FromCookies []string

	ClockSkewSeconds  int64
	MaxTokenBytes     int
	RequireExpiration bool
	MaxLifetime       time.Duration
	RequiredClaims    []jwt.RequiredClaim

	// Exactly one of LocalJWKS and RemoteJWKS is set.
	LocalJWKS  *jwt.KeySet
	RemoteJWKS *RemoteJWKS

	Forward              bool
	ForwardPayloadHeader string // lower-case, "" = not forwarded
	ClaimToHeaders       []ClaimToHeader
	// ConsumerClaim is the claim whose value is the caller's consumer name (written to
	// identity.consumer_header and checked against rules' allowed_consumers).
	ConsumerClaim string

	// Validation is the claim check template (everything but Now).
	Validation jwt.Validation
}

// RemoteJWKS says where and how often a provider's JWKS is fetched.
type RemoteJWKS struct {
	URI       string
	Cluster   string
	Authority string // host[:port] of URI, sent as :authority
	Path      string // path and query of URI, sent as :path
	Timeout   time.Duration

	CacheDuration      time.Duration
	RefreshBefore      time.Duration
	MinRefetchInterval time.Duration
	BackoffBase        time.Duration
	BackoffMax         time.Duration
}

// APIKeys configures API-key authentication.
type APIKeys struct {
	FromHeaders []string // lower-case; default ["x-api-key"] when no source is given
	FromParams  []string
	Forward     bool
	// ByHash maps the SHA-256 of a key to its consumer name.
	ByHash map[[32]byte]string
}

// BasicAuth configures HTTP Basic authentication (RFC 7617).
type BasicAuth struct {
	Forward     bool
	Credentials map[string]*BasicCredential // by username
}

// BasicCredential is one user: the password is stored as SHA-256(Salt || password).
type BasicCredential struct {
	Username string
	Salt     string
	Hash     [32]byte
}

// ExtAuthz configures the external authorization callout (Envoy ext_authz HTTP
// service semantics).
type ExtAuthz struct {
	Cluster    string
	Authority  string // :authority of the check request; default: the cluster name
	PathPrefix string // prepended to the original :path
	Timeout    time.Duration
	// Headers of the client request copied into the check request (lower-case).
	// :method, :path and :authority are always set.
	AllowedRequestHeaders []string
	// Headers of an OK check response copied onto the upstream request.
	AllowedUpstreamHeaders []string
	// Headers of a denying check response copied onto the reply to the client.
	AllowedClientHeaders []string
	// FailureModeAllow lets requests through when the service fails (error, timeout,
	// 5xx); default false (deny with StatusOnError).
	FailureModeAllow bool
	StatusOnError    int
}

// MethodKind is a kind of authentication a rule can require.
type MethodKind uint8

// Method kinds.
const (
	MethodJWT MethodKind = iota
	MethodAPIKeys
	MethodBasicAuth
	MethodExtAuthz
)

// Method is one entry of a rule's requires list.
type Method struct {
	Kind     MethodKind
	Provider *Provider // for MethodJWT
	Name     string    // provider name, "api_keys", "basic_auth" or "ext_authz"
}

// Rule says how requests that match it are authenticated.
type Rule struct {
	Index int // position in Config.Rules, -1 for the default rule
	Match Match
	// Public: no authentication; identity headers are still stripped.
	Public bool
	// Requires lists methods of which any one must succeed (tried in order).
	Requires []Method
	// AllowMissing: a request with no credential of the required kinds passes as
	// anonymous, but a credential that is present must verify.
	AllowMissing bool
	// AllowedConsumers, if non-empty, is the set of consumer names allowed (403
	// otherwise).
	AllowedConsumers map[string]bool
	// RequiredClaims must hold for JWT identities (403 insufficient_scope otherwise).
	// Non-JWT identities have no claims and fail a rule that has required claims.
	RequiredClaims []jwt.RequiredClaim
	// ChallengeBearer/ChallengeBasic: which WWW-Authenticate challenges a 401 for a
	// missing credential carries (Requires has a JWT provider / basic_auth).
	ChallengeBearer bool
	ChallengeBasic  bool
}

// Match selects requests. The path is the request :path without its query string.
type Match struct {
	Prefix  string
	Path    string
	Regex   string
	re      *regexp.Regexp
	Methods map[string]bool // upper-case; empty = any method
	// StrictMethods: HEAD matches only if listed. By default a rule listing GET also
	// matches HEAD, which servers answer with GET's handler (RFC 9110 §9.3.2).
	StrictMethods bool
}

// Identity names the headers that carry the established identity.
type Identity struct {
	ConsumerHeader string // lower-case; "" = not written
	ProviderHeader string // lower-case; "" = not written
}

// TokenCache sizes the verified-token cache.
type TokenCache struct {
	MaxEntries int           // 0 disables the cache
	MaxBytes   int           // bound on the bytes the entries hold (token + identity + overhead)
	MaxTTL     time.Duration // upper bound on how long a verified token is reused
}

// Matches reports whether a request with this method and path (canonical form, no
// query string) matches. Methods compare case-sensitively (RFC 9110 §9.1: "get" is not
// GET); HEAD matches a rule that lists GET unless StrictMethods. Prefix and Path
// (canonical at configure time) compare bytes; Regex is RE2 and unanchored (use ^ and
// $).
func (m *Match) Matches(method, path string) bool {
	if len(m.Methods) > 0 && !m.Methods[method] &&
		(method != "HEAD" || m.StrictMethods || !m.Methods["GET"]) {
		return false
	}
	switch {
	case m.re != nil:
		return m.re.MatchString(path)
	case m.Path != "":
		return path == m.Path
	default:
		return strings.HasPrefix(path, m.Prefix)
	}
}

// Match returns the first rule matching method and a path already in canonical form
// (the query string, if any, is ignored), else DefaultRule (which may be nil).
func (c *Config) Match(method, path string) *Rule {
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	for _, r := range c.Rules {
		if r.Match.Matches(method, path) {
			return r
		}
	}
	return c.DefaultRule
}

// MatchRequest returns the rule for a request's method and :path (query ignored):
// the path is read in canonical form under path_normalization. ok is false when the
// path is ambiguous and the policy refuses it; amb says why.
func (c *Config) MatchRequest(method, path string) (r *Rule, amb httpreq.PathAmbiguity, ok bool) {
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	if path == "" || path == "*" {
		// No path (CONNECT) or the asterisk form (OPTIONS *): no resource an upstream
		// could map, matched as is.
		return c.Match(method, path), 0, true
	}
	canon, amb := httpreq.CanonicalPath(path, c.Path.Options)
	if amb == 0 {
		return c.Match(method, canon), 0, true
	}
	if amb&httpreq.Malformed != 0 || !c.Path.SameRule {
		return nil, amb, false
	}
	var buf [4]string
	readings, _ := httpreq.PathReadings(buf[:0], path, c.Path.Options)
	r = c.Match(method, readings[0])
	for _, p := range readings[1:] {
		if c.Match(method, p) != r {
			return nil, amb, false
		}
	}
	return r, amb, true
}
