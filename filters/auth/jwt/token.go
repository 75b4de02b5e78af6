package jwt

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
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
// (numbers as json.Number, so values are kept exactly).
type Claims struct {
	Issuer   string   // "iss"
	Subject  string   // "sub"
	Audience []string // "aud": a string is returned as a one-element slice
	ID       string   // "jti"
	// NumericDate claims, in seconds since the epoch (fractions allowed by RFC 7519).
	Expiry, NotBefore, IssuedAt          float64
	HasExpiry, HasNotBefore, HasIssuedAt bool
	// Raw is every top-level claim; values are string, json.Number, bool, nil,
	// []any or map[string]any.
	Raw map[string]any
}

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

var b64 = base64.RawURLEncoding.Strict()

// decodeSegment decodes unpadded, canonical base64url. The standard decoder skips CR
// and LF and accepts '=' only in padded modes; here only the 64 alphabet characters
// are accepted, and Strict rejects non-zero trailing bits, so one token has exactly
// one encoding.
func decodeSegment(s string) ([]byte, bool) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return nil, false
		}
	}
	if len(s)%4 == 1 {
		return nil, false
	}
	b, err := b64.DecodeString(s)
	if err != nil {
		return nil, false
	}
	return b, true
}

// Parse splits and decodes a compact JWS without verifying it. maxBytes caps the
// token length (DefaultMaxTokenBytes if <= 0); longer tokens fail with ReasonTooLarge
// before any decoding. Every structural problem fails with ReasonMalformed; an "alg"
// that is "none" or unknown fails with ReasonAlgNotAllowed; a "crit" header fails
// with ReasonMalformed since no extension is understood.
func Parse(raw string, maxBytes int) (*Token, error) {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxTokenBytes
	}
	if len(raw) > maxBytes {
		return nil, errorf(ReasonTooLarge, "token is "+strconv.Itoa(len(raw))+" bytes, limit "+strconv.Itoa(maxBytes))
	}
	i := strings.IndexByte(raw, '.')
	if i < 0 {
		return nil, errorf(ReasonMalformed, "not a compact JWS: no '.'")
	}
	j := strings.IndexByte(raw[i+1:], '.')
	if j < 0 {
		return nil, errorf(ReasonMalformed, "not a compact JWS: one '.'")
	}
	j += i + 1
	if strings.IndexByte(raw[j+1:], '.') >= 0 {
		return nil, errorf(ReasonMalformed, "not a compact JWS: more than three segments")
	}
	hSeg, pSeg, sSeg := raw[:i], raw[i+1:j], raw[j+1:]
	if hSeg == "" || pSeg == "" || sSeg == "" {
		return nil, errorf(ReasonMalformed, "empty segment")
	}
	hb, ok := decodeSegment(hSeg)
	if !ok {
		return nil, errorf(ReasonMalformed, "header: invalid base64url")
	}
	pb, ok := decodeSegment(pSeg)
	if !ok {
		return nil, errorf(ReasonMalformed, "payload: invalid base64url")
	}
	sig, ok := decodeSegment(sSeg)
	if !ok {
		return nil, errorf(ReasonMalformed, "signature: invalid base64url")
	}
	t := &Token{Raw: raw, Signature: sig, PayloadSegment: pSeg, signingInput: raw[:j]}
	if err := parseHeader(hb, &t.Header); err != nil {
		return nil, err
	}
	if err := parseClaims(pb, &t.Claims); err != nil {
		return nil, err
	}
	return t, nil
}

func parseHeader(b []byte, h *Header) error {
	m, err := decodeObject(b)
	if err != nil {
		return errorf(ReasonMalformed, "header: "+err.Error())
	}
	algV, ok := m["alg"]
	if !ok {
		return errorf(ReasonMalformed, "header: alg: required")
	}
	alg, ok := algV.(string)
	if !ok {
		return errorf(ReasonMalformed, "header: alg: must be a string")
	}
	h.AlgName = alg
	h.Alg, _ = ParseAlg(alg)
	if v, ok := m["kid"]; ok {
		if h.Kid, ok = v.(string); !ok {
			return errorf(ReasonMalformed, "header: kid: must be a string")
		}
	}
	if v, ok := m["typ"]; ok {
		if h.Typ, ok = v.(string); !ok {
			return errorf(ReasonMalformed, "header: typ: must be a string")
		}
	}
	if _, ok := m["crit"]; ok {
		// RFC 7515 §4.1.11: a recipient that does not understand a listed extension
		// must reject the JWS. We understand none (not even b64 of RFC 7797).
		return errorf(ReasonMalformed, "header: crit: no critical extension is supported")
	}
	if _, ok := m["enc"]; ok {
		return errorf(ReasonMalformed, "header: enc: JWE is not supported")
	}
	if h.Alg == AlgInvalid {
		return errorf(ReasonAlgNotAllowed, "alg "+strconv.Quote(alg)+" is not supported")
	}
	return nil
}

func parseClaims(b []byte, c *Claims) error {
	m, err := decodeObject(b)
	if err != nil {
		return errorf(ReasonMalformed, "payload: "+err.Error())
	}
	c.Raw = m
	str := func(name string, dst *string) error {
		if v, ok := m[name]; ok {
			s, ok := v.(string)
			if !ok {
				return errorf(ReasonMalformed, "claim "+name+": must be a string")
			}
			*dst = s
		}
		return nil
	}
	if err := str("iss", &c.Issuer); err != nil {
		return err
	}
	if err := str("sub", &c.Subject); err != nil {
		return err
	}
	if err := str("jti", &c.ID); err != nil {
		return err
	}
	if v, ok := m["aud"]; ok {
		switch a := v.(type) {
		case string:
			c.Audience = []string{a}
		case []any:
			c.Audience = make([]string, 0, len(a))
			for _, e := range a {
				s, ok := e.(string)
				if !ok {
					return errorf(ReasonMalformed, "claim aud: must be a string or an array of strings")
				}
				c.Audience = append(c.Audience, s)
			}
		default:
			return errorf(ReasonMalformed, "claim aud: must be a string or an array of strings")
		}
	}
	date := func(name string, dst *float64, has *bool) error {
		v, ok := m[name]
		if !ok {
			return nil
		}
		n, ok := v.(json.Number)
		if !ok {
			return errorf(ReasonMalformed, "claim "+name+": must be a number")
		}
		f, err := strconv.ParseFloat(string(n), 64)
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			return errorf(ReasonMalformed, "claim "+name+": not a finite number")
		}
		*dst, *has = f, true
		return nil
	}
	if err := date("exp", &c.Expiry, &c.HasExpiry); err != nil {
		return err
	}
	if err := date("nbf", &c.NotBefore, &c.HasNotBefore); err != nil {
		return err
	}
	return date("iat", &c.IssuedAt, &c.HasIssuedAt)
}

type jsonError string

func (e jsonError) Error() string { return string(e) }

// decodeObject decodes one JSON object, refusing duplicate top-level member names
// (RFC 7515 §4 lets a parser reject them; accepting "last wins" lets two parsers
// disagree about a token) and anything after the closing brace.
func decodeObject(b []byte) (map[string]any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	tok, err := d.Token()
	if err != nil {
		return nil, jsonError("invalid JSON")
	}
	if delim, ok := tok.(json.Delim); !ok || delim != '{' {
		return nil, jsonError("not a JSON object")
	}
	m := make(map[string]any, 8)
	for d.More() {
		tok, err := d.Token()
		if err != nil {
			return nil, jsonError("invalid JSON")
		}
		key, ok := tok.(string)
		if !ok {
			return nil, jsonError("invalid JSON")
		}
		if _, dup := m[key]; dup {
			return nil, jsonError("duplicate member " + strconv.Quote(key))
		}
		var v any
		if err := d.Decode(&v); err != nil {
			return nil, jsonError("invalid JSON")
		}
		m[key] = v
	}
	if _, err := d.Token(); err != nil { // the closing '}'
		return nil, jsonError("invalid JSON")
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, jsonError("trailing data after JSON object")
	}
	return m, nil
}
