// Package yamldoc splits multi-document YAML streams.
package yamldoc

import "bytes"

// Split splits a YAML stream at its `---` separator lines and drops documents that
// hold only comments or blank lines. Each document keeps its bytes as written; Line
// gives where it starts.
func Split(b []byte) []Doc {
	var out []Doc
	start, line, docLine := 0, 1, 1
	flush := func(end int) {
		d := b[start:end]
		if hasContent(d) {
			out = append(out, Doc{Data: d, Line: docLine})
		}
	}
	for i := 0; i <= len(b); {
		j := bytes.IndexByte(b[i:], '\n')
		end := len(b)
		if j >= 0 {
			end = i + j
		}
		l := b[i:end]
		if bytes.HasPrefix(l, []byte("---")) && (len(l) == 3 || l[3] == ' ' || l[3] == '\t' || l[3] == '\r') {
			flush(i)
			start = end + 1
			if start > len(b) {
				start = len(b)
			}
			docLine = line + 1
		}
		if j < 0 {
			break
		}
		i = end + 1
		line++
	}
	if start < len(b) {
		flush(len(b))
	}
	return out
}

// Doc is one document of a stream.
type Doc struct {
	Data []byte
	Line int // 1-based line of the stream where Data starts
}

func hasContent(d []byte) bool {
	for _, l := range bytes.Split(d, []byte("\n")) {
		if t := bytes.TrimSpace(l); len(t) > 0 && t[0] != '#' {
			return true
		}
	}
	return false
}
