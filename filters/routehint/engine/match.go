package engine

import (
	"strings"

	"github.com/meshplug/meshplug/filters/abi"
	"github.com/meshplug/meshplug/filters/routehint/config"
)

// Matches reports whether m holds for r: every condition of m.All, and (when m.Any is
// not empty) every condition of at least one group of m.Any.
func (r *Request) Matches(m *config.Match) bool {
	for i := range m.All {
		if !r.Holds(&m.All[i]) {
			return false
		}
	}
	if len(m.Any) == 0 {
		return true
	}
	for _, group := range m.Any {
		ok := true
		for i := range group {
			if !r.Holds(&group[i]) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// Holds reports whether one condition holds for r. Inputs with several copies are
// judged copy by copy (see config.ConditionSpec): positive operators need at least one
// copy and every copy to satisfy them, not_equal and not_in need no copy to be equal /
// in the list; so adding a copy never makes a condition hold. An input whose reading
// depends on the upstream's parser (filters/httpreq's rule) holds no condition,
// positive or negated: an ambiguous spelling never makes a condition hold either.
func (r *Request) Holds(c *config.Condition) bool {
	switch c.From {
	case config.FromPath:
		// One copy per reading of an ambiguous path (httpreq.PathReadings).
		if len(r.paths) <= 1 {
			return judge(c, 1, b2i(test(c, r.Path)))
		}
		sat := 0
		for _, p := range r.paths {
			sat += b2i(test(c, p))
		}
		return judge(c, len(r.paths), sat)
	case config.FromMethod:
		return judge(c, 1, b2i(test(c, r.Method)))
	case config.FromHeader:
		// Every copy; a copy spelled with '_' for '-' or in another case (which
		// CGI-style upstreams read as the same header) makes the input ambiguous: the
		// condition holds in neither form. (Here rather than in a function of its
		// own: a call per rule costs more than the loop in a wasm guest.)
		n, sat := 0, 0
		for i := range r.Headers {
			h := &r.Headers[i]
			if h.Key != c.Name {
				if abi.HeaderNameIs(h.Key, c.Name) {
					return false
				}
				continue
			}
			n++
			if c.Op == config.OpExists || c.Op == config.OpNotExists {
				continue
			}
			if test(c, h.Value) {
				sat++
			} else if !c.Op.Negated() {
				return false
			}
		}
		return judge(c, n, sat)
	case config.FromCookie, config.FromQuery:
		var in *input
		if c.From == config.FromCookie {
			in = r.cookie(c)
		} else {
			in = r.param(c)
		}
		switch {
		case in.ambiguous:
			return false
		case len(in.vals) <= 1 && c.Op != config.OpExists && c.Op != config.OpNotExists && !c.Op.Negated():
			// A positive operator and at most one copy: the copy's test (what
			// holdsValues decides then, without a call: most rules test one value).
			return len(in.vals) == 1 && test(c, in.vals[0])
		}
		return holdsValues(c, in.vals)
	}
	return false
}

// holdsValues judges a condition over every copy of a cookie or query parameter.
func holdsValues(c *config.Condition, vals []string) bool {
	n, sat := 0, 0
	for _, v := range vals {
		n++
		if c.Op == config.OpExists || c.Op == config.OpNotExists {
			continue
		}
		if test(c, v) {
			sat++
		} else if !c.Op.Negated() {
			return false // a positive operator fails on the first copy that does not satisfy it
		}
	}
	return judge(c, n, sat)
}

// judge turns the count of copies n and of copies satisfying the positive form sat
// into the condition's outcome.
func judge(c *config.Condition, n, sat int) bool {
	switch c.Op {
	case config.OpExists:
		return n > 0
	case config.OpNotExists:
		return n == 0
	case config.OpNotEqual, config.OpNotIn:
		return sat == 0
	}
	return n > 0 && sat == n
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// test applies the positive form of c's operator (equal for not_equal, in for not_in)
// to one value.
func test(c *config.Condition, v string) bool {
	switch c.Op {
	case config.OpEqual, config.OpNotEqual:
		if c.IgnoreCase {
			return equalFold(v, c.Value)
		}
		return v == c.Value
	case config.OpPrefix:
		return len(v) >= len(c.Value) && (c.IgnoreCase && equalFold(v[:len(c.Value)], c.Value) || v[:len(c.Value)] == c.Value)
	case config.OpSuffix:
		s := v[max(0, len(v)-len(c.Value)):]
		return len(v) >= len(c.Value) && (c.IgnoreCase && equalFold(s, c.Value) || s == c.Value)
	case config.OpContains:
		return contains(v, c.Value, c.IgnoreCase)
	case config.OpIn, config.OpNotIn:
		for _, want := range c.Values {
			if v == want || c.IgnoreCase && equalFold(v, want) {
				return true
			}
		}
		return false
	case config.OpRegex:
		return c.Regex != nil && c.Regex.MatchString(v)
	}
	return false
}

// equalFold compares ASCII case-insensitively; want is already lower case. Unlike
// strings.EqualFold it does not fold non-ASCII letters (the Kelvin sign is not 'k').
func equalFold(v, want string) bool {
	if len(v) != len(want) {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != want[i] {
			return false
		}
	}
	return true
}

func contains(v, sub string, fold bool) bool {
	if !fold {
		return strings.Contains(v, sub)
	}
	if len(sub) > len(v) {
		return false
	}
	for i := 0; i+len(sub) <= len(v); i++ {
		if equalFold(v[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}
