package engine_test

import (
	"testing"

	"github.com/meshplug/meshplug/filters/abi"
	"github.com/meshplug/meshplug/filters/routehint/config"
	"github.com/meshplug/meshplug/filters/routehint/engine"
)

var fuzzOps = []string{"equal", "not_equal", "prefix", "suffix", "contains", "in", "not_in", "regex", "exists", "not_exists"}

// FuzzMatcher reads arbitrary header maps and decides them without panicking, and
// checks the attacker-facing properties on one header condition of each operator:
// adding a copy of the input never makes a condition hold, no stripped hint header is
// visible to the rules, and the request's headers keep every non-hint entry.
func FuzzMatcher(f *testing.F) {
	f.Add([]byte(nil), "/a?b=c", "beta", "beta", "other", false)
	f.Add(abi.EncodePairs([]abi.Pair{{Key: "x-route-hint", Value: "canary"}, {Key: "cookie", Value: "a=1; b"}}), "/?%zz&q=%41", "A", "a", "A", true)
	f.Add([]byte{1, 0, 0, 0, 255, 255, 255, 255}, "", "", "", "", false)
	f.Fuzz(func(t *testing.T, raw []byte, path, operand, v1, v2 string, fold bool) {
		var r engine.Request
		var v engine.Verdict
		cfg := fuzzConfig(t, operand, fold)
		if cfg == nil {
			return
		}
		e := engine.New(cfg, func() uint64 { return 12345 })

		// Arbitrary map (possibly malformed): no panic, no hint visible.
		r.Read(cfg, abi.PairsView(raw))
		e.Decide(&r, &v)
		for _, h := range r.Headers {
			if _, hint := cfg.Hints[config.Normalize(h.Key)]; hint {
				t.Fatalf("hint header %q visible to the rules", h.Key)
			}
		}

		// Copy monotonicity, per operator.
		for i := range cfg.Rules {
			m := &cfg.Rules[i].Match
			holds := func(values ...string) bool {
				pairs := []abi.Pair{{Key: ":path", Value: path}}
				for _, val := range values {
					pairs = append(pairs, abi.Pair{Key: "x-in", Value: val})
				}
				r.Read(cfg, abi.PairsView(abi.EncodePairs(pairs)))
				return r.Matches(m)
			}
			if op := cfg.Rules[i].Match.All[0].Op; op != config.OpExists && op != config.OpNotExists {
				if holds(v1, v2) && (!holds(v1) || !holds(v2)) {
					t.Fatalf("%s %q: holds for [%q %q] but not for each alone", op, operand, v1, v2)
				}
			}
		}
	})
}

// fuzzConfig builds one rule per operator on header x-in with operand, or nil when the
// operand is not a valid config value (e.g. an invalid regex).
func fuzzConfig(t *testing.T, operand string, fold bool) *config.Config {
	s := &config.Spec{Targets: []config.TargetSpec{{Name: "a", Headers: map[string]string{"x-route-hint": "a"}}}, Mode: "all"}
	for _, op := range fuzzOps {
		c := config.ConditionSpec{From: "header", Name: "x-in", Op: op, IgnoreCase: fold && op != "regex" && op != "exists" && op != "not_exists"}
		switch op {
		case "in", "not_in":
			c.Values = []string{operand}
		case "exists", "not_exists":
		default:
			c.Value = operand
		}
		s.Rules = append(s.Rules, config.RuleSpec{Name: "r-" + fuzzName(op), Match: &config.MatchSpec{All: []config.ConditionSpec{c}}, Target: "a"})
	}
	cfg, err := config.Compile(s)
	if err != nil {
		return nil
	}
	return cfg
}

func fuzzName(op string) string {
	b := []byte(op)
	for i, c := range b {
		if c == '_' {
			b[i] = '-'
		}
	}
	return string(b)
}
