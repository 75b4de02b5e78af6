package httpreq

import "strings"

// maxCookies is how many crumbs (counted as Go counts them: ';' + 1 per line) Go's
// net/http reads at all: above it, http.Request.Cookie finds none (GODEBUG
// httpcookiemaxnum's default).
const maxCookies = 3000

// CookieSpace is trimmed around crumbs and names in the inclusive reading: every
// ASCII space a common cookie parser trims (Go trims ' ', '\t', '\r', '\n'; Python's
// regexps also \v and \f).
const CookieSpace = " \t\r\n\v\f"

// Cookie reads the cookie name over every Cookie line.
func (r *Request) Cookie(name string) Value {
	var why string
	r.vals, why = r.AppendCookieValues(r.vals[:0], name)
	return single(r.vals, why, "cookie", name)
}

// CookieLines returns the value of every Cookie line, in order.
func (r *Request) CookieLines() []string {
	if !r.cookiesOK {
		if r.pairsRead {
			r.cookies = r.cookies[:0]
			for i := range r.pairs {
				if r.pairs[i].Key == "cookie" {
					r.cookies = append(r.cookies, r.pairs[i].Value)
				}
			}
		} else {
			r.cookies = r.View.AppendValues(r.cookies[:0], "cookie")
		}
		r.cookiesOK = true
	}
	return r.cookies
}

// AppendCookieValues appends to dst the value of every crumb that http.Request.Cookie
// reads as cookie name, in order. why is not empty when some common parser reads a
// crumb differently (see the package comment).
func (r *Request) AppendCookieValues(dst []string, name string) (_ []string, why string) {
	n := namer{buf: r.scratch}
	lines := r.CookieLines()
	count := 0
	for _, line := range lines {
		// Crumbs as Go counts them: the ';'-separated pieces (the loop below skips
		// a last empty one).
		if line == "" || line[len(line)-1] == ';' {
			count++
		}
		for line != "" {
			count++
			// One pass over the crumb finds its end and whether it needs the full
			// reading below: a ',' anywhere, or an escape or '+' in its name. (One
			// table load per ordinary byte: the cheapest loop in a wasm guest.)
			end, eq, comma, esc := len(line), -1, false, false
		scan:
			for i := 0; i < len(line); i++ {
				switch cookieScan[line[i]] {
				case scanPlain:
					continue
				case scanEnd:
					end = i
					break scan
				case scanEq:
					if eq < 0 {
						eq = i
					}
				case scanComma:
					comma = true
				case scanEscape:
					esc = esc || eq < 0
				}
			}
			raw := line[:end]
			if end < len(line) {
				line = line[end+1:]
			} else {
				line = ""
			}
			if !comma && !esc {
				// A name whose length differs from name's however it is trimmed
				// names it in no reading (Go's trims fewer spaces than the inclusive
				// form; neither adds any).
				rawName := raw
				if eq >= 0 {
					rawName = raw[:eq]
				}
				if gn, cn := trimGoSpace(rawName), trimCookieSpace(rawName); len(gn) != len(name) && len(cn) != len(name) && (name == "" || name[0] != ' ') {
					continue
				}
			}
			crumb := trimCookieSpace(raw)
			if crumb == "" {
				continue
			}
			rawName, _, _ := strings.Cut(crumb, "=")
			if strings.IndexByte(crumb, ',') >= 0 && why == "" {
				for i, piece := range strings.Split(crumb, ",") {
					if i == 0 && strings.IndexByte(rawName, ',') < 0 {
						continue // the crumb's own name, read below
					}
					pn, _, _ := strings.Cut(piece, "=")
					if m, _ := n.names(trimCookieSpace(pn), name); m {
						why = "cookie " + name + " after ',' in a crumb"
					}
				}
			}
			// Go's reading: the crumb and the name trimmed of its four spaces.
			goName, goValue, _ := strings.Cut(trimGoSpace(raw), "=")
			if goName = trimGoSpace(goName); goName == name && isToken(goName) {
				v, ok := goCookieValue(goValue)
				if !ok || v != "" && (v[0] == ' ' || v[len(v)-1] == ' ') {
					// Go skips the crumb, or keeps spaces other parsers trim.
					if why == "" {
						why = "cookie " + name + " with a value Go's net/http refuses or keeps spaces in"
					}
					continue
				}
				dst = append(dst, v)
				continue
			}
			if m, _ := n.names(trimCookieSpace(rawName), name); m && why == "" {
				why = "cookie " + name + " spelled " + quoteShort(rawName)
			}
		}
	}
	if count > maxCookies && (len(dst) > 0 || why != "") {
		why = "more cookies than Go's net/http reads"
	}
	r.scratch = n.buf[:0]
	return dst, why
}

// goCookieValue is net/http's parseCookieValue: surrounding double quotes removed, and
// ok false for a value holding a byte outside 0x20..0x7e, '"', ';' or '\\'. (Go trims
// the crumb, not the value: "n= v" is " v".)
func goCookieValue(raw string) (string, bool) {
	if len(raw) > 1 && raw[0] == '"' && raw[len(raw)-1] == '"' {
		raw = raw[1 : len(raw)-1]
	}
	for i := 0; i < len(raw); i++ {
		b := raw[i]
		if b < 0x20 || b >= 0x7f || b == '"' || b == ';' || b == '\\' {
			return "", false
		}
	}
	return raw, true
}

// Classes of bytes for the one-pass scans of cookie crumbs and query pairs.
const (
	scanPlain = iota // nothing to note
	scanEnd          // ';' in a Cookie line, '&' in a query
	scanEq           // '='
	scanComma        // ',' in a Cookie line, ';' in a query
	// scanEscape: '%' or '+', '[', ']' or NUL (a structured name, see
	// namesStructured), in a query also a non-ASCII byte (its value is checked for
	// UTF-8).
	scanEscape
)

var cookieScan, queryScan = func() (c, q [256]uint8) {
	c[';'], c['='], c[','] = scanEnd, scanEq, scanComma
	q['&'], q['='], q[';'] = scanEnd, scanEq, scanComma
	for _, b := range []byte("%+[]\x00") {
		c[b], q[b] = scanEscape, scanEscape
	}
	for b := 0x80; b < 0x100; b++ {
		q[b] = scanEscape
	}
	return c, q
}()

// tokenByte marks the bytes of an RFC 9110 token.
var tokenByte = func() (t [256]bool) {
	for c := '!'; c < 0x7f; c++ {
		t[c] = !strings.ContainsRune("\"(),/:;<=>?@[\\]{}", c)
	}
	return t
}()

// isToken reports whether s is an RFC 9110 token (Go's cookie-name check).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !tokenByte[s[i]] {
			return false
		}
	}
	return true
}

func quoteShort(s string) string {
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	b := make([]byte, 0, len(s)+2)
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			b = append(b, '\\', 'x', "0123456789abcdef"[c>>4], "0123456789abcdef"[c&15])
			continue
		}
		b = append(b, c)
	}
	return string(append(b, '"'))
}

// trimCookieSpace is strings.Trim(s, CookieSpace) without building a cutset per call.
func trimCookieSpace(s string) string {
	for len(s) > 0 && isCookieSpace(s[0]) {
		s = s[1:]
	}
	for len(s) > 0 && isCookieSpace(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	return s
}

func isCookieSpace(c byte) bool { return c == ' ' || '\t' <= c && c <= '\r' }

// trimGoSpace is Go's textproto.TrimString.
func trimGoSpace(s string) string {
	for len(s) > 0 && isGoSpace(s[0]) {
		s = s[1:]
	}
	for len(s) > 0 && isGoSpace(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	return s
}

func isGoSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }
