package jwt

import (
	"unicode/utf16"
	"unicode/utf8"
)

// This file holds the hand-written decoders Parse uses instead of encoding/base64
// and encoding/json: in a Go Wasm guest every allocation and every reflective step is
// expensive, and a token is decoded on every cache miss. They accept exactly what the
// standard decoders accepted here before (ref_test.go keeps that implementation and
// the differential tests and fuzz targets compare the two).

// b64Index maps a base64url alphabet byte to its 6-bit value; every other byte maps
// to 0xFF.
var b64Index = func() (t [256]byte) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for i := range t {
		t[i] = 0xFF
	}
	for i := 0; i < len(alphabet); i++ {
		t[alphabet[i]] = byte(i)
	}
	return t
}()

// b64Len returns the decoded length of an unpadded base64url string of n characters,
// or -1 if no such string has n characters (n%4 == 1).
func b64Len(n int) int {
	if n%4 == 1 {
		return -1
	}
	return n/4*3 + n%4*3/4
}

// b64Decode decodes the unpadded base64url s into dst, which must be b64Len(len(s))
// bytes long. It fails on any byte outside the alphabet and on non-zero trailing bits
// (what base64.RawURLEncoding.Strict() rejects), so accepted input is canonical.
func b64Decode(dst []byte, s string) bool {
	si, di := 0, 0
	for ; si+4 <= len(s) && di+3 <= len(dst); si, di = si+4, di+3 {
		a, b, c, d := b64Index[s[si]], b64Index[s[si+1]], b64Index[s[si+2]], b64Index[s[si+3]]
		if (a|b|c|d)&0xC0 != 0 {
			return false
		}
		v := uint32(a)<<18 | uint32(b)<<12 | uint32(c)<<6 | uint32(d)
		dst[di], dst[di+1], dst[di+2] = byte(v>>16), byte(v>>8), byte(v)
	}
	switch len(s) - si {
	case 0:
		return di == len(dst)
	case 2:
		if di+1 != len(dst) {
			return false
		}
		a, b := b64Index[s[si]], b64Index[s[si+1]]
		if (a|b)&0xC0 != 0 || b&0x0F != 0 {
			return false
		}
		dst[di] = a<<2 | b>>4
		return true
	case 3:
		if di+2 != len(dst) {
			return false
		}
		a, b, c := b64Index[s[si]], b64Index[s[si+1]], b64Index[s[si+2]]
		if (a|b|c)&0xC0 != 0 || c&0x03 != 0 {
			return false
		}
		v := uint32(a)<<12 | uint32(b)<<6 | uint32(c)
		dst[di], dst[di+1] = byte(v>>10), byte(v>>2)
		return true
	}
	return false
}

// Error messages of the JSON decoder (what encoding/json-based decoding reported).
const (
	errInvalidJSON = "invalid JSON"
	errNotObject   = "not a JSON object"
	errTrailing    = "trailing data after JSON object"
)

// maxJSONDepth is encoding/json's nesting limit for one value; a member value may
// nest this deep and no deeper.
const maxJSONDepth = 10000

// jsonDecoder is a strict RFC 8259 decoder over a string that types values as
// encoding/json does when decoding into any with UseNumber: string, Number (for its
// json.Number), bool, nil, []any, map[string]any. Strings are unescaped as encoding/json does it
// (invalid UTF-8 and unpaired surrogate escapes become U+FFFD) and, when nothing
// needed unescaping, are substrings of the input.
//
// The top level is driven by begin, member, colon, value and end, so that callers
// can check names as they come (duplicates are reported as soon as the name is read,
// as the token-based decoder did).
type jsonDecoder struct {
	s     string
	i     int
	stack []any // elements of the arrays being decoded, innermost last
}

func (d *jsonDecoder) ws() {
	for d.i < len(d.s) {
		switch d.s[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// begin consumes the opening '{' of the top-level object. If the input does not
// start with one, it returns errNotObject when it starts with another complete JSON
// token ('[', a string, number or literal; what follows does not matter) and
// errInvalidJSON otherwise.
func (d *jsonDecoder) begin() string {
	d.ws()
	if d.i >= len(d.s) {
		return errInvalidJSON
	}
	switch c := d.s[d.i]; {
	case c == '{':
		d.i++
		return ""
	case c == '[':
		return errNotObject
	case c == '"':
		if d.skipStr() {
			return errNotObject
		}
	case c == '-' || '0' <= c && c <= '9':
		if _, ok := d.num(); ok {
			return errNotObject
		}
	case c == 't' || c == 'f' || c == 'n':
		if _, ok := d.literal(); ok {
			return errNotObject
		}
	}
	return errInvalidJSON
}

// member reads the next member name of the top-level object, after the ',' that
// must precede it unless first. done is true (and key "") at the closing '}'.
func (d *jsonDecoder) member(first bool) (key string, done, ok bool) {
	d.ws()
	if d.i >= len(d.s) {
		return "", false, false
	}
	c := d.s[d.i]
	if c == '}' {
		d.i++
		return "", true, true
	}
	if !first {
		if c != ',' {
			return "", false, false
		}
		d.i++
		d.ws()
		if d.i >= len(d.s) {
			return "", false, false
		}
		c = d.s[d.i]
	}
	if c != '"' {
		return "", false, false
	}
	key, ok = d.str()
	return key, false, ok
}

// colon consumes the ':' after a member name and the space after it.
func (d *jsonDecoder) colon() bool {
	d.ws()
	if d.i >= len(d.s) || d.s[d.i] != ':' {
		return false
	}
	d.i++
	d.ws()
	return true
}

// end reports whether only white space follows the top-level object.
func (d *jsonDecoder) end() bool {
	d.ws()
	return d.i == len(d.s)
}

// value decodes one value at nesting depth (1 for a member of the top-level object).
func (d *jsonDecoder) value(depth int) (any, bool) {
	d.ws()
	if d.i >= len(d.s) {
		return nil, false
	}
	switch c := d.s[d.i]; {
	case c == '"':
		s, ok := d.str()
		if !ok {
			return nil, false
		}
		return s, true
	case c == '{':
		return d.object(depth)
	case c == '[':
		return d.array(depth)
	case c == '-' || '0' <= c && c <= '9':
		n, ok := d.num()
		if !ok {
			return nil, false
		}
		return Number(n), true
	default:
		return d.literal()
	}
}

// literal decodes true, false or null.
func (d *jsonDecoder) literal() (any, bool) {
	rest := d.s[d.i:]
	switch {
	case len(rest) >= 4 && rest[:4] == "true":
		d.i += 4
		return true, true
	case len(rest) >= 5 && rest[:5] == "false":
		d.i += 5
		return false, true
	case len(rest) >= 4 && rest[:4] == "null":
		d.i += 4
		return nil, true
	}
	return nil, false
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// num scans a JSON number and returns its text.
func (d *jsonDecoder) num() (string, bool) {
	s, i := d.s, d.i
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i >= len(s):
		return "", false
	case s[i] == '0':
		i++
	case '1' <= s[i] && s[i] <= '9':
		for i++; i < len(s) && isDigit(s[i]); i++ {
		}
	default:
		return "", false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if i >= len(s) || !isDigit(s[i]) {
			return "", false
		}
		for i++; i < len(s) && isDigit(s[i]); i++ {
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if i >= len(s) || !isDigit(s[i]) {
			return "", false
		}
		for i++; i < len(s) && isDigit(s[i]); i++ {
		}
	}
	n := s[d.i:i]
	d.i = i
	return n, true
}

// str decodes the string starting at the '"' at d.i.
func (d *jsonDecoder) str() (string, bool) {
	s := d.s
	start := d.i + 1
	for i := start; i < len(s); {
		c := s[i]
		switch {
		case c == '"':
			d.i = i + 1
			return s[start:i], true
		case c == '\\':
			return d.slowStr(start)
		case c < 0x20:
			return "", false
		case c < utf8.RuneSelf:
			i++
		default:
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				return d.slowStr(start)
			}
			i += size
		}
	}
	return "", false
}

// skipStr checks the syntax of the string starting at the '"' at d.i and moves past
// it. Escapes must be one of \" \\ \/ \b \f \n \r \t \uXXXX, control characters
// must be escaped, and invalid UTF-8 is allowed (unescaping replaces it).
func (d *jsonDecoder) skipStr() bool {
	s := d.s
	for i := d.i + 1; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			d.i = i + 1
			return true
		case c < 0x20:
			return false
		case c == '\\':
			i++
			if i >= len(s) {
				return false
			}
			switch s[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(s) || hex4(s[i+1:i+5]) < 0 {
					return false
				}
				i += 4
			default:
				return false
			}
		}
	}
	return false
}

// slowStr decodes a string that needs unescaping or UTF-8 repair; its contents
// start at start.
func (d *jsonDecoder) slowStr(start int) (string, bool) {
	d.i = start - 1
	if !d.skipStr() {
		return "", false
	}
	return unquote(d.s[start : d.i-1]), true
}

// hex4 parses four hex digits, or returns -1.
func hex4(s string) rune {
	var r rune
	for i := 0; i < 4; i++ {
		c := s[i]
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
}

// unquote unescapes the contents of a string that skipStr accepted, as
// encoding/json does: a \u escape of a high surrogate followed by one of a low
// surrogate is one rune, any other surrogate escape is U+FFFD (the following escape
// is then decoded on its own), and each byte of invalid UTF-8 becomes U+FFFD.
func unquote(s string) string {
	b := make([]byte, 0, len(s)+2*utf8.UTFMax)
	for r := 0; r < len(s); {
		c := s[r]
		switch {
		case c == '\\':
			switch e := s[r+1]; e {
			case 'b':
				b = append(b, '\b')
			case 'f':
				b = append(b, '\f')
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case 'u':
				rr := hex4(s[r+2 : r+6])
				r += 6
				if utf16.IsSurrogate(rr) {
					rr1 := rune(-1)
					if r+6 <= len(s) && s[r] == '\\' && s[r+1] == 'u' {
						rr1 = hex4(s[r+2 : r+6])
					}
					if dec := utf16.DecodeRune(rr, rr1); dec != utf8.RuneError {
						b = utf8.AppendRune(b, dec)
						r += 6
						continue
					}
					rr = utf8.RuneError
				}
				b = utf8.AppendRune(b, rr)
				continue
			default: // '"', '\\', '/'
				b = append(b, e)
			}
			r += 2
		case c < utf8.RuneSelf:
			b = append(b, c)
			r++
		default:
			rr, size := utf8.DecodeRuneInString(s[r:])
			b = utf8.AppendRune(b, rr)
			r += size
		}
	}
	return string(b)
}

// object decodes a nested object; a repeated name keeps the last value, as
// encoding/json does.
func (d *jsonDecoder) object(depth int) (any, bool) {
	if depth > maxJSONDepth {
		return nil, false
	}
	d.i++ // '{'
	m := make(map[string]any)
	d.ws()
	if d.i < len(d.s) && d.s[d.i] == '}' {
		d.i++
		return m, true
	}
	for {
		d.ws()
		if d.i >= len(d.s) || d.s[d.i] != '"' {
			return nil, false
		}
		k, ok := d.str()
		if !ok || !d.colon() {
			return nil, false
		}
		v, ok := d.value(depth + 1)
		if !ok {
			return nil, false
		}
		m[k] = v
		d.ws()
		if d.i >= len(d.s) {
			return nil, false
		}
		switch d.s[d.i] {
		case ',':
			d.i++
		case '}':
			d.i++
			return m, true
		default:
			return nil, false
		}
	}
}

// array decodes an array into a slice of exactly its length (empty, not nil, for
// []), collecting the elements on d.stack first.
func (d *jsonDecoder) array(depth int) (any, bool) {
	if depth > maxJSONDepth {
		return nil, false
	}
	d.i++ // '['
	d.ws()
	if d.i < len(d.s) && d.s[d.i] == ']' {
		d.i++
		return []any{}, true
	}
	base := len(d.stack)
	for {
		v, ok := d.value(depth + 1)
		if !ok {
			return nil, false
		}
		d.stack = append(d.stack, v)
		d.ws()
		if d.i >= len(d.s) {
			return nil, false
		}
		switch d.s[d.i] {
		case ',':
			d.i++
		case ']':
			d.i++
			a := make([]any, len(d.stack)-base)
			copy(a, d.stack[base:])
			clear(d.stack[base:])
			d.stack = d.stack[:base]
			return a, true
		default:
			return nil, false
		}
	}
}
