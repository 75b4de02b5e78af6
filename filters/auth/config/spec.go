package config

import (
	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/meshplug/meshplug/filters/configjson"
)

// Spec is the auth filter's configuration as written in JSON: the WasmPlugin's
// `pluginConfig`, and the `auth` section of a meshplug.io TrafficPolicy. Its doc
// comments are the field reference (the README's configuration tables are checked
// against these types by a test); Compile validates it and builds the runtime Config.
//
// Caveat: an absent field and JSON null are the same (the default applies); fields
// whose empty value means something other than the default (`identity.consumer_header:
// ""` disables the header, `ext_authz.allowed_client_headers: []` copies none) are
// pointers or keep the distinction between nil and empty.
//
// +kubebuilder:object:generate=true
type Spec struct {
	// Providers are the JWT issuers, by name. Names match `[A-Za-z0-9_.-]+`; `api_keys`,
	// `basic_auth` and `ext_authz` are reserved for the built-in methods.
	// +optional
	Providers map[string]ProviderSpec `json:"providers,omitzero"`
	// APIKeys enables API-key authentication.
	// +optional
	APIKeys *APIKeysSpec `json:"api_keys,omitzero"`
	// BasicAuth enables HTTP Basic authentication (RFC 7617).
	// +optional
	BasicAuth *BasicAuthSpec `json:"basic_auth,omitzero"`
	// ExtAuthz enables the external authorization service (Envoy ext_authz HTTP
	// semantics).
	// +optional
	ExtAuthz *ExtAuthzSpec `json:"ext_authz,omitzero"`
	// Rules are matched in order against the request; the first match decides.
	// +optional
	Rules []RuleSpec `json:"rules,omitzero"`
	// DefaultRule applies when no rule matches; it has no `match`. Absent: such
	// requests are denied with 403 `no_matching_rule` (fail closed). At least one of
	// `rules` and `default_rule` is required.
	// +optional
	DefaultRule *RuleSpec `json:"default_rule,omitzero"`
	// Identity names the headers that receive the established identity.
	// +optional
	Identity *IdentitySpec `json:"identity,omitzero"`
	// TokenCache sizes the verified-token cache.
	// +optional
	TokenCache *TokenCacheSpec `json:"token_cache,omitzero"`
	// GRPC answers gRPC requests (`content-type: application/grpc*`) with an explicit
	// `grpc-status` (16 for 401, 7 for 403) and a short `grpc-message`. Default true.
	// +optional
	GRPC *bool `json:"grpc,omitzero"`
	// Realm is the realm of `WWW-Authenticate` challenges: printable ASCII without `"`
	// or `\`. Default "meshplug".
	// +optional
	// +kubebuilder:validation:MinLength=1
	Realm *string `json:"realm,omitzero"`
	// PathNormalization says how rule paths are compared with the request path and
	// what happens to a path that reads differently on common upstreams. Default:
	// ambiguous paths are refused with 400, `;` is ambiguous, case matters.
	// +optional
	PathNormalization *PathNormalizationSpec `json:"path_normalization,omitzero"`
}

// PathNormalizationSpec: rules are matched on the request path in canonical form
// (`\` as `/`, percent-encoded unreserved characters decoded, dot segments removed,
// slashes merged: the path as Envoy's strictest normalization sees it), whatever the
// mesh's own path normalization did before the filter. What can still be read two
// ways by common upstreams is an ambiguous path: `%2F` or `%5C` (a separator for
// upstreams that decode before routing), `;` path parameters (dropped by Tomcat,
// Jetty and Spring, a character for Go), and malformed paths (invalid escapes,
// `%00` and other control characters, double encoding such as `%252F`, `..` after an
// empty segment, a final `.` or `..` segment, no leading `/`).
//
// +kubebuilder:object:generate=true
type PathNormalizationSpec struct {
	// Ambiguous is what happens to a request with an ambiguous path: "reject" (the
	// default) answers 400 `ambiguous_path`, as Envoy's REJECT_REQUEST does for
	// escaped slashes; "same_rule" lets it through when every reading of the path
	// (`%2F` as a separator or not, `;` parameters dropped or not) selects the same
	// rule, so that `/api/files/a%2Fb` passes under a `/api/` prefix while
	// `/admin%2Fusers` under a public default is refused. Malformed paths are refused
	// either way. Default "reject".
	// +optional
	// +kubebuilder:validation:Enum=reject;same_rule
	Ambiguous string `json:"ambiguous,omitzero"`
	// PathParams is how the upstream reads `;` in a path segment: "ambiguous" (the
	// default: upstreams differ), "strip" (Tomcat, Jetty, Spring: `;` up to the next
	// `/` is dropped before matching, so `/public/..;/admin` is `/admin`) or
	// "literal" (Go's net/http and most others: `;` is a character). Default
	// "ambiguous".
	// +optional
	// +kubebuilder:validation:Enum=ambiguous;strip;literal
	PathParams string `json:"path_params,omitzero"`
	// IgnoreCase matches paths ASCII case-insensitively, for upstreams that route so
	// (IIS, ASP.NET, Spring with case-insensitive matching); non-ASCII bytes in the
	// path are then malformed (Unicode case folding maps some onto ASCII letters).
	// +optional
	IgnoreCase bool `json:"ignore_case,omitzero"`
}

// ProviderSpec is one JWT issuer.
//
// +kubebuilder:validation:XValidation:rule="has(self.local_jwks) != has(self.remote_jwks)",message="exactly one of local_jwks and remote_jwks is required"
// +kubebuilder:object:generate=true
type ProviderSpec struct {
	// Issuer, if set, must equal the token's `iss`. It also lets the filter skip a
	// provider cheaply: a token of another issuer never triggers this provider's JWKS
	// fetch.
	// +optional
	Issuer string `json:"issuer,omitzero"`
	// Audiences, if set: the token's `aud` (string or array) must contain one of them.
	// +optional
	Audiences []string `json:"audiences,omitzero"`
	// Algorithms is the required allow-list of JWS algorithms (RS256/384/512,
	// PS256/384/512, ES256/384, EdDSA, HS256/384/512); `none` does not exist. The key
	// type must match the family, so an RSA key never verifies an HS token.
	// +kubebuilder:validation:MinItems=1
	Algorithms []string `json:"algorithms"`
	// FromHeaders are header sources of the token. Default, when no source at all is
	// given: `[{"name":"authorization","value_prefix":"Bearer "}]`.
	// +optional
	FromHeaders []HeaderSourceSpec `json:"from_headers,omitzero"`
	// FromParams are query parameters holding the token.
	// +optional
	FromParams []string `json:"from_params,omitzero"`
	// FromCookies are cookies holding the token.
	// +optional
	FromCookies []string `json:"from_cookies,omitzero"`
	// ClockSkewSeconds is the tolerance on `exp`, `nbf` and `iat`, 0..3600. Default 60.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=3600
	ClockSkewSeconds *int64 `json:"clock_skew_seconds,omitzero"`
	// MaxTokenBytes: longer tokens are rejected (`too_large`) before decoding,
	// 64..65536. Default 8192.
	// +optional
	// +kubebuilder:validation:Minimum=64
	// +kubebuilder:validation:Maximum=65536
	MaxTokenBytes *int64 `json:"max_token_bytes,omitzero"`
	// RequireExpiration rejects tokens without `exp` (`expired`). Default true (Envoy's
	// jwt_authn: false).
	// +optional
	RequireExpiration *bool `json:"require_expiration,omitzero"`
	// MaxLifetimeSeconds: `exp - iat` (or `exp - now` without `iat`) must not exceed it
	// (`lifetime_too_long`). 0 (the default) is no limit.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=315360000
	MaxLifetimeSeconds int64 `json:"max_lifetime_seconds,omitzero"`
	// RequiredClaims: each listed value must be present in the claim (a string or an
	// array of strings; `[]` only requires presence). Fails with 401
	// `missing_claim`/`claim_mismatch`.
	// +optional
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:validation:Type=object
	// +kubebuilder:pruning:PreserveUnknownFields
	RequiredClaims map[string]ClaimValues `json:"required_claims,omitzero"`
	// LocalJWKS is an inline key set. Exactly one of `local_jwks` and `remote_jwks` is
	// required.
	// +optional
	LocalJWKS *LocalJWKSSpec `json:"local_jwks,omitzero"`
	// RemoteJWKS fetches the key set over an HTTP callout.
	// +optional
	RemoteJWKS *RemoteJWKSSpec `json:"remote_jwks,omitzero"`
	// Forward keeps the credential on the upstream request (otherwise the header is
	// removed, or the query parameter or cookie cut out).
	// +optional
	Forward bool `json:"forward,omitzero"`
	// ForwardPayloadHeader is a header receiving the token's base64url payload segment.
	// +optional
	ForwardPayloadHeader string `json:"forward_payload_header,omitzero"`
	// ClaimToHeaders copies claims into request headers.
	// +optional
	ClaimToHeaders []ClaimToHeaderSpec `json:"claim_to_headers,omitzero"`
	// ConsumerClaim is the claim holding the consumer name (for
	// `identity.consumer_header` and `allowed_consumers`). Default "sub".
	// +optional
	// +kubebuilder:validation:MinLength=1
	ConsumerClaim *string `json:"consumer_claim,omitzero"`
}

// HeaderSourceSpec is a header a JWT is read from.
//
// +kubebuilder:object:generate=true
type HeaderSourceSpec struct {
	// Name is the header name (case-insensitive).
	Name string `json:"name"`
	// ValuePrefix must start the value (compared case-insensitively); the token is the
	// rest, surrounding spaces trimmed.
	// +optional
	ValuePrefix string `json:"value_prefix,omitzero"`
}

// ClaimToHeaderSpec copies a claim of a verified token into a request header. Scalars
// are written as text, arrays of scalars joined with `,`; objects, empty values and
// values with control characters are not written.
//
// +kubebuilder:object:generate=true
type ClaimToHeaderSpec struct {
	// Claim is a top-level claim name or a dotted path (`realm_access.roles`).
	Claim string `json:"claim"`
	// Header receives the value.
	Header string `json:"header"`
}

// ClaimValues is the value(s) a claim must hold: a JSON string or an array of strings.
// In the CRD schema it is left open (a structural schema cannot say "string or array");
// Compile checks it.
//
// +kubebuilder:object:generate=true
type ClaimValues []string

// UnmarshalJSON accepts a string or an array of strings. It decodes with
// go-json-experiment, the configuration's one JSON library (filters/configjson), so
// invalid UTF-8 (raw or as an unpaired surrogate escape) and duplicate member names
// anywhere in b are errors, as everywhere else in the configuration.
func (v *ClaimValues) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return configjson.Errorf("", "invalid string")
		}
		*v = ClaimValues{s}
		return nil
	}
	if len(b) > 0 && b[0] == '[' {
		var raw []jsontext.Value
		if err := json.Unmarshal(b, &raw); err != nil {
			return configjson.Errorf("", "invalid array")
		}
		out := make(ClaimValues, 0, len(raw))
		for i, r := range raw {
			var s string
			if len(r) == 0 || r[0] != '"' || json.Unmarshal(r, &s) != nil {
				return configjson.Errorf(configjson.Index("", i), "must be a string, got %s", configjson.KindOf(r))
			}
			out = append(out, s)
		}
		*v = out
		return nil
	}
	if string(b) == "null" {
		return nil
	}
	return configjson.Errorf("", "must be a string or an array of strings, got %s", configjson.KindOf(b))
}

// LocalJWKSSpec is a key set given inline.
//
// +kubebuilder:object:generate=true
type LocalJWKSSpec struct {
	// InlineString is a JWKS document (RFC 7517), parsed at configure time.
	InlineString string `json:"inline_string"`
}

// RemoteJWKSSpec says where and how often a provider's key set is fetched.
//
// +kubebuilder:object:generate=true
type RemoteJWKSSpec struct {
	// HTTPURI is the JWKS location and the Envoy cluster that reaches it.
	HTTPURI *HTTPURISpec `json:"http_uri"`
	// CacheDuration: keys are fresh this long after a successful fetch, 1s..168h.
	// Default "600s".
	// +optional
	CacheDuration *configjson.Duration `json:"cache_duration,omitzero"`
	// RefreshBefore: the background refresh starts this long before expiry; shorter
	// than cache_duration. Default "60s".
	// +optional
	RefreshBefore *configjson.Duration `json:"refresh_before,omitzero"`
	// MinRefetchInterval: an unknown `kid` refetches at most this often (counted from
	// the last fetch attempt), up to 24h. Default "30s".
	// +optional
	MinRefetchInterval *configjson.Duration `json:"min_refetch_interval,omitzero"`
	// Backoff paces fetches after failures.
	// +optional
	Backoff *BackoffSpec `json:"backoff,omitzero"`
}

// HTTPURISpec is an HTTP callout target.
//
// +kubebuilder:object:generate=true
type HTTPURISpec struct {
	// URI is an absolute http(s) URL without user info or fragment; its host is sent as
	// `:authority`, its path and query as `:path`.
	// +kubebuilder:validation:Pattern=`^https?://`
	URI string `json:"uri"`
	// Cluster is the Envoy cluster the callout is sent to.
	// +kubebuilder:validation:MinLength=1
	Cluster string `json:"cluster"`
	// Timeout of the callout, 1ms..1m. Default "5s".
	// +optional
	Timeout *configjson.Duration `json:"timeout,omitzero"`
}

// BackoffSpec is an exponential backoff.
//
// +kubebuilder:object:generate=true
type BackoffSpec struct {
	// BaseInterval is the first wait after a failed fetch (1ms..1h); it doubles per
	// consecutive failure. Default "1s".
	// +optional
	BaseInterval *configjson.Duration `json:"base_interval,omitzero"`
	// MaxInterval caps the wait (>= base_interval, up to 24h). Default "60s".
	// +optional
	MaxInterval *configjson.Duration `json:"max_interval,omitzero"`
}

// APIKeysSpec configures API-key authentication. Keys are stored as SHA-256 only and
// compared in constant time.
//
// +kubebuilder:object:generate=true
type APIKeysSpec struct {
	// FromHeaders are headers holding the key (whole value). Default, when no source is
	// given: `["x-api-key"]`.
	// +optional
	FromHeaders []string `json:"from_headers,omitzero"`
	// FromParams are query parameters holding the key.
	// +optional
	FromParams []string `json:"from_params,omitzero"`
	// Forward keeps the key on the upstream request.
	// +optional
	Forward bool `json:"forward,omitzero"`
	// Keys are the accepted keys; duplicates are errors.
	// +kubebuilder:validation:MinItems=1
	Keys []APIKeySpec `json:"keys"`
}

// APIKeySpec is one accepted API key.
//
// +kubebuilder:object:generate=true
type APIKeySpec struct {
	// Consumer is the consumer name the key authenticates.
	// +kubebuilder:validation:MinLength=1
	Consumer string `json:"consumer"`
	// SHA256 is the hex SHA-256 of the key (`printf %s "$KEY" | sha256sum`).
	// +kubebuilder:validation:Pattern=`^[0-9a-fA-F]{64}$`
	SHA256 string `json:"sha256"`
}

// BasicAuthSpec configures HTTP Basic authentication.
//
// +kubebuilder:object:generate=true
type BasicAuthSpec struct {
	// Forward keeps the `authorization` header on the upstream request.
	// +optional
	Forward bool `json:"forward,omitzero"`
	// Credentials are the accepted users.
	// +kubebuilder:validation:MinItems=1
	Credentials []BasicCredentialSpec `json:"credentials"`
}

// BasicCredentialSpec is one user.
//
// +kubebuilder:object:generate=true
type BasicCredentialSpec struct {
	// Username: printable ASCII without `:`.
	// +kubebuilder:validation:MinLength=1
	Username string `json:"username"`
	// PasswordSHA256 is the hex SHA-256 of `salt + password`.
	// +kubebuilder:validation:Pattern=`^[0-9a-fA-F]{64}$`
	PasswordSHA256 string `json:"password_sha256"`
	// Salt is prepended to the password before hashing. Default "".
	// +optional
	Salt string `json:"salt,omitzero"`
}

// ExtAuthzSpec configures the external authorization callout.
//
// +kubebuilder:object:generate=true
type ExtAuthzSpec struct {
	// HTTPService is the authorization service.
	HTTPService *HTTPServiceSpec `json:"http_service"`
	// AllowedRequestHeaders are client headers copied into the check request (besides
	// `:method`, `:path`, `:authority`, `content-length: 0`). Unlike Envoy,
	// `authorization` is not added implicitly.
	// +optional
	AllowedRequestHeaders []string `json:"allowed_request_headers,omitzero"`
	// AllowedUpstreamHeaders are headers of a 200 check response copied onto the
	// upstream request (identity headers: always stripped from client requests).
	// +optional
	AllowedUpstreamHeaders []string `json:"allowed_upstream_headers,omitzero"`
	// AllowedClientHeaders are headers of a denying check response copied to the
	// client. Default `["www-authenticate"]`; `[]` copies none.
	// +optional
	AllowedClientHeaders []string `json:"allowed_client_headers,omitzero"`
	// FailureModeAllow lets requests through when the service cannot be reached, times
	// out or answers 502/503/504.
	// +optional
	FailureModeAllow bool `json:"failure_mode_allow,omitzero"`
	// StatusOnError is the status when the service cannot be reached, times out or
	// answers 502/503/504, 400..599. Default 403.
	// +optional
	// +kubebuilder:validation:Minimum=400
	// +kubebuilder:validation:Maximum=599
	StatusOnError *int64 `json:"status_on_error,omitzero"`
}

// HTTPServiceSpec is the external authorization service.
//
// +kubebuilder:object:generate=true
type HTTPServiceSpec struct {
	// Cluster is the Envoy cluster of the authorization service.
	// +kubebuilder:validation:MinLength=1
	Cluster string `json:"cluster"`
	// Authority is the `:authority` of the check request. Default: the cluster name.
	// +optional
	Authority string `json:"authority,omitzero"`
	// PathPrefix is prepended to the request path in canonical form (case kept, query
	// as sent; see `path_normalization`); it starts with `/`.
	// +optional
	PathPrefix string `json:"path_prefix,omitzero"`
	// Timeout of the check, 1ms..1m. Default "200ms".
	// +optional
	Timeout *configjson.Duration `json:"timeout,omitzero"`
}

// RuleSpec says how the requests that match it are authenticated.
//
// +kubebuilder:object:generate=true
type RuleSpec struct {
	// Match selects requests (required, except on `default_rule` where it is refused).
	// +optional
	Match *MatchSpec `json:"match,omitzero"`
	// Public: no authentication (identity headers are still stripped). Excludes
	// `requires`, `allow_missing`, `allowed_consumers` and `required_claims`.
	// +optional
	Public bool `json:"public,omitzero"`
	// Requires lists provider names, `api_keys`, `basic_auth` or `ext_authz`, tried in
	// order; any one succeeding (and passing `allowed_consumers`/`required_claims`)
	// allows. `ext_authz` must stand alone. Required unless public.
	// +optional
	Requires []string `json:"requires,omitzero"`
	// AllowMissing: with no credential of the required kinds the request passes
	// anonymously; a credential that is present must still verify.
	// +optional
	AllowMissing *bool `json:"allow_missing,omitzero"`
	// AllowedConsumers: an authenticated caller whose consumer name is not listed gets
	// 403 `consumer_not_allowed`. Absent: any consumer.
	// +optional
	AllowedConsumers []string `json:"allowed_consumers,omitzero"`
	// RequiredClaims must hold for the authenticated JWT, otherwise 403
	// `insufficient_scope`. Non-JWT identities have no claims and fail it.
	// +optional
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:validation:Type=object
	// +kubebuilder:pruning:PreserveUnknownFields
	RequiredClaims map[string]ClaimValues `json:"required_claims,omitzero"`
}

// MatchSpec selects requests by the request `:path` without its query string, in
// canonical form (see `path_normalization`). Exactly one of prefix, path and regex is
// required.
//
// +kubebuilder:validation:XValidation:rule="(has(self.prefix) ? 1 : 0) + (has(self.path) ? 1 : 0) + (has(self.regex) ? 1 : 0) == 1",message="exactly one of prefix, path and regex is required"
// +kubebuilder:object:generate=true
type MatchSpec struct {
	// Prefix the canonical path starts with (bytes compared); starts with `/` and is
	// itself in canonical form (`/admin`, not `//admin` or `/%61dmin`).
	// +optional
	Prefix *string `json:"prefix,omitzero"`
	// Path the canonical path equals (bytes compared); starts with `/`, no query, in
	// canonical form.
	// +optional
	Path *string `json:"path,omitzero"`
	// Regex is an RE2 expression matched against the canonical path, unanchored (use
	// `^` and `$`).
	// +optional
	Regex *string `json:"regex,omitzero"`
	// Methods the request method is one of (upper-cased). Absent: any method.
	// +optional
	Methods []string `json:"methods,omitzero"`
	// StrictMethods makes HEAD match only when listed. By default a rule listing GET
	// also matches HEAD, which servers answer with GET's handler (RFC 9110 §9.3.2).
	// Request methods are compared case-sensitively (RFC 9110 §9.1: "get" is not GET).
	// +optional
	StrictMethods bool `json:"strict_methods,omitzero"`
}

// IdentitySpec names the headers that receive the established identity.
//
// +kubebuilder:object:generate=true
type IdentitySpec struct {
	// ConsumerHeader receives the consumer name (JWT `consumer_claim`, API-key
	// consumer, basic-auth user). Default "x-consumer"; "" disables it.
	// +optional
	ConsumerHeader *string `json:"consumer_header,omitzero"`
	// ProviderHeader receives the method that succeeded (provider name, `api_keys`,
	// `basic_auth`, `ext_authz`). Default "x-auth-provider"; "" disables it.
	// +optional
	ProviderHeader *string `json:"provider_header,omitzero"`
}

// TokenCacheSpec sizes the verified-token cache.
//
// +kubebuilder:object:generate=true
type TokenCacheSpec struct {
	// MaxEntries is the cache size per worker VM, 0..1048576; 0 disables the cache.
	// Default 4096.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1048576
	MaxEntries *int64 `json:"max_entries,omitzero"`
	// MaxBytes bounds the memory the cache holds per worker VM, 16384..1073741824
	// bytes; whichever of MaxEntries and MaxBytes is reached first evicts (entries not
	// used recently first). An entry counts as its token (+1/8), the identity kept with
	// it (header values, and the claims that rules' required_claims name) and 320
	// bytes: about 1.5 KiB for an 850-byte token, which holds about 1.2 KiB of live
	// heap; a token counted at more than MaxBytes is not cached. Default 1048576
	// (1 MiB, about 700 such tokens): with the cache full, the bundle meshplug.wasm
	// stays within 10 MiB of linear memory per worker.
	// +optional
	// +kubebuilder:validation:Minimum=16384
	// +kubebuilder:validation:Maximum=1073741824
	MaxBytes *int64 `json:"max_bytes,omitzero"`
	// MaxTTL is the longest time a verified token is reused, 1s..24h (tokens are also
	// dropped at `exp` + skew and when the provider's keys change). Default "10m".
	// +optional
	MaxTTL *configjson.Duration `json:"max_ttl,omitzero"`
}
