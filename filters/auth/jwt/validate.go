package jwt

import (
	"math"
	"strconv"
	"strings"
)

// Validation holds what Validate checks besides the signature.
type Validation struct {
	Now        float64  // seconds since the epoch (fractions allowed)
	ClockSkew  float64  // seconds of tolerance on exp, nbf and iat
	Issuer     string   // if non-empty, "iss" must equal it
	Audiences  []string // if non-empty, "aud" must contain one of them
	RequireExp bool     // "exp" must be present
	// MaxLifetime, if > 0, bounds exp - iat in seconds (exp - Now if iat is absent).
	MaxLifetime float64
	// Required claims, checked with MatchClaim.
	Required []RequiredClaim
}

// RequiredClaim is a claim that must be present and contain every one of Values
// (an empty Values only requires presence).
type RequiredClaim struct {
	Name   string
	Values []string
}

// Validate checks the registered claims and the required claims, in this order:
// issuer, expiry, not-before, issued-at, lifetime, audience, required claims.
// Boundaries: the token is expired when now >= exp + skew, not yet valid when
// now < nbf - skew, and iat is in the future when iat > now + skew.
func (c *Claims) Validate(v *Validation) error {
	if v.Issuer != "" && c.Issuer != v.Issuer {
		if c.Issuer == "" {
			return errorf(ReasonBadIssuer, "no iss claim")
		}
		return errorf(ReasonBadIssuer, "iss "+strconv.Quote(c.Issuer)+" is not the provider's issuer")
	}
	if c.HasExpiry {
		if v.Now >= c.Expiry+v.ClockSkew {
			return errorf(ReasonExpired, "exp is past")
		}
	} else if v.RequireExp {
		return errorf(ReasonExpired, "exp claim is required")
	}
	if c.HasNotBefore && v.Now < c.NotBefore-v.ClockSkew {
		return errorf(ReasonNotYetValid, "nbf is in the future")
	}
	if c.HasIssuedAt && c.IssuedAt > v.Now+v.ClockSkew {
		return errorf(ReasonIatInFuture, "iat is in the future")
	}
	if v.MaxLifetime > 0 {
		if !c.HasExpiry {
			return errorf(ReasonLifetimeTooLong, "no exp claim but a maximum lifetime is set")
		}
		start := v.Now
		if c.HasIssuedAt {
			start = c.IssuedAt
		}
		if c.Expiry-start > v.MaxLifetime {
			return errorf(ReasonLifetimeTooLong, "lifetime "+strconv.FormatFloat(c.Expiry-start, 'f', -1, 64)+"s exceeds the maximum")
		}
	}
	if len(v.Audiences) > 0 {
		if len(c.Audience) == 0 {
			return errorf(ReasonBadAudience, "no aud claim")
		}
		if !intersects(c.Audience, v.Audiences) {
			return errorf(ReasonBadAudience, "aud does not name this service")
		}
	}
	for i := range v.Required {
		if r := MatchClaim(c.Raw, &v.Required[i]); r != "" {
			return errorf(r, "claim "+strconv.Quote(v.Required[i].Name))
		}
	}
	return nil
}

func intersects(a, b []string) bool {
	for _, x := range a {
		for _, y := range b {
			if x == y {
				return true
			}
		}
	}
	return false
}

// LookupClaim finds a claim by name: a name without '.' is a top-level member; a name
// with '.' is only ever a path into nested objects ("realm_access.roles" is the member
// "roles" of the object "realm_access").
//
// Caveat: a member whose own name contains '.' (a namespaced claim such as
// "https://example.com/roles") cannot be addressed, as in Envoy's jwt_authn. Reading
// it as a fallback would let a token whose issuer copies user-chosen keys into it
// (custom attributes) supply a literal "realm_access.roles" where the nested path is
// absent.
func LookupClaim(claims map[string]any, name string) (any, bool) {
	if !strings.Contains(name, ".") {
		v, ok := claims[name]
		return v, ok
	}
	var cur any = claims
	for part := range strings.SplitSeq(name, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// MatchClaim checks one required claim and returns "" if it is satisfied,
// ReasonMissingClaim if the claim is absent, or ReasonClaimMismatch.
//
// Matching: every required value must be present in the claim. An array claim
// contains a value if one of its elements (string, or number/bool in JSON text form)
// equals it. A string claim contains a value if it equals it, or, for the OAuth claims
// "scope" and "scp", if the value is one of its space-separated words. A number or
// bool claim is compared in JSON text form ("42", "true").
func MatchClaim(claims map[string]any, rc *RequiredClaim) Reason {
	v, ok := LookupClaim(claims, rc.Name)
	if !ok || v == nil {
		return ReasonMissingClaim
	}
	spaceList := rc.Name == "scope" || rc.Name == "scp"
	for _, want := range rc.Values {
		if !claimContains(v, want, spaceList) {
			return ReasonClaimMismatch
		}
	}
	return ""
}

func claimContains(v any, want string, spaceList bool) bool {
	switch x := v.(type) {
	case string:
		if x == want {
			return true
		}
		if spaceList {
			for w := range strings.FieldsSeq(x) {
				if w == want {
					return true
				}
			}
		}
		return false
	case []any:
		for _, e := range x {
			if s, ok := ScalarString(e); ok && s == want {
				return true
			}
		}
		return false
	default:
		s, ok := ScalarString(v)
		return ok && s == want
	}
}

// ScalarString renders a string, number or bool claim value as text (numbers exactly
// as sent, bools as "true"/"false"); other values return ok == false.
func ScalarString(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case Number:
		return string(x), true
	case bool:
		if x {
			return "true", true
		}
		return "false", true
	case float64:
		if math.IsInf(x, 0) || math.IsNaN(x) {
			return "", false
		}
		return strconv.FormatFloat(x, 'f', -1, 64), true
	}
	return "", false
}
