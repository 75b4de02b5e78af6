// Package config holds the fault filter's configuration: the wire types (Spec, decoded
// strictly from the plugin configuration JSON), their validation, and the compiled
// runtime Config.
//
// A fault rule has the shape of Envoy's HTTP fault filter configuration
// (envoy.extensions.filters.http.fault.v3.HTTPFault): an Envoy HTTPFault written as JSON
// (delay.fixed_delay, delay.header_delay, abort.http_status, abort.grpc_status,
// abort.header_abort, percentage as a FractionalPercent, headers, downstream_nodes,
// upstream_cluster, max_active_faults) is a valid rule. meshplug adds a few fields
// (several rules, a rule name, a route name target, a cap on header-controlled delays,
// the abort's body and headers) and refuses the parts it cannot do faithfully
// (response_rate_limit, runtime keys).
//
// The package has no ABI calls and compiles natively and for wasip1, so the controller
// validates policies with the very code the filter runs. The field reference is in
// ../README.md.
//
// Envoy reference: https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/filters/http/fault/v3/fault.proto
package config

import (
	"github.com/meshplug/meshplug/filters/configjson"
)

// Spec is the fault filter's plugin configuration.
//
// +kubebuilder:object:generate=true
type Spec struct {
	// Faults are the fault rules, tried in order: the first rule whose targets all
	// match the request applies to it (one rule per request, like one Envoy fault
	// filter). At least one rule is required.
	// +kubebuilder:validation:MinItems=1
	Faults []FaultSpec `json:"faults"`

	// MaxActiveFaults caps the number of requests that have a fault injected at the
	// same time, across all worker VMs of the proxy, for rules that do not set their
	// own max_active_faults. Absent: no cap.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=4294967295
	MaxActiveFaults *int64 `json:"max_active_faults,omitempty"`

	// RandomSeed fixes the seed of the per-VM random generator that decides the
	// percentages (every VM uses the same sequence). For tests only; absent: each VM
	// seeds from the host's secure random source (WASI random_get).
	// +kubebuilder:validation:Minimum=0
	RandomSeed *int64 `json:"random_seed,omitempty"`

	// PathNormalization says how header matchers on `:path` read the path: its path
	// part in canonical form (`\` as `/`, percent-encoded unreserved characters
	// decoded, dot segments removed, slashes merged; the query kept as sent), whatever
	// the mesh's path normalization did. A path that common upstreams read two ways
	// (`%2F`, `%5C`, `;` path parameters) matches if any reading does (an inverted
	// matcher: if none does). Absent: `;` read both ways.
	// +optional
	PathNormalization *PathNormalizationSpec `json:"path_normalization,omitempty"`
}

// PathNormalizationSpec states the upstream's path conventions.
//
// +kubebuilder:object:generate=true
type PathNormalizationSpec struct {
	// PathParams is how the upstream reads `;` in a path segment: "ambiguous"
	// (default: both readings), "strip" (Tomcat, Jetty, Spring drop `;` up to the
	// next `/`) or "literal" (Go's net/http: a character).
	// +optional
	// +kubebuilder:validation:Enum=ambiguous;strip;literal
	PathParams string `json:"path_params,omitempty"`
}

// FaultSpec is one fault rule: Envoy's HTTPFault plus meshplug's name, route_name and
// abort body/headers.
//
// +kubebuilder:object:generate=true
type FaultSpec struct {
	// Name identifies the rule in logs. Optional; default "faults[i]".
	Name string `json:"name,omitempty"`

	// Delay injects a fixed (or header-controlled) delay before the request goes on.
	Delay *DelaySpec `json:"delay,omitempty"`
	// Abort answers the request with an error instead of sending it upstream (after
	// the delay, if one was injected too). At least one of delay and abort is
	// required.
	Abort *AbortSpec `json:"abort,omitempty"`

	// UpstreamCluster restricts the rule to requests routed to this cluster (Envoy
	// attribute xds.cluster_name). Empty: any cluster.
	UpstreamCluster string `json:"upstream_cluster,omitempty"`
	// RouteName restricts the rule to requests on this route (Envoy attribute
	// xds.route_name). meshplug extension. Empty: any route.
	RouteName string `json:"route_name,omitempty"`
	// Headers must all match the request's headers (Envoy HeaderMatcher semantics);
	// pseudo-headers such as :path, :method and :authority target paths, methods and
	// hosts, and identity headers written by the auth filter target users.
	Headers []HeaderMatcherSpec `json:"headers,omitempty"`
	// DownstreamNodes restricts the rule to requests whose
	// x-envoy-downstream-service-node header is one of these names.
	DownstreamNodes []string `json:"downstream_nodes,omitempty"`

	// MaxActiveFaults caps the requests with a fault injected at the same time, across
	// all worker VMs (compared with the plugin-wide count, like Envoy's per-route
	// setting against the filter's active_faults gauge). Absent: the top-level
	// max_active_faults.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=4294967295
	MaxActiveFaults *int64 `json:"max_active_faults,omitempty"`

	// Envoy's response_rate_limit is not a field: Parse refuses it with an
	// explanation (proxy-wasm cannot release part of a held response body, so a
	// bandwidth limit could not be kept faithfully; see the README).
}

// DelaySpec is Envoy's FaultDelay: exactly one of fixed_delay and header_delay.
//
// +kubebuilder:object:generate=true
type DelaySpec struct {
	// FixedDelay is the delay, e.g. "7s". Must be > 0; resolution is one
	// millisecond (like Envoy) and the resume happens on the filter's tick (see
	// README).
	FixedDelay *configjson.Duration `json:"fixed_delay,omitempty"`
	// HeaderDelay takes the delay in milliseconds from the request header
	// x-envoy-fault-delay-request, and lets x-envoy-fault-delay-request-percentage
	// lower the percentage. Requests without a valid header get no delay.
	HeaderDelay *HeaderDelaySpec `json:"header_delay,omitempty"`
	// Percentage of matching requests delayed. Required (Envoy reads an absent
	// percentage as 0%, Istio as 100%: say which).
	Percentage *FractionalPercentSpec `json:"percentage"`
}

// HeaderDelaySpec is Envoy's empty HeaderDelay message plus meshplug's cap.
//
// +kubebuilder:object:generate=true
type HeaderDelaySpec struct {
	// MaxDelay caps a header-controlled delay (a larger header value is lowered to
	// it). meshplug extension; absent: no cap beyond Envoy's own stream timeouts.
	MaxDelay *configjson.Duration `json:"max_delay,omitempty"`
}

// AbortSpec is Envoy's FaultAbort: exactly one of http_status, grpc_status and
// header_abort.
//
// +kubebuilder:object:generate=true
type AbortSpec struct {
	// HTTPStatus is the status of the reply, 200–599. gRPC requests get a
	// trailers-only reply whose grpc-status is mapped from it (as Envoy does).
	// +kubebuilder:validation:Minimum=200
	// +kubebuilder:validation:Maximum=599
	HTTPStatus *int64 `json:"http_status,omitempty"`
	// GRPCStatus is the grpc-status of a trailers-only reply (HTTP 200).
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=16
	GRPCStatus *int64 `json:"grpc_status,omitempty"`
	// HeaderAbort takes the status from x-envoy-fault-abort-request (HTTP, 200–599) or
	// x-envoy-fault-abort-grpc-request (gRPC), and lets
	// x-envoy-fault-abort-request-percentage lower the percentage. Requests without a
	// valid header are not aborted.
	HeaderAbort *HeaderAbortSpec `json:"header_abort,omitempty"`
	// Percentage of matching requests aborted. Required (see delay.percentage).
	Percentage *FractionalPercentSpec `json:"percentage"`

	// Body of the reply. meshplug extension; default a small JSON document
	// {"error":"fault_filter_abort","message":"fault filter abort"}. For gRPC replies
	// it is the grpc-message.
	Body *string `json:"body,omitempty"`
	// ResponseHeaders are added to the reply. meshplug extension.
	ResponseHeaders []HeaderValueSpec `json:"response_headers,omitempty"`
}

// HeaderAbortSpec is Envoy's empty HeaderAbort message.
//
// +kubebuilder:object:generate=true
type HeaderAbortSpec struct{}

// FractionalPercentSpec is Envoy's type.v3.FractionalPercent: numerator/denominator.
//
// +kubebuilder:object:generate=true
type FractionalPercentSpec struct {
	// Numerator of the fraction; must not exceed the denominator.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000000
	Numerator int64 `json:"numerator"`
	// Denominator: HUNDRED (default), TEN_THOUSAND or MILLION.
	// +kubebuilder:validation:Enum=HUNDRED;TEN_THOUSAND;MILLION
	Denominator string `json:"denominator,omitempty"`
}

// HeaderMatcherSpec is Envoy's config.route.v3.HeaderMatcher (the commonly used
// subset): exactly one of string_match, present_match and the legacy
// exact_match/prefix_match/suffix_match/contains_match/safe_regex_match.
//
// +kubebuilder:object:generate=true
type HeaderMatcherSpec struct {
	// Name of the header (case-insensitive; pseudo-headers such as :path allowed).
	Name string `json:"name"`
	// StringMatch matches the header's value. A header with several values is matched
	// as the values joined by "," (Envoy's rule).
	StringMatch *StringMatcherSpec `json:"string_match,omitempty"`
	// PresentMatch: true matches when the header is present, false when absent.
	PresentMatch *bool `json:"present_match,omitempty"`
	// Legacy Envoy forms, equivalent to string_match with one field set.
	ExactMatch     *string         `json:"exact_match,omitempty"`
	PrefixMatch    *string         `json:"prefix_match,omitempty"`
	SuffixMatch    *string         `json:"suffix_match,omitempty"`
	ContainsMatch  *string         `json:"contains_match,omitempty"`
	SafeRegexMatch *RegexMatchSpec `json:"safe_regex_match,omitempty"`
	// InvertMatch inverts the result for a header that is present. As in Envoy, a
	// missing header never matches a value matcher, inverted or not (use
	// present_match: false to target requests without the header).
	InvertMatch bool `json:"invert_match,omitempty"`
}

// StringMatcherSpec is Envoy's type.matcher.v3.StringMatcher: exactly one of exact,
// prefix, suffix, contains and safe_regex.
//
// +kubebuilder:object:generate=true
type StringMatcherSpec struct {
	Exact     *string         `json:"exact,omitempty"`
	Prefix    *string         `json:"prefix,omitempty"`
	Suffix    *string         `json:"suffix,omitempty"`
	Contains  *string         `json:"contains,omitempty"`
	SafeRegex *RegexMatchSpec `json:"safe_regex,omitempty"`
	// IgnoreCase compares ASCII case-insensitively (not for safe_regex).
	IgnoreCase bool `json:"ignore_case,omitempty"`
}

// RegexMatchSpec is Envoy's type.matcher.v3.RegexMatcher: an RE2 regular expression
// that must match the whole value.
//
// +kubebuilder:object:generate=true
type RegexMatchSpec struct {
	Regex string `json:"regex"`
	// GoogleRE2 is accepted for compatibility and ignored (Envoy's deprecated field).
	GoogleRE2 *GoogleRE2Spec `json:"google_re2,omitempty"`
}

// GoogleRE2Spec is Envoy's deprecated RegexMatcher.GoogleRE2, accepted and ignored.
//
// +kubebuilder:object:generate=true
type GoogleRE2Spec struct {
	// +kubebuilder:validation:Minimum=0
	MaxProgramSize *int64 `json:"max_program_size,omitempty"`
}

// HeaderValueSpec is one header of a generated reply.
//
// +kubebuilder:object:generate=true
type HeaderValueSpec struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}
