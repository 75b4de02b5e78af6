// Package routehinttest holds routehint's decision table, shared by the filter's own
// tests (natively and through routehint.wasm on testenv) and testenv/cpphost (the same
// rows on proxy-wasm-cpp-host).
package routehinttest

// Targets are used by every table config: canary and beta set two hint headers, stable one,
// plain none.
var Targets = []any{
	map[string]any{"name": "canary", "headers": map[string]any{"x-route-hint": "canary", "x-version": "v2"}},
	map[string]any{"name": "stable", "headers": map[string]any{"x-route-hint": "stable"}},
	map[string]any{"name": "beta", "headers": map[string]any{"x-route-hint": "beta", "x-beta": "1"}},
	map[string]any{"name": "plain"},
}

// Cond is a config with one rule: conditions all → canary.
func Cond(conds ...map[string]any) map[string]any {
	all := make([]any, len(conds))
	for i, c := range conds {
		all[i] = c
	}
	return map[string]any{"targets": Targets, "rules": []any{
		map[string]any{"name": "r", "match": map[string]any{"all": all}, "target": "canary"},
	}}
}

func C(from, name, op string, value any) map[string]any {
	m := map[string]any{"from": from, "op": op}
	if name != "" {
		m["name"] = name
	}
	switch v := value.(type) {
	case string:
		if v != "" {
			m["value"] = v
		}
	case []string:
		m["values"] = v
	}
	return m
}

func With(m map[string]any, k string, v any) map[string]any {
	out := map[string]any{}
	for kk, vv := range m {
		out[kk] = vv
	}
	out[k] = v
	return out
}

var (
	Canary = map[string]string{"x-route-hint": "canary", "x-version": "v2"}
	Stable = map[string]string{"x-route-hint": "stable"}
	Beta   = map[string]string{"x-route-hint": "beta", "x-beta": "1"}
	None   = map[string]string{}
)

// OrderCfg: first-match (or all) over three rules.
func OrderCfg(mode string) map[string]any {
	return map[string]any{"mode": mode, "targets": Targets, "rules": []any{
		map[string]any{"name": "beta-users", "match": map[string]any{"all": []any{C("header", "x-group", "equal", "beta")}}, "target": "beta"},
		map[string]any{"name": "api", "match": map[string]any{"all": []any{C("path", "", "prefix", "/api/")}}, "target": "canary"},
		map[string]any{"name": "rest", "target": "stable"},
	}}
}

var OverrideCfg = map[string]any{"targets": Targets,
	"rules": []any{map[string]any{"name": "rest", "target": "stable"}},
	"override": map[string]any{"header": "x-canary-override", "cookie": "canary_override", "allowed": []string{"canary", "beta"},
		"when": map[string]any{"all": []any{C("header", "x-consumer-group", "equal", "testers")}}},
}

var GroupCfg = map[string]any{"targets": Targets, "rules": []any{
	map[string]any{"name": "g", "match": map[string]any{
		"all": []any{C("method", "", "in", []string{"GET", "HEAD"})},
		"any": []any{
			map[string]any{"all": []any{C("header", "x-tier", "equal", "gold"), C("cookie", "region", "equal", "eu")}},
			map[string]any{"all": []any{C("query", "canary", "exists", "")}},
		}}, "target": "canary"},
}}

var TrustedCfg = map[string]any{"targets": Targets, "trusted_headers": []string{"x-version"},
	"rules": []any{map[string]any{"name": "r", "match": map[string]any{"all": []any{C("header", "x-version", "equal", "v3")}}, "target": "beta"}}}

// Case is one row of the decision table: a configuration, a request and what the
// upstream must see.
type Case struct {
	Name    string
	Cfg     map[string]any
	Method  string // default GET
	Path    string // default /
	Headers [][2]string
	Want    map[string]string // hint headers upstream (x-route-hint, x-version, x-beta)
	Targets []string          // targets applied, in order
}

// HintNames are the headers the table checks upstream: the hints, their other
// spellings and the override header.
var HintNames = []string{"x-route-hint", "x-version", "x-beta", "x_route_hint", "x_version", "x-canary-override"}

// DecisionTable is routehint's decision table: every operator holding and not,
// repeated and ambiguous inputs, AND/OR groups, rule order, spoofed and trusted hints,
// overrides.
func DecisionTable() []Case {
	h := func(kv ...string) [][2]string {
		var out [][2]string
		for i := 0; i < len(kv); i += 2 {
			out = append(out, [2]string{kv[i], kv[i+1]})
		}
		return out
	}
	return []Case{
		// Every operator, holding and not.
		{Name: "equal", Cfg: Cond(C("header", "x-user", "equal", "alice")), Headers: h("x-user", "alice"), Want: Canary, Targets: []string{"canary"}},
		{Name: "equal other value", Cfg: Cond(C("header", "x-user", "equal", "alice")), Headers: h("x-user", "alicea"), Want: None},
		{Name: "equal is case-sensitive", Cfg: Cond(C("header", "x-user", "equal", "alice")), Headers: h("x-user", "Alice"), Want: None},
		{Name: "equal ignore_case", Cfg: Cond(With(C("header", "x-user", "equal", "ALICE"), "ignore_case", true)), Headers: h("x-user", "aLiCe"), Want: Canary, Targets: []string{"canary"}},
		{Name: "equal header name any case", Cfg: Cond(C("header", "X-User", "equal", "alice")), Headers: h("X-USER", "alice"), Want: Canary, Targets: []string{"canary"}},
		{Name: "equal absent", Cfg: Cond(C("header", "x-user", "equal", "alice")), Want: None},
		{Name: "not_equal", Cfg: Cond(C("header", "x-env", "not_equal", "prod")), Headers: h("x-env", "dev"), Want: Canary, Targets: []string{"canary"}},
		{Name: "not_equal equal", Cfg: Cond(C("header", "x-env", "not_equal", "prod")), Headers: h("x-env", "prod"), Want: None},
		{Name: "not_equal absent holds", Cfg: Cond(C("header", "x-env", "not_equal", "prod")), Want: Canary, Targets: []string{"canary"}},
		{Name: "prefix", Cfg: Cond(C("path", "", "prefix", "/api/v2/")), Path: "/api/v2/users?x=1", Want: Canary, Targets: []string{"canary"}},
		{Name: "prefix no", Cfg: Cond(C("path", "", "prefix", "/api/v2/")), Path: "/api/v1/users", Want: None},
		{Name: "prefix ignores query", Cfg: Cond(C("path", "", "suffix", "/users")), Path: "/api/users?next=/x", Want: Canary, Targets: []string{"canary"}},
		{Name: "suffix no", Cfg: Cond(C("path", "", "suffix", "/users")), Path: "/api/users/1", Want: None},
		{Name: "contains", Cfg: Cond(C("header", "user-agent", "contains", "Mobile")), Headers: h("user-agent", "Foo Mobile/1.0"), Want: Canary, Targets: []string{"canary"}},
		{Name: "contains ignore_case", Cfg: Cond(With(C("header", "user-agent", "contains", "mobile"), "ignore_case", true)), Headers: h("user-agent", "Foo MOBILE/1.0"), Want: Canary, Targets: []string{"canary"}},
		{Name: "contains no", Cfg: Cond(C("header", "user-agent", "contains", "Mobile")), Headers: h("user-agent", "Desktop"), Want: None},
		{Name: "in", Cfg: Cond(C("method", "", "in", []string{"GET", "HEAD"})), Method: "HEAD", Want: Canary, Targets: []string{"canary"}},
		{Name: "in no", Cfg: Cond(C("method", "", "in", []string{"GET", "HEAD"})), Method: "POST", Want: None},
		{Name: "not_in", Cfg: Cond(C("method", "", "not_in", []string{"GET", "HEAD"})), Method: "POST", Want: Canary, Targets: []string{"canary"}},
		{Name: "not_in no", Cfg: Cond(C("method", "", "not_in", []string{"GET", "HEAD"})), Method: "GET", Want: None},
		{Name: "regex", Cfg: Cond(C("query", "v", "regex", "2|3")), Path: "/?v=3", Want: Canary, Targets: []string{"canary"}},
		{Name: "regex is anchored", Cfg: Cond(C("query", "v", "regex", "2|3")), Path: "/?v=23", Want: None},
		{Name: "exists", Cfg: Cond(C("cookie", "beta", "exists", "")), Headers: h("cookie", "a=1; beta=yes"), Want: Canary, Targets: []string{"canary"}},
		{Name: "exists no", Cfg: Cond(C("cookie", "beta", "exists", "")), Headers: h("cookie", "a=1; betax=yes"), Want: None},
		{Name: "not_exists", Cfg: Cond(C("header", "x-debug", "not_exists", "")), Want: Canary, Targets: []string{"canary"}},
		{Name: "not_exists no", Cfg: Cond(C("header", "x-debug", "not_exists", "")), Headers: h("x-debug", ""), Want: None},

		// Repeated inputs: a copy never makes a condition hold.
		{Name: "repeated header, one copy differs", Cfg: Cond(C("header", "x-group", "equal", "beta")), Headers: h("x-group", "beta", "x-group", "other"), Want: None},
		{Name: "repeated header, all equal", Cfg: Cond(C("header", "x-group", "equal", "beta")), Headers: h("x-group", "beta", "x-group", "beta"), Want: Canary, Targets: []string{"canary"}},
		{Name: "repeated header, not_equal", Cfg: Cond(C("header", "x-env", "not_equal", "prod")), Headers: h("x-env", "dev", "x-env", "prod"), Want: None},
		{Name: "cookie on the second Cookie line", Cfg: Cond(C("cookie", "tier", "equal", "gold")), Headers: h("cookie", "a=1", "cookie", "tier=gold"), Want: Canary, Targets: []string{"canary"}},
		{Name: "cookie repeated across lines", Cfg: Cond(C("cookie", "tier", "equal", "gold")), Headers: h("cookie", "tier=gold", "cookie", "tier=free"), Want: None},
		{Name: "quoted cookie", Cfg: Cond(C("cookie", "tier", "equal", "gold")), Headers: h("cookie", `tier="gold"`), Want: Canary, Targets: []string{"canary"}},
		{Name: "query name percent-decoded", Cfg: Cond(C("query", "group", "equal", "beta testers")), Path: "/x?gr%6Fup=beta+testers", Want: Canary, Targets: []string{"canary"}},
		{Name: "query repeated", Cfg: Cond(C("query", "group", "equal", "beta")), Path: "/x?group=beta&group=x", Want: None},
		{Name: "query with semicolon dropped", Cfg: Cond(C("query", "group", "equal", "beta")), Path: "/x?group=beta;x=1", Want: None},

		// Ambiguous inputs (filters/httpreq's rule): read differently by some upstream,
		// they hold no condition, positive or negated.
		{Name: "cookie value Go skips beside the real one", Cfg: Cond(C("cookie", "tier", "equal", "gold")), Headers: h("cookie", `tier=x"1; tier=gold`), Want: None},
		{Name: "cookie spelled in upper case, not_equal", Cfg: Cond(C("cookie", "tier", "not_equal", "gold")), Headers: h("cookie", "TIER=gold"), Want: None},
		{Name: "cookie percent-encoded name, not_exists", Cfg: Cond(C("cookie", "tier", "not_exists", "")), Headers: h("cookie", "t%69er=gold"), Want: None},
		{Name: "cookie after a comma", Cfg: Cond(C("cookie", "tier", "not_equal", "gold")), Headers: h("cookie", "a=1, tier=gold"), Want: None},
		{Name: "cookie name with spaces, as Go reads it", Cfg: Cond(C("cookie", "tier", "equal", "gold")), Headers: h("cookie", "tier =gold"), Want: Canary, Targets: []string{"canary"}},
		{Name: "query invalid escape beside the real one", Cfg: Cond(C("query", "group", "equal", "beta")), Path: "/x?group=x%zz&group=beta", Want: None},
		{Name: "query bare percent, not_equal", Cfg: Cond(C("query", "group", "not_equal", "beta")), Path: "/x?group=%&group=dev", Want: None},
		{Name: "query other case, not_equal", Cfg: Cond(C("query", "group", "not_equal", "beta")), Path: "/x?Group=beta", Want: None},
		{Name: "query double-encoded name, not_exists", Cfg: Cond(C("query", "group", "not_exists", "")), Path: "/x?%2567roup=beta", Want: None},
		{Name: "query structured name beside the real one", Cfg: Cond(C("query", "group", "equal", "beta")), Path: "/x?group=beta&group[]=x", Want: None},
		{Name: "query structured name, not_exists", Cfg: Cond(C("query", "group", "not_exists", "")), Path: "/x?group%5Bk%5D=beta", Want: None},
		{Name: "query bracketed name, not_equal", Cfg: Cond(C("query", "group", "not_equal", "beta")), Path: "/x?[group]=beta", Want: None},
		{Name: "query leading space, not_exists", Cfg: Cond(C("query", "group", "not_exists", "")), Path: "/x?%20group=beta", Want: None},
		{Name: "query value not UTF-8, not_equal", Cfg: Cond(C("query", "group", "not_equal", "beta")), Path: "/x?group=beta%FF", Want: None},
		{Name: "query trailing space is another name", Cfg: Cond(C("query", "group", "equal", "beta")), Path: "/x?group%20=x&group+=y&group=beta", Want: Canary, Targets: []string{"canary"}},
		{Name: "query trailing space alone, not_exists", Cfg: Cond(C("query", "group", "not_exists", "")), Path: "/x?group%09=beta", Want: Canary, Targets: []string{"canary"}},
		{Name: "header underscore spelling, not_equal", Cfg: Cond(C("header", "x-env", "not_equal", "prod")), Headers: h("x_env", "prod"), Want: None},

		// AND/OR groups.
		{Name: "group: method and first group", Cfg: GroupCfg, Headers: h("x-tier", "gold", "cookie", "region=eu"), Want: Canary, Targets: []string{"canary"}},
		{Name: "group: second group", Cfg: GroupCfg, Path: "/?canary", Want: Canary, Targets: []string{"canary"}},
		{Name: "group: first group half", Cfg: GroupCfg, Headers: h("x-tier", "gold", "cookie", "region=us"), Want: None},
		{Name: "group: method fails", Cfg: GroupCfg, Method: "POST", Path: "/?canary=1", Want: None},

		// Rule order.
		{Name: "first match wins", Cfg: OrderCfg("first"), Path: "/api/x", Headers: h("x-group", "beta"), Want: Beta, Targets: []string{"beta"}},
		{Name: "second rule", Cfg: OrderCfg("first"), Path: "/api/x", Want: Canary, Targets: []string{"canary"}},
		{Name: "catch-all", Cfg: OrderCfg("first"), Path: "/web", Want: Stable, Targets: []string{"stable"}},
		{Name: "mode all: later rule wins a header", Cfg: OrderCfg("all"), Path: "/api/x", Headers: h("x-group", "beta"),
			Want: map[string]string{"x-route-hint": "stable", "x-version": "v2", "x-beta": "1"}, Targets: []string{"beta", "canary", "stable"}},

		// Spoofing: client hint headers go, whatever their spelling.
		{Name: "spoofed hints removed", Cfg: Cond(C("header", "x-user", "equal", "alice")),
			Headers: h("x-route-hint", "canary", "X-Version", "v2", "x_route_hint", "canary", "x-beta", "1"), Want: None},
		{Name: "spoofed hint replaced", Cfg: OrderCfg("first"), Path: "/web", Headers: h("x-route-hint", "canary", "x-version", "v9"), Want: Stable, Targets: []string{"stable"}},
		{Name: "trusted hint kept and matched", Cfg: TrustedCfg, Headers: h("x-version", "v3", "x-route-hint", "canary"),
			Want: map[string]string{"x-route-hint": "beta", "x-version": "v3", "x-beta": "1"}, Targets: []string{"beta"}},
		{Name: "trusted hint's underscore spelling removed", Cfg: TrustedCfg, Headers: h("x_version", "v3"), Want: None},

		// Overrides.
		{Name: "override accepted", Cfg: OverrideCfg, Headers: h("x-canary-override", "canary", "x-consumer-group", "testers"), Want: Canary, Targets: []string{"canary"}},
		{Name: "override by cookie", Cfg: OverrideCfg, Headers: h("cookie", "canary_override=beta", "x-consumer-group", "testers"), Want: Beta, Targets: []string{"beta"}},
		{Name: "override header wins over cookie", Cfg: OverrideCfg, Headers: h("cookie", "canary_override=beta", "x-canary-override", "canary", "x-consumer-group", "testers"), Want: Canary, Targets: []string{"canary"}},
		{Name: "override to a target not allowed", Cfg: OverrideCfg, Headers: h("x-canary-override", "stable2", "x-consumer-group", "testers"), Want: Stable, Targets: []string{"stable"}},
		{Name: "override to plain not allowed", Cfg: OverrideCfg, Headers: h("x-canary-override", "plain", "x-consumer-group", "testers"), Want: Stable, Targets: []string{"stable"}},
		{Name: "override outside its condition", Cfg: OverrideCfg, Headers: h("x-canary-override", "canary"), Want: Stable, Targets: []string{"stable"}},
		{Name: "override repeated and differing", Cfg: OverrideCfg, Headers: h("x-canary-override", "canary", "x-canary-override", "beta", "x-consumer-group", "testers"), Want: Stable, Targets: []string{"stable"}},
	}
}
