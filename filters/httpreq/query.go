package httpreq

import (
	"net/url"
	"strings"
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
		var pair string
		pair, q, _ = strings.Cut(q, "&")
		if pair == "" {
			continue
		}
		if strings.IndexByte(pair, ';') >= 0 {
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
