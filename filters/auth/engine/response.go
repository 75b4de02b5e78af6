package engine

import (
	"github.com/meshplug/meshplug/filters/abi"
	"strconv"
	"strings"

	"github.com/meshplug/meshplug/filters/auth/jwt"
)

// Reason is why a request was denied (or, for ext_authz_error with failure_mode_allow,
// let through). The set is closed; each value is a metric name part:
// auth.denied.<reason>.
type Reason string

// Reasons. The jwt.Reason values are reused as is.
const (
	ReasonMalformed                 = Reason(jwt.ReasonMalformed)
	ReasonTooLarge                  = Reason(jwt.ReasonTooLarge)
	ReasonAlgNotAllowed             = Reason(jwt.ReasonAlgNotAllowed)
	ReasonUnknownKid                = Reason(jwt.ReasonUnknownKid)
	ReasonBadSignature              = Reason(jwt.ReasonBadSignature)
	ReasonExpired                   = Reason(jwt.ReasonExpired)
	ReasonNotYetValid               = Reason(jwt.ReasonNotYetValid)
	ReasonIatInFuture               = Reason(jwt.ReasonIatInFuture)
	ReasonLifetimeTooLong           = Reason(jwt.ReasonLifetimeTooLong)
	ReasonBadIssuer                 = Reason(jwt.ReasonBadIssuer)
	ReasonBadAudience               = Reason(jwt.ReasonBadAudience)
	ReasonMissingClaim              = Reason(jwt.ReasonMissingClaim)
	ReasonClaimMismatch             = Reason(jwt.ReasonClaimMismatch)
	ReasonMissingCredential  Reason = "missing_credential"   // 401: no credential of the required kinds
	ReasonInvalidAPIKey      Reason = "invalid_api_key"      // 401
	ReasonInvalidBasicAuth   Reason = "invalid_basic_auth"   // 401: malformed, unknown user or wrong password
	ReasonJWKSUnavailable    Reason = "jwks_unavailable"     // 401: no keys and fetching failed (fail closed)
	ReasonConsumerNotAllowed Reason = "consumer_not_allowed" // 403: rule allowed_consumers
	ReasonInsufficientScope  Reason = "insufficient_scope"   // 403: rule required_claims
	ReasonNoMatchingRule     Reason = "no_matching_rule"     // 403: no rule and no default_rule
	ReasonExtAuthzDenied     Reason = "ext_authz_denied"     // the service's own status
	ReasonExtAuthzError      Reason = "ext_authz_error"      // status_on_error (or allowed with failure_mode_allow)
	ReasonInternalError      Reason = "internal_error"       // 500: a bug; fail closed
	// 401: a credential given twice (any spelling) or whose reading depends on the
	// upstream's parser (see extract.go).
	ReasonAmbiguousCredential Reason = "ambiguous_credential"
	// 401: a credential the configuration knows, at a place the rule's methods do not
	// read (it would reach the upstream unverified).
	ReasonUnexpectedCredential Reason = "unexpected_credential"
	// 400: the path reads differently on common upstreams even in canonical form
	// (path_normalization.ambiguous), as Envoy's REJECT_REQUEST for escaped slashes.
	ReasonAmbiguousPath Reason = "ambiguous_path"
)

// AllReasons lists every Reason, for defining metrics up front.
var AllReasons = []Reason{
	ReasonMalformed, ReasonTooLarge, ReasonAlgNotAllowed, ReasonUnknownKid, ReasonBadSignature,
	ReasonExpired, ReasonNotYetValid, ReasonIatInFuture, ReasonLifetimeTooLong, ReasonBadIssuer,
	ReasonBadAudience, ReasonMissingClaim, ReasonClaimMismatch, ReasonMissingCredential,
	ReasonInvalidAPIKey, ReasonInvalidBasicAuth, ReasonJWKSUnavailable, ReasonConsumerNotAllowed,
	ReasonInsufficientScope, ReasonNoMatchingRule, ReasonExtAuthzDenied, ReasonExtAuthzError, ReasonInternalError,
	ReasonAmbiguousCredential, ReasonUnexpectedCredential, ReasonAmbiguousPath,
}

// Metric names as passed to proxy_define_metric. Envoy stores wasm-defined metrics
// under its "wasmcustom." stat namespace (wasmcustom.meshplug.auth.allowed), strips that
// namespace again in /stats output (meshplug.auth.allowed, Prometheus
// meshplug_auth_allowed), and Istio only exports them when the proxy's stats
// inclusion prefixes contain "wasmcustom" (see README).
const (
	MetricAllowed          = "meshplug.auth.allowed"
	MetricDeniedPrefix     = "meshplug.auth.denied." // + Reason
	MetricCacheHit         = "meshplug.auth.cache.hit"
	MetricCacheMiss        = "meshplug.auth.cache.miss"
	MetricJWKSFetchSuccess = "meshplug.auth.jwks.fetch_success"
	MetricJWKSFetchFailure = "meshplug.auth.jwks.fetch_failure"
)

var descriptions = map[Reason]string{
	ReasonMalformed: "malformed token", ReasonTooLarge: "token too large", ReasonAlgNotAllowed: "signing algorithm not allowed",
	ReasonUnknownKid: "signing key not found", ReasonBadSignature: "signature verification failed", ReasonExpired: "token expired",
	ReasonNotYetValid: "token not yet valid", ReasonIatInFuture: "token issued in the future", ReasonLifetimeTooLong: "token lifetime too long",
	ReasonBadIssuer: "issuer not accepted", ReasonBadAudience: "audience not accepted", ReasonMissingClaim: "required claim missing",
	ReasonClaimMismatch: "required claim value missing", ReasonMissingCredential: "credential required",
	ReasonInvalidAPIKey: "invalid API key", ReasonInvalidBasicAuth: "invalid username or password",
	ReasonJWKSUnavailable: "signing keys unavailable", ReasonConsumerNotAllowed: "consumer not allowed",
	ReasonInsufficientScope: "insufficient scope", ReasonNoMatchingRule: "access denied",
	ReasonExtAuthzDenied: "denied by authorization service", ReasonExtAuthzError: "authorization service unavailable",
	ReasonInternalError: "internal error", ReasonAmbiguousCredential: "ambiguous credential",
	ReasonUnexpectedCredential: "credential not accepted here", ReasonAmbiguousPath: "ambiguous request path",
}

// Description is the short, fixed, client-safe text for a reason.
func (r Reason) Description() string { return descriptions[r] }

// IsJWT reports whether r is a token verification failure.
func (r Reason) IsJWT() bool {
	switch r {
	case ReasonMalformed, ReasonTooLarge, ReasonAlgNotAllowed, ReasonUnknownKid, ReasonBadSignature, ReasonExpired,
		ReasonNotYetValid, ReasonIatInFuture, ReasonLifetimeTooLong, ReasonBadIssuer, ReasonBadAudience,
		ReasonMissingClaim, ReasonClaimMismatch:
		return true
	}
	return false
}

// Response is a local reply: HTTP status, headers and a small JSON body. For gRPC
// requests the glue sends GRPCStatus/GRPCMessage instead (see GRPCStatus).
type Response struct {
	Status      int
	Headers     []Header // www-authenticate (when applicable) and content-type
	Body        string
	GRPCStatus  int
	GRPCMessage string
}

// GRPCStatus maps an HTTP status to a gRPC status code the way Envoy does (see
// abi.GrpcStatusForHTTP).
func GRPCStatus(httpStatus int) int { return int(abi.GrpcStatusForHTTP(httpStatus)) }

type challenge uint8

const (
	chBearer challenge = 1 << iota
	chBasic
	chAPIKey
)

type respKey struct {
	reason Reason
	status int
	ch     challenge
}

// buildResponse renders a deny response. WWW-Authenticate (RFC 6750 §3, RFC 7617):
// for a missing credential, one challenge per scheme without error; for a bad token,
// Bearer with error="invalid_token"; for 403 insufficient_scope on a JWT identity,
// Bearer with error="insufficient_scope".
func buildResponse(realm string, k respKey) *Response {
	desc := k.reason.Description()
	code := "unauthorized"
	switch {
	case k.reason.IsJWT():
		code = "invalid_token"
	case k.reason == ReasonInsufficientScope:
		code = "insufficient_scope"
	case k.status == 403:
		code = "forbidden"
	case k.status == 400:
		code = "bad_request"
	case k.status >= 500:
		code = "server_error"
	case k.reason == ReasonMissingCredential:
		code = "unauthorized"
	}
	var ch []string
	q := strconv.Quote(realm)
	if k.ch&chBearer != 0 {
		switch {
		case k.reason.IsJWT():
			ch = append(ch, `Bearer realm=`+q+`, error="invalid_token", error_description=`+strconv.Quote(desc))
		case k.reason == ReasonInsufficientScope:
			ch = append(ch, `Bearer realm=`+q+`, error="insufficient_scope", error_description=`+strconv.Quote(desc))
		default:
			ch = append(ch, `Bearer realm=`+q)
		}
	}
	if k.ch&chBasic != 0 {
		ch = append(ch, `Basic realm=`+q+`, charset="UTF-8"`)
	}
	if k.ch&chAPIKey != 0 {
		ch = append(ch, `ApiKey realm=`+q)
	}
	r := &Response{
		Status:      k.status,
		Body:        `{"error":` + strconv.Quote(code) + `,"error_description":` + strconv.Quote(desc) + `}`,
		GRPCStatus:  GRPCStatus(k.status),
		GRPCMessage: desc,
	}
	if len(ch) > 0 {
		r.Headers = append(r.Headers, Header{"www-authenticate", strings.Join(ch, ", ")})
	}
	r.Headers = append(r.Headers, Header{"content-type", "application/json"})
	return r
}
