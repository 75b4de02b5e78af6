// Package config holds the ratelimit filter's configuration: the wire types (Spec and
// the structs under it, decoded strictly from the plugin's JSON by configjson), their
// validation, and the compiled runtime form (Config) that the engine runs.
//
// The model is Envoy's rate limit descriptors: a rule builds one descriptor, a list of
// entries (key, value) whose values come from the request, and limits the requests of
// each distinct descriptor. The same descriptors can later be sent to Envoy's rate
// limit service (envoy.extensions.common.ratelimit.v3.RateLimitDescriptor, served by
// envoyproxy/ratelimit with a `domain` and `descriptors` config).
//
// The package has no ABI calls and compiles natively and for wasip1: the controller
// validates policies with it. The field reference is in ../README.md.
//
// See https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/common/ratelimit/v3/ratelimit.proto
// and https://github.com/envoyproxy/ratelimit#configuration.
package config

import "github.com/meshplug/meshplug/filters/configjson"

// Spec is the ratelimit filter's configuration as written (Envoy/Istio pluginConfig).
//
// +kubebuilder:object:generate=true
type Spec struct {
	// Domain is the rate limit domain of this configuration's descriptors, as
	// envoyproxy/ratelimit names a set of limits; it is sent with the descriptors in the
	// global mode. Default "meshplug".
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9_.-]+$`
	Domain string `json:"domain,omitempty"`

	// Rules are evaluated in order; every rule that matches the request is applied
	// (like Envoy's rate limit actions: each produces a descriptor), and the request is
	// limited if any applied rule's bucket is empty. At least one.
	// +kubebuilder:validation:MinItems=1
	Rules []RuleSpec `json:"rules"`

	// Headers selects the rate limit headers sent to the client: "ratelimit"
	// (RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset; the names of the IETF
	// draft-ietf-httpapi-ratelimit-headers-03 that Envoy's local_ratelimit writes with
	// enable_x_ratelimit_headers: DRAFT_VERSION_03), "x-ratelimit" (X-RateLimit-Limit,
	// X-RateLimit-Remaining, X-RateLimit-Reset) or "none". Default "ratelimit".
	// Retry-After is always sent on a 429.
	// +kubebuilder:validation:Enum=ratelimit;x-ratelimit;none
	Headers string `json:"headers,omitempty"`

	// HeadersOnAllowed also adds the rate limit headers to responses of allowed
	// requests. Default false.
	HeadersOnAllowed bool `json:"headers_on_allowed,omitempty"`

	// XFFNumTrustedHops is the number of trusted proxies in front of this one, as
	// Envoy's xff_num_trusted_hops: a client_address descriptor takes the address that
	// many entries from the right of X-Forwarded-For. 0 (default) uses the connection's
	// address (source.address) and ignores X-Forwarded-For. 0..16.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=16
	XFFNumTrustedHops int `json:"xff_num_trusted_hops,omitempty"`

	// MaxKeys sizes the bucket table kept in the proxy's shared data (all rules
	// together): max_keys/2 shared-data entries of up to 8 buckets each. Idle buckets
	// (full again) are dropped when their entry is next written; a new key whose entry
	// holds 8 active buckets evicts the one closest to full. With max_keys active keys
	// about 8 entries of 32768 overflow (default size); with half as many, almost none.
	// Default 65536; 64..4194304.
	// +kubebuilder:validation:Minimum=64
	// +kubebuilder:validation:Maximum=4194304
	MaxKeys int `json:"max_keys,omitempty"`

	// Shadow counts and logs what would be limited but never rejects (all rules).
	Shadow bool `json:"shadow,omitempty"`

	// Status is the HTTP status of a limited request. Default 429; 400..599.
	// +kubebuilder:validation:Minimum=400
	// +kubebuilder:validation:Maximum=599
	Status int `json:"status,omitempty"`

	// GRPC answers gRPC requests (content-type application/grpc*) with grpc-status 8
	// (RESOURCE_EXHAUSTED). Default true.
	GRPC *bool `json:"grpc,omitempty"`

	// Mode is "local" (default: token buckets in the proxy's shared data, exact within
	// one proxy) or "global" (the descriptors are sent to a rate limit service shared by
	// every proxy; see Global).
	// +kubebuilder:validation:Enum=local;global
	Mode string `json:"mode,omitempty"`

	// Global configures the rate limit service of the global mode. Required with mode
	// "global", refused otherwise.
	Global *GlobalSpec `json:"global,omitempty"`

	// PathNormalization says how the request path is read for match prefix/path/regex
	// and path descriptors: in canonical form (`\` as `/`, percent-encoded unreserved
	// characters decoded, dot segments removed, slashes merged), whatever the mesh's
	// path normalization did. A path that common upstreams read two ways (`%2F`, `%5C`,
	// `;` path parameters) matches a rule if any reading does, and a path descriptor
	// takes its most decoded reading (`%2F` as `/`, parameters dropped), so that no
	// spelling of a path escapes its limit or gets a bucket of its own.
	PathNormalization *PathNormalizationSpec `json:"path_normalization,omitempty"`
}

// PathNormalizationSpec states the upstream's path conventions.
//
// +kubebuilder:object:generate=true
type PathNormalizationSpec struct {
	// PathParams is how the upstream reads `;` in a path segment: "ambiguous"
	// (default: both readings count), "strip" (Tomcat, Jetty, Spring drop `;` up to
	// the next `/`) or "literal" (Go's net/http: a character).
	// +kubebuilder:validation:Enum=ambiguous;strip;literal
	PathParams string `json:"path_params,omitempty"`
	// IgnoreCase: the upstream routes paths ASCII case-insensitively; paths and path
	// descriptor values are lower-cased. Default false.
	IgnoreCase bool `json:"ignore_case,omitempty"`
}

// GlobalSpec is the rate limit service the global mode calls:
// envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit (envoyproxy/ratelimit,
// Limitador), as Envoy's ratelimit HTTP filter's rate_limit_service does.
//
// +kubebuilder:object:generate=true
type GlobalSpec struct {
	// Cluster is the proxy's cluster of the service (HTTP/2). In Istio, the outbound
	// cluster of its Service, e.g. "outbound|8081||ratelimit.ns.svc.cluster.local".
	// Required.
	// +kubebuilder:validation:MinLength=1
	Cluster string `json:"cluster"`

	// Timeout of a call, as Envoy's ratelimit filter's `timeout`; past it the failure
	// mode applies. Default "20ms" (Envoy's default); 1ms..60s.
	Timeout configjson.Duration `json:"timeout,omitempty"`

	// FailureModeDeny rejects requests when the service cannot answer (unreachable,
	// timeout, an error status, a reply that does not parse): Envoy's
	// failure_mode_deny. Default false: such requests are allowed, and counted in
	// meshplug.ratelimit.service.failure_mode_allowed.
	FailureModeDeny bool `json:"failure_mode_deny,omitempty"`

	// StatusOnError is the HTTP status of a request rejected by failure_mode_deny, as
	// Envoy's status_on_error. Default 500; 400..599.
	// +kubebuilder:validation:Minimum=400
	// +kubebuilder:validation:Maximum=599
	StatusOnError int `json:"status_on_error,omitempty"`

	// LocalPrecheck first takes a token from a local bucket of the same limit (shared
	// data, as the local mode): when this proxy alone has used up a key's limit the
	// request is rejected without calling the service. It spares the service (and the
	// request its round trip) under overload from one proxy's clients, but the local
	// bucket refills continuously where the service's window resets at once, so just
	// after a window boundary a key this proxy saw at its limit can be rejected locally
	// although the service would admit it (by up to one limit's worth of requests per
	// proxy, until the bucket refills). Default false.
	LocalPrecheck bool `json:"local_precheck,omitempty"`
}

// RuleSpec limits the requests it matches, per distinct descriptor.
//
// +kubebuilder:object:generate=true
type RuleSpec struct {
	// Name identifies the rule in metrics and logs (meshplug.ratelimit.<name>.*) and in
	// the bucket keys: renaming a rule starts its buckets afresh. Required, unique,
	// [A-Za-z0-9_-]+.
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9_-]+$`
	Name string `json:"name"`

	// Match selects the requests the rule applies to; absent = every request.
	Match *MatchSpec `json:"match,omitempty"`

	// Descriptors are the entries of the rule's descriptor, in order; their values,
	// taken from the request, together form the bucket key. At least one.
	// +kubebuilder:validation:MinItems=1
	Descriptors []DescriptorSpec `json:"descriptors"`

	// Limit is the rule's default limit for each key.
	Limit LimitSpec `json:"limit"`

	// Overrides give chosen keys another limit; the first override whose values all
	// match wins.
	Overrides []OverrideSpec `json:"overrides,omitempty"`

	// MissingKey is what happens when a descriptor's value is absent from the request
	// (no such header, cookie or parameter; unusable client address): "allow" (default,
	// as Envoy skips a descriptor whose header is absent), "anonymous" (all such
	// requests share one bucket) or "deny" (answer as limited).
	// +kubebuilder:validation:Enum=allow;anonymous;deny
	MissingKey string `json:"missing_key,omitempty"`

	// Shadow counts and logs what this rule would limit but never rejects.
	Shadow bool `json:"shadow,omitempty"`
}

// MatchSpec selects requests. All given conditions must hold.
//
// +kubebuilder:object:generate=true
type MatchSpec struct {
	// Prefix, Path and Regex compare :path without the query string, in canonical form
	// (see path_normalization); at most one. Prefix and Path must be canonical
	// themselves (`/login`, not `//login` or `/%6Cogin`). Regex is RE2, unanchored.
	Prefix string `json:"prefix,omitempty"`
	Path   string `json:"path,omitempty"`
	Regex  string `json:"regex,omitempty"`
	// Methods are request methods (upper-cased); any if empty.
	Methods []string `json:"methods,omitempty"`
	// Headers must all match.
	Headers []HeaderMatchSpec `json:"headers,omitempty"`
}

// HeaderMatchSpec is a condition on a request header. A repeated header is matched as its
// copies joined by "," (RFC 9110 field-line combination). Exactly one of Exact, Prefix,
// Present.
//
// +kubebuilder:object:generate=true
type HeaderMatchSpec struct {
	Name    string `json:"name"`
	Exact   string `json:"exact,omitempty"`
	Prefix  string `json:"prefix,omitempty"`
	Present *bool  `json:"present,omitempty"`
	// Invert negates the condition.
	Invert bool `json:"invert,omitempty"`
}

// DescriptorSpec is one entry of a rule's descriptor: a key and where its value comes
// from. Exactly one source.
//
// +kubebuilder:object:generate=true
type DescriptorSpec struct {
	// Key is the entry's descriptor key (e.g. "consumer"), [A-Za-z0-9_.-]+, unique in
	// the rule.
	Key string `json:"key"`
	// Header: the value of this request header (all copies joined by ","). Only safe
	// to key on if a filter before this one removes client copies (auth's identity
	// headers) or the header comes from a trusted proxy.
	Header string `json:"header,omitempty"`
	// Cookie: the value of this cookie (the first occurrence over all Cookie lines).
	Cookie string `json:"cookie,omitempty"`
	// QueryParam: the value of this query parameter (first occurrence; name and value
	// percent-decoded, '+' as space).
	QueryParam string `json:"query_param,omitempty"`
	// ClientAddress: the client's IP address (see xff_num_trusted_hops).
	ClientAddress bool `json:"client_address,omitempty"`
	// Path: :path without the query string, in canonical form (see
	// path_normalization).
	Path bool `json:"path,omitempty"`
	// Method: the request method.
	Method bool `json:"method,omitempty"`
	// Value: a constant (Envoy's generic_key): one bucket for all matching requests.
	Value string `json:"value,omitempty"`
}

// LimitSpec is a token bucket: Requests tokens are added every Unit (or Per), continuously,
// up to Burst; each request takes one. Exactly one of Unit and Per.
//
// +kubebuilder:object:generate=true
type LimitSpec struct {
	// Requests per unit. 1..1000000000.
	// +kubebuilder:validation:Minimum=1
	Requests int64 `json:"requests"`
	// Unit is "second", "minute", "hour" or "day" (envoyproxy/ratelimit's units).
	// +kubebuilder:validation:Enum=second;minute;hour;day
	Unit string `json:"unit,omitempty"`
	// Per is any refill period instead of Unit, 1ms..24h ("1.5s").
	Per configjson.Duration `json:"per,omitempty"`
	// Burst is the bucket size. Default Requests.
	// +kubebuilder:validation:Minimum=1
	Burst int64 `json:"burst,omitempty"`
}

// OverrideSpec gives the keys whose descriptor values match another limit.
//
// +kubebuilder:object:generate=true
type OverrideSpec struct {
	// Values maps descriptor keys of the rule to a value: exact, "prefix*" (a trailing
	// '*' matches any rest), or "*" (any value, present). At least one.
	Values map[string]string `json:"values"`
	// Limit replaces the rule's limit for these keys. Exactly one of Limit, Unlimited.
	Limit *LimitSpec `json:"limit,omitempty"`
	// Unlimited exempts these keys.
	Unlimited bool `json:"unlimited,omitempty"`
}
