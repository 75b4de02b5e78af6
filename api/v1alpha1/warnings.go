package v1alpha1

import (
	"fmt"
	"strings"

	"github.com/meshplug/meshplug/filters/configjson"
)

// Warning is something a valid policy does that is likely not what its author meant,
// at a field path under spec. It is not part of the API (no deep copy).
//
// +kubebuilder:object:generate=false
type Warning struct {
	Path, Msg string
}

func (w Warning) String() string { return w.Path + ": " + w.Msg }

// PathWarnings lists the policy's path rules that rely on something the filters
// cannot see for themselves. The filters match paths in one canonical form whatever
// the mesh's path normalization (a WasmPlugin cannot set the HTTP connection
// manager's normalize_path, merge_slashes or escaped-slash handling, and Istio's
// default applies only the first), so what is left is:
//   - a regex written for spellings the canonical form never has (`//`, `/../`,
//     `%2e`, lower-case hex such as `%2f`, `\`): it matched only while the mesh handed
//     paths over un-normalized, and now never matches;
//   - auth's path_params "literal" or "strip": a statement about every upstream
//     behind the policy that, if wrong, lets `/public/..;/admin` (literal, in front
//     of Tomcat) or `/admin/..;/x` (strip, in front of Go) through as public;
//   - an auth rule whose path contains ';' while path_params is "ambiguous": requests
//     for it are always refused as ambiguous.
func (p *TrafficPolicy) PathWarnings() []Warning {
	var out []Warning
	regex := func(path, re string) {
		if tok := nonCanonicalToken(re); tok != "" {
			out = append(out, Warning{path, fmt.Sprintf("the regex contains %q, which the canonical path the filter matches never contains (`\\` is `/`, slashes merged, dot segments removed, unreserved escapes decoded, other escapes in upper-case hex): it could only match while the mesh handed paths over un-normalized", tok)})
		}
	}
	s := &p.Spec
	if a := s.Auth; a != nil {
		params := ""
		if a.PathNormalization != nil {
			params = a.PathNormalization.PathParams
		}
		switch params {
		case "literal":
			out = append(out, Warning{"spec.auth.path_normalization.path_params", `"literal" relies on every upstream behind this policy reading ';' as a character; Tomcat, Jetty and Spring drop path parameters, so there /public/..;/admin is /admin while auth matches it under /public/`})
		case "strip":
			out = append(out, Warning{"spec.auth.path_normalization.path_params", `"strip" relies on every upstream behind this policy dropping ';' path parameters (Tomcat, Jetty, Spring); Go's net/http and most others read ';' as a character, so there /admin/..;/x is under /admin while auth matches it as /x`})
		}
		for i, r := range a.Rules {
			if r.Match == nil {
				continue
			}
			mp := configjson.Field(configjson.Index("spec.auth.rules", i), "match")
			if r.Match.Regex != nil {
				regex(configjson.Field(mp, "regex"), *r.Match.Regex)
			}
			for _, f := range []struct {
				name string
				v    *string
			}{{"prefix", r.Match.Prefix}, {"path", r.Match.Path}} {
				if f.v != nil && strings.Contains(*f.v, ";") && params != "literal" {
					out = append(out, Warning{configjson.Field(mp, f.name), `contains ';', which path_params "` + cmp(params, "ambiguous") + `" reads as a path parameter: requests for it are refused or stripped before matching; set path_normalization.path_params "literal" if the upstream reads ';' as a character`})
				}
			}
		}
	}
	if rl := s.RateLimit; rl != nil {
		for i, r := range rl.Rules {
			if r.Match != nil && r.Match.Regex != "" {
				regex(configjson.Field(configjson.Field(configjson.Index("spec.rateLimit.rules", i), "match"), "regex"), r.Match.Regex)
			}
		}
	}
	if rh := s.RouteHints; rh != nil {
		for i, r := range rh.Rules {
			if r.Match == nil {
				continue
			}
			mp := configjson.Field(configjson.Index("spec.routeHints.rules", i), "match")
			for j, c := range r.Match.All {
				if c.From == "path" && c.Op == "regex" {
					regex(configjson.Field(configjson.Index(configjson.Field(mp, "all"), j), "value"), c.Value)
				}
			}
			for g, grp := range r.Match.Any {
				for j, c := range grp.All {
					if c.From == "path" && c.Op == "regex" {
						regex(configjson.Field(configjson.Index(configjson.Field(configjson.Index(configjson.Field(mp, "any"), g), "all"), j), "value"), c.Value)
					}
				}
			}
		}
	}
	if f := s.Faults; f != nil {
		for i, fs := range f.Faults {
			for j, h := range fs.Headers {
				if !strings.EqualFold(h.Name, ":path") {
					continue
				}
				hp := configjson.Index(configjson.Field(configjson.Index("spec.faults.faults", i), "headers"), j)
				if h.SafeRegexMatch != nil {
					regex(configjson.Field(configjson.Field(hp, "safe_regex_match"), "regex"), h.SafeRegexMatch.Regex)
				}
				if h.StringMatch != nil && h.StringMatch.SafeRegex != nil {
					regex(configjson.Field(configjson.Field(configjson.Field(hp, "string_match"), "safe_regex"), "regex"), h.StringMatch.SafeRegex.Regex)
				}
			}
		}
	}
	return out
}

func cmp(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// nonCanonicalToken returns a piece of a path regex that only a non-canonical path
// can contain, or "".
func nonCanonicalToken(re string) string {
	for _, tok := range []string{"//", `/\.\./`, `/\./`, `\\`} {
		if strings.Contains(re, tok) {
			return tok
		}
	}
	for i := 0; i+2 < len(re); i++ {
		h, l := unhex(re[i+1]), unhex(re[i+2])
		if re[i] != '%' || h < 0 || l < 0 {
			continue
		}
		v := byte(h<<4 | l)
		unreserved := v >= 'a' && v <= 'z' || v >= 'A' && v <= 'Z' || v >= '0' && v <= '9' || v == '-' || v == '.' || v == '_' || v == '~'
		if unreserved || strings.ContainsAny(re[i+1:i+3], "abcdef") {
			return re[i : i+3]
		}
	}
	return ""
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}
