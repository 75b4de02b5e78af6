package jwt

// The reference implementation: Parse as it was before the hand-written decoder
// (encoding/json + encoding/base64), kept verbatim apart from the names so the
// differential tests can compare the two on any input.

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"math"
	"strconv"
)

var refB64 = base64.RawURLEncoding.Strict()

// refDecodeSegment decodes unpadded, canonical base64url. The standard decoder skips CR
// and LF and accepts '=' only in padded modes; here only the 64 alphabet characters
// are accepted, and Strict rejects non-zero trailing bits, so one token has exactly
// one encoding.
func refDecodeSegment(s string) ([]byte, bool) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return nil, false
		}
	}
	if len(s)%4 == 1 {
		return nil, false
	}
	b, err := refB64.DecodeString(s)
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
func refParse(raw string, maxBytes int) (*Token, error) {
	hSeg, pSeg, sSeg, err := splitCompact(raw, maxBytes)
	if err != nil {
		return nil, err
	}
	hb, ok := refDecodeSegment(hSeg)
	if !ok {
		return nil, errorf(ReasonMalformed, "header: invalid base64url")
	}
	pb, ok := refDecodeSegment(pSeg)
	if !ok {
		return nil, errorf(ReasonMalformed, "payload: invalid base64url")
	}
	sig, ok := refDecodeSegment(sSeg)
	if !ok {
		return nil, errorf(ReasonMalformed, "signature: invalid base64url")
	}
	t := &Token{Raw: raw, Signature: sig, PayloadSegment: pSeg, signingInput: raw[:len(hSeg)+1+len(pSeg)]}
	if err := refParseHeader(hb, &t.Header); err != nil {
		return nil, err
	}
	if err := refParseClaims(pb, &t.Claims); err != nil {
		return nil, err
	}
	return t, nil
}

func refParseHeader(b []byte, h *Header) error {
	m, err := refDecodeObject(b)
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

func refParseClaims(b []byte, c *Claims) error {
	m, err := refDecodeObject(b)
	if err != nil {
		return errorf(ReasonMalformed, "payload: "+err.Error())
	}
	c.Raw = refNumbers(m).(map[string]any)
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
		aud, err := audienceOf(v)
		if err != nil {
			return err
		}
		c.Audience = aud
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

type refJSONError string

func (e refJSONError) Error() string { return string(e) }

// refDecodeObject decodes one JSON object, refusing duplicate top-level member names
// (RFC 7515 §4 lets a parser reject them; accepting "last wins" lets two parsers
// disagree about a token) and anything after the closing brace.
func refDecodeObject(b []byte) (map[string]any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	tok, err := d.Token()
	if err != nil {
		return nil, refJSONError("invalid JSON")
	}
	if delim, ok := tok.(json.Delim); !ok || delim != '{' {
		return nil, refJSONError("not a JSON object")
	}
	m := make(map[string]any, 8)
	for d.More() {
		tok, err := d.Token()
		if err != nil {
			return nil, refJSONError("invalid JSON")
		}
		key, ok := tok.(string)
		if !ok {
			return nil, refJSONError("invalid JSON")
		}
		if _, dup := m[key]; dup {
			return nil, refJSONError("duplicate member " + strconv.Quote(key))
		}
		var v any
		if err := d.Decode(&v); err != nil {
			return nil, refJSONError("invalid JSON")
		}
		m[key] = v
	}
	if _, err := d.Token(); err != nil { // the closing '}'
		return nil, refJSONError("invalid JSON")
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, refJSONError("trailing data after JSON object")
	}
	return m, nil
}

// refNumbers returns a copy of v with every json.Number the reference decoder produced
// typed as this package's Number (the one change to the reference's output: Parse types numbers
// as Number so that the package does not link encoding/json). Everything else, the
// strings' bytes included, is compared as the reference decoded it.
func refNumbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		return Number(x)
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = refNumbers(e)
		}
		return m
	case []any:
		a := make([]any, len(x))
		for i, e := range x {
			a[i] = refNumbers(e)
		}
		return a
	}
	return v
}
