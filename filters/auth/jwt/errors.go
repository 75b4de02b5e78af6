// Package jwt parses compact JWS tokens (RFC 7515/7519) and JWK sets (RFC 7517/7518/8037)
// and verifies signatures with the standard library only.
//
// It is strict on purpose: base64url must be unpadded and canonical, JSON objects may not
// repeat a member name at the top level, "crit" is refused (no extension is understood),
// "alg":"none" never verifies, and the key type must match the algorithm family, which
// is what prevents HS/RS key confusion. The package does no I/O, keeps no global
// state, starts no goroutines and never reads the clock: time is passed in.
//
// Caveat: only the JWS compact serialization is supported (no JWE, no JSON
// serialization, no unencoded payloads), and header parameters that point at keys
// (jku, x5u, jwk, x5c) are ignored, never fetched or trusted.
package jwt

// Reason classifies why a token was rejected. The values are short, stable and usable
// as metric name parts (auth.denied.<reason>).
type Reason string

// The closed set of rejection reasons produced by this package.
const (
	ReasonMalformed       Reason = "malformed"         // bad structure, base64url, JSON or claim types
	ReasonTooLarge        Reason = "too_large"         // longer than the provider's max_token_bytes
	ReasonAlgNotAllowed   Reason = "alg_not_allowed"   // alg none, unknown, or not in the allow-list
	ReasonUnknownKid      Reason = "unknown_kid"       // no key of the right type (and kid) in the key set
	ReasonBadSignature    Reason = "bad_signature"     // candidate keys exist but none verifies
	ReasonExpired         Reason = "expired"           // exp + skew <= now, or exp required and absent
	ReasonNotYetValid     Reason = "not_yet_valid"     // nbf - skew > now
	ReasonIatInFuture     Reason = "iat_in_future"     // iat - skew > now
	ReasonLifetimeTooLong Reason = "lifetime_too_long" // exp - iat (or exp - now) > max lifetime
	ReasonBadIssuer       Reason = "bad_issuer"        // iss absent or not the configured issuer
	ReasonBadAudience     Reason = "bad_audience"      // aud absent or shares no value with the configured audiences
	ReasonMissingClaim    Reason = "missing_claim"     // a required claim is absent
	ReasonClaimMismatch   Reason = "claim_mismatch"    // a required claim lacks a required value
)

// Error is the error type returned by Parse, Verify and Validate. Reason is for
// decisions and metrics; Detail is for logs and may quote parts of the token, so it
// must not be sent to clients verbatim.
type Error struct {
	Reason Reason
	Detail string
}

func (e *Error) Error() string {
	if e.Detail == "" {
		return "jwt: " + string(e.Reason)
	}
	return "jwt: " + string(e.Reason) + ": " + e.Detail
}

func errorf(r Reason, detail string) *Error { return &Error{Reason: r, Detail: detail} }

// ReasonOf returns the Reason of err if it is (or wraps) an *Error, else ReasonMalformed.
func ReasonOf(err error) Reason {
	if e, ok := err.(*Error); ok {
		return e.Reason
	}
	return ReasonMalformed
}
