package httpreq

import (
	"net/url"
	"strings"
	"unicode/utf8"
)

// Param reads the query parameter name (decoded).
func (r *Request) Param(name string) Value {
	var why string
	r.vals, why = r.AppendParamValues(r.vals[:0], name)
	return single(r.vals, why, "query parameter", name)
}

// AppendParamValues appends to dst the decoded value of every pair of the query that
// url.ParseQuery reads as parameter name, in order. why is not empty when some common
// parser reads a pair differently (see the package comment). Values are allocated only
// when they hold an escape or a '+'.
func (r *Request) AppendParamValues(dst []string, name string) (_ []string, why string) {
	n := namer{buf: r.scratch}
	q := r.RawQuery
	for q != "" {
		// One pass over the pair finds its end, its '=' and whether it needs the
		// slow path (';', an escape, '+', a bracket or a non-ASCII byte): cheaper in a wasm guest than a
		// strings.IndexByte call per question.
		end, eq, semi, esc := len(q), -1, false, false
	scan:
		for i := 0; i < len(q); i++ {
			switch queryScan[q[i]] {
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
				semi = true
			case scanEscape:
				esc = true
			}
		}
		pair := q[:end]
		if end < len(q) {
			q = q[end+1:]
		} else {
			q = ""
		}
		if pair == "" {
			continue
		}
		if !semi && !esc {
			// Plain text: the name is name, or cannot name it in the inclusive
			// form unless it has leading spaces or is name in another case or
			// spelling of the same length (the general path below; brackets
			// of structured names take it too).
			rawName, rawValue := pair, ""
			if eq >= 0 {
				rawName, rawValue = pair[:eq], pair[eq+1:]
			}
			if rawName == name {
				dst = append(dst, rawValue)
				continue
			}
			if len(rawName) != len(name) && (rawName == "" || rawName[0] != ' ') && (name == "" || name[0] != ' ') {
				continue
			}
		}
		if semi {
			// Go drops the pair; parsers splitting on ';' read every piece.
			if why != "" {
				continue
			}
			for piece := range strings.SplitSeq(pair, ";") {
				pn, _, _ := strings.Cut(piece, "=")
				if m, _ := n.names(pn, name); m {
					why = "query parameter " + name + " in a pair holding ';'"
					break
				}
			}
			continue
		}
		rawName, rawValue, _ := strings.Cut(pair, "=")
		m, suspicious := n.names(rawName, name)
		if !m {
			continue
		}
		k, err := unescape(rawName)
		if err != nil || suspicious || k != name {
			if why == "" {
				why = "query parameter " + name + " spelled " + quoteShort(rawName)
			}
			continue
		}
		v, err := unescape(rawValue)
		if err != nil {
			if why == "" {
				why = "query parameter " + name + " with an invalid escape in its value"
			}
			continue
		}
		if !utf8.ValidString(v) {
			// Go keeps the bytes; Python's parse_qs, Node's URLSearchParams and
			// servlet containers decode UTF-8 with U+FFFD for what is not, so
			// `x%FF` and `x%FE` are one value to them and two to Go.
			if why == "" {
				why = "query parameter " + name + " whose value is not UTF-8"
			}
			continue
		}
		dst = append(dst, v)
	}
	r.scratch = n.buf[:0]
	return dst, why
}

// unescape is url.QueryUnescape without an allocation for plain text.
func unescape(s string) (string, error) {
	if strings.IndexByte(s, '%') < 0 && strings.IndexByte(s, '+') < 0 {
		return s, nil
	}
	return url.QueryUnescape(s)
}
