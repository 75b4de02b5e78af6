// Package config holds the routehint filter's configuration: the wire types (Spec,
// decoded strictly from the plugin's JSON configuration by filters/configjson), their
// validation, and the compiled runtime form (Config) the filter and the controller use.
//
// The package has no ABI calls and compiles natively and for wasip1, so the controller
// validates policies and renders Istio routes (VirtualService header matches,
// DestinationRule subsets) from the very types the filter runs. The field reference is
// the doc comments below; examples are in ../README.md.
package config

// Spec is the routehint filter's configuration (the WasmPlugin's pluginConfig).
//
// The filter computes routing hints: request headers that an Istio VirtualService
// (or an Envoy route) matches on to pick a DestinationRule subset. Targets name the sets
// of hint headers; rules say which requests get which target, by conditions on the
// request or by a sticky weighted split; an optional override lets testers force a
// target. Every hint header a client sends is removed before the rules run, unless it is
// declared trusted.
//
// +kubebuilder:object:generate=true
type Spec struct {
	// Mode says which matching rules act: "first" (default) — only the first rule, in
	// order, whose match holds; "all" — every matching rule in order, a hint header set
	// by a later rule replacing the value an earlier rule set.
	// +kubebuilder:validation:Enum=first;all
	// +optional
	Mode string `json:"mode,omitempty"`

	// Targets are the named sets of hint headers that rules and the override assign.
	// A target's name is what metrics, logs and the echo header show; using the
	// DestinationRule subset name keeps them readable.
	// +kubebuilder:validation:MinItems=1
	// +listType=map
	// +listMapKey=name
	Targets []TargetSpec `json:"targets"`

	// Rules are evaluated in order against the request as it arrived (after the spoofed
	// hint headers are removed). A request no rule matches gets no hint headers: the
	// VirtualService's default route applies.
	// +listType=map
	// +listMapKey=name
	// +optional
	Rules []RuleSpec `json:"rules,omitempty"`

	// StripHeaders are further request headers removed from every request before the
	// rules run, as the targets' headers are (e.g. a hint header a previous version of
	// the config used and a VirtualService still matches). Lower-cased when compiled.
	// +optional
	StripHeaders []string `json:"strip_headers,omitempty"`

	// TrustedHeaders are hint headers (from targets or strip_headers) that are NOT
	// removed from incoming requests: set them only where an earlier hop you control
	// computes the hint. A rule whose target sets such a header still replaces it.
	// +optional
	TrustedHeaders []string `json:"trusted_headers,omitempty"`

	// Override lets a request force one of a few allowed targets (for testers), by a
	// header or a cookie. Absent: no override.
	// +optional
	Override *OverrideSpec `json:"override,omitempty"`

	// EchoHeader is a response header that carries the names of the chosen targets
	// (comma-separated, in the order they were applied; "-" when none), for debugging.
	// Empty: no echo. Lower-cased when compiled.
	// +optional
	EchoHeader string `json:"echo_header,omitempty"`

	// PathNormalization says how the request path is read for "path" conditions.
	// +optional
	PathNormalization *PathNormalizationSpec `json:"path_normalization,omitempty"`
}

// PathNormalizationSpec: "path" conditions see the request path in canonical form
// (`\` as `/`, percent-encoded unreserved characters decoded, dot segments removed,
// slashes merged), whatever the mesh's path normalization did. A path that common
// upstreams read two ways (`%2F`, `%5C`, `;` path parameters) is judged like an input
// with several copies: one copy per reading.
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

// TargetSpec is a named set of hint headers.
//
// +kubebuilder:object:generate=true
type TargetSpec struct {
	// Name of the target: a DNS label (lower-case letters, digits and '-', at most 63
	// characters), like the DestinationRule subset it usually stands for.
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`

	// Headers are set on the request (replacing any value) when the target is chosen:
	// header name → value. A target may set none (e.g. "stable", served by the
	// VirtualService's default route). Names are lower-cased when compiled; pseudo
	// headers and headers that carry the request itself (host, cookie, content-length,
	// ...) are refused.
	// +optional
	Headers map[string]string `json:"headers,omitempty"`
}

// RuleSpec assigns a target to the requests it matches.
//
// +kubebuilder:object:generate=true
type RuleSpec struct {
	// Name of the rule, unique, in metrics and logs: a DNS label like target names.
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`

	// Match is the rule's condition. Absent or empty: every request matches.
	// +optional
	Match *MatchSpec `json:"match,omitempty"`

	// Target is the name of the target a matching request gets. Exactly one of target
	// and split.
	// +optional
	Target string `json:"target,omitempty"`

	// Split spreads matching requests over several targets by weight: sticky per key
	// (a user header, a cookie, a query parameter or the client address), or random
	// per request when no key is configured. Exactly one of target and split.
	// +optional
	Split *SplitSpec `json:"split,omitempty"`
}

// MatchSpec is a condition in disjunctive normal form: every condition of All holds,
// and, when Any is not empty, every condition of at least one of its groups holds.
// (A AND B) AND ((C AND D) OR E) is {"all": [A, B], "any": [{"all": [C, D]}, {"all": [E]}]}.
// Negated operators (not_equal, not_in, not_exists) cover NOT on single conditions.
//
// +kubebuilder:object:generate=true
type MatchSpec struct {
	// All are conditions that must all hold (AND).
	// +optional
	All []ConditionSpec `json:"all,omitempty"`

	// Any are groups of which at least one must hold (OR); a group holds when all its
	// conditions do.
	// +optional
	Any []GroupSpec `json:"any,omitempty"`
}

// GroupSpec is a list of conditions that must all hold.
//
// +kubebuilder:object:generate=true
type GroupSpec struct {
	// All are the group's conditions (AND).
	// +kubebuilder:validation:MinItems=1
	All []ConditionSpec `json:"all"`
}

// ConditionSpec tests one part of the request.
//
// Repeated inputs (several copies of a header, a cookie set on several Cookie lines or
// twice on one, a query parameter given twice) are judged copy by copy, so that adding
// a copy can never make a condition hold that did not: equal, prefix, suffix,
// contains, in and regex hold when there is at least one copy and every copy satisfies
// them; not_equal and not_in hold when no copy is equal / in the list (also when the
// input is absent); exists holds when there is at least one copy, not_exists when
// there is none.
//
// +kubebuilder:object:generate=true
type ConditionSpec struct {
	// From is the input: "header" (a request header, including the identity headers the
	// auth filter writes after removing client copies), "cookie" (a cookie of any
	// Cookie header), "query" (a query parameter; names and values percent-decoded,
	// '+' as space, as Go's net/url and most upstream frameworks decode them), "path"
	// (:path without the query string in canonical form, see path_normalization; the
	// operands of equal, not_equal, prefix, in and not_in must be canonical paths) or
	// "method" (:method).
	// +kubebuilder:validation:Enum=header;cookie;query;path;method
	From string `json:"from"`

	// Name of the header (lower-cased when compiled), cookie or query parameter.
	// Required for header, cookie and query; not allowed for path and method.
	// +optional
	Name string `json:"name,omitempty"`

	// Op is the operator: equal, not_equal, prefix, suffix, contains, in, not_in,
	// regex (RE2 syntax, matched against the whole value, as Envoy's safe_regex is),
	// exists, not_exists.
	// +kubebuilder:validation:Enum=equal;not_equal;prefix;suffix;contains;in;not_in;regex;exists;not_exists
	Op string `json:"op"`

	// Value is the operand of equal, not_equal, prefix, suffix, contains and regex.
	// +optional
	Value string `json:"value,omitempty"`

	// Values is the operand of in and not_in (at least one).
	// +optional
	Values []string `json:"values,omitempty"`

	// IgnoreCase compares ASCII letters case-insensitively (all operators but regex,
	// exists and not_exists; in a regex use (?i)).
	// +optional
	IgnoreCase bool `json:"ignore_case,omitempty"`
}

// SplitSpec spreads requests over weighted targets.
//
// With a key, the request's key is hashed with the salt (XXH64 of salt, a zero byte,
// and the key) into one of 10000 buckets (hash mod 10000); the targets own consecutive
// bucket ranges in the order listed, each as wide as its share of the weights. The
// same key therefore always lands on the same target, on every proxy, worker and
// restart, until the weights or the salt change; raising one target's weight at the
// expense of the target listed right after it (the two-target canary: [canary, stable])
// moves keys only from that next target to it, never back.
//
// +kubebuilder:object:generate=true
type SplitSpec struct {
	// Key is where the sticky key is read. Absent: each request is assigned at random.
	// +optional
	Key *KeySpec `json:"key,omitempty"`

	// Salt is hashed with the key. Default: the rule's name. Give each experiment its
	// own salt, or the same users land in every canary; change it to reshuffle users.
	// Renaming a rule without a salt reshuffles its users.
	// +optional
	Salt *string `json:"salt,omitempty"`

	// Denominator is what the weights add up to: 100 (default; weights are percents) or
	// 10000 (weights are basis points, for canaries finer than 1%).
	// +kubebuilder:validation:Enum=100;10000
	// +optional
	Denominator int `json:"denominator,omitempty"`

	// Weights are the targets and their weights, in bucket order; they must add up to
	// the denominator. A weight may be 0 (a target being drained or not yet started).
	// +kubebuilder:validation:MinItems=1
	Weights []WeightSpec `json:"weights"`

	// OnMissingKey is the target a request without the key gets. Empty: such a request
	// is assigned at random by the weights (not sticky).
	// +optional
	OnMissingKey string `json:"on_missing_key,omitempty"`
}

// KeySpec names the request input a sticky split hashes. Exactly one field is set.
// A key read from the request must occur once: a request that repeats it (two copies of
// the header, the cookie or the parameter) is treated as having no key, so that it
// cannot pick between two buckets.
//
// +kubebuilder:object:generate=true
type KeySpec struct {
	// Header is a request header (lower-cased when compiled), typically an identity
	// header the auth filter writes (x-consumer) or a user id set by an earlier hop.
	// +optional
	Header string `json:"header,omitempty"`
	// Cookie is a cookie name (e.g. a session id).
	// +optional
	Cookie string `json:"cookie,omitempty"`
	// Query is a query parameter name (percent-decoded as for conditions).
	// +optional
	Query string `json:"query,omitempty"`
	// ClientAddress hashes the downstream address (Envoy's source.address property,
	// without the port). Behind another proxy this is that proxy's address unless
	// Envoy is configured to use x-forwarded-for (xff_num_trusted_hops).
	// +optional
	ClientAddress bool `json:"client_address,omitempty"`
}

// WeightSpec is one target of a split.
//
// +kubebuilder:object:generate=true
type WeightSpec struct {
	// Target is the name of a target.
	Target string `json:"target"`
	// Weight is the target's share, out of the split's denominator.
	// +kubebuilder:validation:Minimum=0
	Weight int `json:"weight"`
}

// OverrideSpec lets a request force a target, for testers. The value must be the name
// of one of the Allowed targets; any other value (or several differing copies) is
// ignored and counted, and the rules decide as usual.
//
// +kubebuilder:object:generate=true
type OverrideSpec struct {
	// Header carrying the target name (lower-cased when compiled). It is always
	// removed from the request before it goes upstream. At least one of header and
	// cookie; when both are present the header wins.
	// +optional
	Header string `json:"header,omitempty"`
	// Cookie carrying the target name (the cookie is left in place).
	// +optional
	Cookie string `json:"cookie,omitempty"`
	// Allowed are the target names the override may force (at least one).
	// +kubebuilder:validation:MinItems=1
	Allowed []string `json:"allowed"`
	// When restricts the override to requests matching this condition (for example an
	// identity header of a testers group written by the auth filter). Absent: any
	// request may use it.
	// +optional
	When *MatchSpec `json:"when,omitempty"`
}
