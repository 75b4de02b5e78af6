package httpreq

import "strings"

// This file compares query and cookie names in the inclusive form (see the package
// comment): the most names any common upstream parser reads as the configured one.

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// DecodeLenient percent-decodes s ('+' as space) into dst, keeping invalid escapes
// verbatim as Python and Node do; bad reports whether there was one.
func DecodeLenient(dst []byte, s string) (out []byte, bad bool) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '%':
			if i+2 < len(s) {
				h, ok1 := unhex(s[i+1])
				l, ok2 := unhex(s[i+2])
				if ok1 && ok2 {
					dst = append(dst, h<<4|l)
					i += 2
					continue
				}
			}
			bad = true
		case c == '+':
			c = ' '
		}
		dst = append(dst, c)
	}
	return dst, bad
}

// foldName is one byte of a name's inclusive form.
func foldName(c byte) byte {
	switch {
	case 'A' <= c && c <= 'Z':
		return c + 'a' - 'A'
	case c == ' ' || c == '.' || c == '[':
		return '_'
	}
	return c
}

// AppendInclusive appends the inclusive form of an already decoded name to dst:
// leading spaces dropped, ASCII lower-case, ' ', '.' and '[' read as '_'.
func AppendInclusive(dst []byte, s string) []byte {
	s = strings.TrimLeft(s, " ")
	for i := 0; i < len(s); i++ {
		dst = append(dst, foldName(s[i]))
	}
	return dst
}

// inclusiveEq reports whether two decoded names are equal in the inclusive form:
// leading spaces dropped, ASCII case folded, ' ', '.' and '[' read as '_'.
func inclusiveEq(a, b string) bool {
	a, b = strings.TrimLeft(a, " "), strings.TrimLeft(b, " ")
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if foldName(a[i]) != foldName(b[i]) {
			return false
		}
	}
	return true
}

// StructuredBase is the name a decoded query or cookie name s also names, when some
// common parser reads it as the base of a structured name: PHP ($_GET, $_COOKIE),
// Rack and Express's qs read `user[]=x`, `user[0]=x` and `user[k]=x` as parameter user
// (an array or a map), Rack 2 also `user]=x`, and qs and Rack 2 read `[user]=x` as
// user. The base is what is left after leading spaces (PHP) and a leading run of
// brackets (Rack 2's name pattern), up to the next bracket. PHP also reads names as C
// strings (php_register_variable_ex takes strlen of the decoded name): `user%00x=y`
// is user there. ok is false when s is no such name (no bracket, no NUL).
func StructuredBase(s string) (base string, ok bool) {
	t := strings.TrimLeft(s, " ")
	if i := strings.IndexByte(t, 0); i >= 0 {
		t, ok = t[:i], true
	}
	u := strings.TrimLeft(t, "[]")
	if i := strings.IndexAny(u, "[]"); i >= 0 {
		return u[:i], true
	}
	if len(u) != len(t) {
		return u, true
	}
	return t, ok
}

// namesStructured reports whether the decoded name s names name as the base of a
// structured name (StructuredBase).
func namesStructured(s, name string) bool {
	base, ok := StructuredBase(s)
	return ok && inclusiveEq(base, name)
}

// namer compares raw (undecoded) names with a configured name; it keeps a decoding
// buffer so that comparisons allocate nothing once warm.
type namer struct{ buf []byte }

// names reports whether raw names name in the inclusive form, after one decoding or
// (suspicious) after a second one; suspicious also reports an invalid escape in a raw
// name that names name.
func (n *namer) names(raw, name string) (match, suspicious bool) {
	if raw == name {
		return true, false
	}
	if strings.IndexByte(raw, '%') < 0 && strings.IndexByte(raw, '+') < 0 {
		if len(raw) != len(name) && (raw == "" || raw[0] != ' ') && (name == "" || name[0] != ' ') && !strings.ContainsAny(raw, "[]\x00") {
			return false, false // no leading spaces to drop, brackets or NUL: lengths must match
		}
		return inclusiveEq(raw, name) || namesStructured(raw, name), false
	}
	dec, bad := DecodeLenient(n.buf[:0], raw)
	n.buf = dec
	if inclusiveEq(string(dec), name) || namesStructured(string(dec), name) {
		return true, bad
	}
	if strings.IndexByte(string(dec), '%') >= 0 {
		dec2, _ := DecodeLenient(nil, string(dec))
		if inclusiveEq(string(dec2), name) || namesStructured(string(dec2), name) {
			return true, true
		}
	}
	return false, false
}
