package jwt

import (
	"math"
	"strconv"
	"strings"
)

// DefaultMaxTokenBytes is the size cap Parse applies when given maxBytes <= 0.
const DefaultMaxTokenBytes = 8192

// Header holds the JOSE header members this package interprets.
type Header struct {
	Alg     Alg    // parsed "alg"; AlgInvalid if the name is unknown or "none"
	AlgName string // "alg" as sent, for logs
	Kid     string // "kid", "" if absent
	Typ     string // "typ", "" if absent; not enforced
}

// Claims holds the registered claims in typed form plus every claim as decoded JSON
// (numbers as Number, so values are kept exactly).
type Claims struct {
	Issuer   string   // "iss"
	Subject  string   // "sub"
	Audience []string // "aud": a string is returned as a one-element slice
	ID       string   // "jti"
	// NumericDate claims, in seconds since the epoch (fractions allowed by RFC 7519).
	Expiry, NotBefore, IssuedAt          float64
	HasExpiry, HasNotBefore, HasIssuedAt bool
	// Raw is every top-level claim; values are string, Number, bool, nil,
	// []any or map[string]any.
	Raw map[string]any
}

// Number is a JSON number exactly as the token sent it (its literal text), what
// encoding/json's json.Number is when decoding with UseNumber. The package has its own
// type so that a module using it does not link encoding/json (about 225 KB of code in
// a Go Wasm module) beside the configuration's JSON library.
type Number string

// String returns the number's literal text.
func (n Number) String() string { return string(n) }

// Token is a parsed, not yet verified, compact JWS.
type Token struct {
	Raw       string // the whole token as given
	Header    Header
	Claims    Claims
	Signature []byte
	// PayloadSegment is the base64url payload segment exactly as in the token (what
	// Envoy forwards in forward_payload_header).
	PayloadSegment string

	signingInput string // header "." payload
}

// SigningInput returns the bytes that were signed: header segment "." payload segment.
func (t *Token) SigningInput() string { return t.signingInput }

// decodeSegment decodes unpadded, canonical base64url: only the 64 alphabet
// characters are accepted (no '=', CR, LF or standard-alphabet characters), and
// non-zero trailing bits are refused, so one token has exactly one encoding.
func decodeSegment(s string) ([]byte, bool) {
	n := b64Len(len(s))
	if n < 0 {
		return nil, false
	}
	b := make([]byte, n)
	if !b64Decode(b, s) {
		return nil, false
	}
	return b, true
}

// parseStackBytes bounds the decoded header + payload that Parse decodes into a
// stack buffer before copying them into one string; larger tokens use the heap.
const parseStackBytes = 2048

// Parse splits and decodes a compact JWS without verifying it. maxBytes caps the
// token length (DefaultMaxTokenBytes if <= 0); longer tokens fail with ReasonTooLarge
// before any decoding. Every structural problem fails with ReasonMalformed; an "alg"
// that is "none" or unknown fails with ReasonAlgNotAllowed; a "crit" header fails
// with ReasonMalformed since no extension is understood.
//
// The decoded header and payload share one string, and every string in Header and
// Claims (including Claims.Raw) that needed no unescaping is a substring of it.
func Parse(raw string, maxBytes int) (*Token, error) {
	hSeg, pSeg, sSeg, err := splitCompact(raw, maxBytes)
	if err != nil {
		return nil, err
	}
	hn, pn := b64Len(len(hSeg)), b64Len(len(pSeg))
	if hn < 0 {
		return nil, errorf(ReasonMalformed, "header: invalid base64url")
	}
	total := hn + max(pn, 0)
	var stack [parseStackBytes]byte
	var buf []byte
	if total <= len(stack) {
		buf = stack[:total]
	} else {
		buf = make([]byte, total)
	}
	if !b64Decode(buf[:hn], hSeg) {
		return nil, errorf(ReasonMalformed, "header: invalid base64url")
	}
	if pn < 0 || !b64Decode(buf[hn:], pSeg) {
		return nil, errorf(ReasonMalformed, "payload: invalid base64url")
	}
	sig, ok := decodeSegment(sSeg)
	if !ok {
		return nil, errorf(ReasonMalformed, "signature: invalid base64url")
	}
	js := string(buf)
	t := &Token{Raw: raw, Signature: sig, PayloadSegment: pSeg, signingInput: raw[:len(hSeg)+1+len(pSeg)]}
	if err := parseHeader(js[:hn], &t.Header); err != nil {
		return nil, err
	}
	if err := parseClaims(js[hn:], &t.Claims); err != nil {
		return nil, err
	}
	return t, nil
}

// parseHeader decodes the JOSE header without building a map: only alg, kid, typ,
// crit and enc matter; other members are checked for syntax and dropped.
func parseHeader(s string, h *Header) error {
	d := jsonDecoder{s: s}
	if msg := d.begin(); msg != "" {
		return errorf(ReasonMalformed, "header: "+msg)
	}
	var (
		keysBuf                    [8]string
		keys                       = keysBuf[:0]
		seen                       map[string]struct{} // replaces keys past headerLinearKeys
		alg, kid, typ              string
		hasAlg, hasKid, hasTyp     bool
		algStr, kidStr, typStr     bool
		hasCrit, hasEnc, isStr, ok bool
		sv                         string
		key                        string
	)
	for first := true; ; first = false {
		var done bool
		if key, done, ok = d.member(first); !ok {
			return errorf(ReasonMalformed, "header: "+errInvalidJSON)
		}
		if done {
			break
		}
		var dup bool
		if keys, seen, dup = headerSeen(keys, seen, key); dup {
			return errorf(ReasonMalformed, "header: duplicate member "+strconv.Quote(key))
		}
		if !d.colon() {
			return errorf(ReasonMalformed, "header: "+errInvalidJSON)
		}
		if d.i < len(d.s) && d.s[d.i] == '"' {
			sv, ok = d.str()
			isStr = true
		} else {
			_, ok = d.value(1)
			sv, isStr = "", false
		}
		if !ok {
			return errorf(ReasonMalformed, "header: "+errInvalidJSON)
		}
		switch key {
		case "alg":
			alg, hasAlg, algStr = sv, true, isStr
		case "kid":
			kid, hasKid, kidStr = sv, true, isStr
		case "typ":
			typ, hasTyp, typStr = sv, true, isStr
		case "crit":
			hasCrit = true
		case "enc":
			hasEnc = true
		}
	}
	if !d.end() {
		return errorf(ReasonMalformed, "header: "+errTrailing)
	}
	if !hasAlg {
		return errorf(ReasonMalformed, "header: alg: required")
	}
	if !algStr {
		return errorf(ReasonMalformed, "header: alg: must be a string")
	}
	h.AlgName = alg
	h.Alg, _ = ParseAlg(alg)
	if hasKid {
		if !kidStr {
			return errorf(ReasonMalformed, "header: kid: must be a string")
		}
		h.Kid = kid
	}
	if hasTyp {
		if !typStr {
			return errorf(ReasonMalformed, "header: typ: must be a string")
		}
		h.Typ = typ
	}
	if hasCrit {
		// RFC 7515 §4.1.11: a recipient that does not understand a listed extension
		// must reject the JWS. We understand none (not even b64 of RFC 7797).
		return errorf(ReasonMalformed, "header: crit: no critical extension is supported")
	}
	if hasEnc {
		return errorf(ReasonMalformed, "header: enc: JWE is not supported")
	}
	if h.Alg == AlgInvalid {
		return errorf(ReasonAlgNotAllowed, "alg "+strconv.Quote(alg)+" is not supported")
	}
	return nil
}

// headerLinearKeys is how many header member names are compared linearly before
// duplicate detection switches to a map (headers normally have two or three).
const headerLinearKeys = 16

// headerSeen records key in keys (or, past headerLinearKeys names, in seen) and
// reports whether it was already recorded.
func headerSeen(keys []string, seen map[string]struct{}, key string) ([]string, map[string]struct{}, bool) {
	if seen != nil {
		if _, dup := seen[key]; dup {
			return keys, seen, true
		}
		seen[key] = struct{}{}
		return keys, seen, false
	}
	for _, k := range keys {
		if k == key {
			return keys, seen, true
		}
	}
	keys = append(keys, key)
	if len(keys) > headerLinearKeys {
		seen = make(map[string]struct{}, 2*len(keys))
		for _, k := range keys {
			seen[k] = struct{}{}
		}
		keys = nil
	}
	return keys, seen, false
}

// The registered claims parseClaims types, as indexes into decodeMembers' reg.
const (
	regIss = iota
	regSub
	regJti
	regAud
	regExp
	regNbf
	regIat
	regCount
)

func parseClaims(s string, c *Claims) error {
	m := make(map[string]any, 8)
	var reg [regCount]any
	var has [regCount]bool
	if msg := decodeMembers(s, m, &reg, &has); msg != "" {
		return errorf(ReasonMalformed, "payload: "+msg)
	}
	c.Raw = m
	str := func(name string, r int, dst *string) error {
		if has[r] {
			s, ok := reg[r].(string)
			if !ok {
				return errorf(ReasonMalformed, "claim "+name+": must be a string")
			}
			*dst = s
		}
		return nil
	}
	if err := str("iss", regIss, &c.Issuer); err != nil {
		return err
	}
	if err := str("sub", regSub, &c.Subject); err != nil {
		return err
	}
	if err := str("jti", regJti, &c.ID); err != nil {
		return err
	}
	if has[regAud] {
		aud, err := audienceOf(reg[regAud])
		if err != nil {
			return err
		}
		c.Audience = aud
	}
	date := func(name string, r int, dst *float64, hasDst *bool) error {
		if !has[r] {
			return nil
		}
		n, ok := reg[r].(Number)
		if !ok {
			return errorf(ReasonMalformed, "claim "+name+": must be a number")
		}
		f, err := strconv.ParseFloat(string(n), 64)
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			return errorf(ReasonMalformed, "claim "+name+": not a finite number")
		}
		*dst, *hasDst = f, true
		return nil
	}
	if err := date("exp", regExp, &c.Expiry, &c.HasExpiry); err != nil {
		return err
	}
	if err := date("nbf", regNbf, &c.NotBefore, &c.HasNotBefore); err != nil {
		return err
	}
	return date("iat", regIat, &c.IssuedAt, &c.HasIssuedAt)
}

type jsonError string

func (e jsonError) Error() string { return string(e) }

// decodeObject decodes one JSON object, refusing duplicate top-level member names
// (RFC 7515 §4 lets a parser reject them; accepting "last wins" lets two parsers
// disagree about a token) and anything after the closing brace. Values are typed as
// encoding/json with UseNumber would type them.
func decodeObject(b []byte) (map[string]any, error) {
	m := make(map[string]any, 8)
	if msg := decodeMembers(string(b), m, nil, nil); msg != "" {
		return nil, jsonError(msg)
	}
	return m, nil
}

// decodeMembers decodes the JSON object s into m and returns "" or the error
// message. If reg is not nil, the values of the registered claims are also stored
// in reg (indexed by regIss...) with has set.
func decodeMembers(s string, m map[string]any, reg *[regCount]any, has *[regCount]bool) string {
	d := jsonDecoder{s: s}
	if msg := d.begin(); msg != "" {
		return msg
	}
	for first := true; ; first = false {
		key, done, ok := d.member(first)
		if !ok {
			return errInvalidJSON
		}
		if done {
			break
		}
		if _, dup := m[key]; dup {
			return "duplicate member " + strconv.Quote(key)
		}
		if !d.colon() {
			return errInvalidJSON
		}
		v, ok := d.value(1)
		if !ok {
			return errInvalidJSON
		}
		m[key] = v
		if reg != nil {
			r := -1
			switch key {
			case "iss":
				r = regIss
			case "sub":
				r = regSub
			case "jti":
				r = regJti
			case "aud":
				r = regAud
			case "exp":
				r = regExp
			case "nbf":
				r = regNbf
			case "iat":
				r = regIat
			}
			if r >= 0 {
				reg[r], has[r] = v, true
			}
		}
	}
	if !d.end() {
		return errTrailing
	}
	return ""
}

// splitCompact checks the size cap and splits a compact JWS into its three non-empty
// segments.
func splitCompact(raw string, maxBytes int) (header, payload, signature string, err error) {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxTokenBytes
	}
	if len(raw) > maxBytes {
		return "", "", "", errorf(ReasonTooLarge, "token is "+strconv.Itoa(len(raw))+" bytes, limit "+strconv.Itoa(maxBytes))
	}
	i := strings.IndexByte(raw, '.')
	if i < 0 {
		return "", "", "", errorf(ReasonMalformed, "not a compact JWS: no '.'")
	}
	j := strings.IndexByte(raw[i+1:], '.')
	if j < 0 {
		return "", "", "", errorf(ReasonMalformed, "not a compact JWS: one '.'")
	}
	j += i + 1
	if strings.IndexByte(raw[j+1:], '.') >= 0 {
		return "", "", "", errorf(ReasonMalformed, "not a compact JWS: more than three segments")
	}
	header, payload, signature = raw[:i], raw[i+1:j], raw[j+1:]
	if header == "" || payload == "" || signature == "" {
		return "", "", "", errorf(ReasonMalformed, "empty segment")
	}
	return header, payload, signature, nil
}

// audienceOf converts a decoded "aud" claim (RFC 7519 §4.1.3: a string or an array of
// strings) to a list.
func audienceOf(v any) ([]string, error) {
	switch a := v.(type) {
	case string:
		return []string{a}, nil
	case []any:
		aud := make([]string, 0, len(a))
		for _, e := range a {
			s, ok := e.(string)
			if !ok {
				return nil, errorf(ReasonMalformed, "claim aud: must be a string or an array of strings")
			}
			aud = append(aud, s)
		}
		return aud, nil
	}
	return nil, errorf(ReasonMalformed, "claim aud: must be a string or an array of strings")
}
