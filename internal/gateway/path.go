package gateway

import "strings"

// normalizePath applies the edge hardening the envoy.yaml rendering configures
// (envoyfilters.EnvoyBootstrap), which auth's path rules rely on: escaped slashes
// (%2F, %5C) are unescaped and the client redirected there
// (path_with_escaped_slashes_action UNESCAPE_AND_REDIRECT); then dot segments are
// removed (normalize_path, RFC 3986 5.2.4) and slashes merged (merge_slashes). The
// query is kept as it is. It returns the path and whether to redirect.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/configuration/best_practices/edge
func normalizePath(target string) (string, bool) {
	p, q, hasQ := strings.Cut(target, "?")
	if strings.Contains(p, "%") {
		u := p
		for _, e := range [][2]string{{"%2F", "/"}, {"%2f", "/"}, {"%5C", `\`}, {"%5c", `\`}} {
			u = strings.ReplaceAll(u, e[0], e[1])
		}
		if u != p {
			return join(u, q, hasQ), true
		}
	}
	var out []string
	for _, seg := range strings.Split(p, "/") {
		switch seg {
		case "", ".":
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		default:
			out = append(out, seg)
		}
	}
	n := "/" + strings.Join(out, "/")
	if len(out) > 0 && (strings.HasSuffix(p, "/") || strings.HasSuffix(p, "/.") || strings.HasSuffix(p, "/..")) {
		n += "/"
	}
	return join(n, q, hasQ), false
}

func join(p, q string, hasQ bool) string {
	if hasQ {
		return p + "?" + q
	}
	return p
}
