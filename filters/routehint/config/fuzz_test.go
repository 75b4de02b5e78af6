package config_test

import (
	"errors"
	"testing"

	"github.com/meshplug/meshplug/filters/configjson"
	"github.com/meshplug/meshplug/filters/routehint/config"
)

// FuzzParse: any input either compiles into a consistent Config or fails with field
// errors; never a panic.
func FuzzParse(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte(`{"targets": [{"name": "a"}], "rules": [{"name": "r", "split": {"weights": [{"target": "a", "weight": 100}]}}]}`))
	f.Add([]byte(`{"targets": [{"name": "a", "headers": {"x_h": "1"}}], "trusted_headers": ["X_H"], "override": {"cookie": "c", "allowed": ["a"]}}`))
	f.Add([]byte(`{"targets": [], "rules": [{"name": "r", "match": {"any": [{"all": [{"from": "query", "name": "q", "op": "regex", "value": "(a"}]}]}}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := config.Parse(data)
		if err != nil {
			var fe *configjson.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %T is not a field error: %v", err, err)
			}
			return
		}
		if len(cfg.Targets) == 0 {
			t.Fatal("compiled without targets")
		}
		for _, r := range cfg.Rules {
			if (r.Target == nil) == (r.Split == nil) {
				t.Fatalf("rule %s: exactly one of target and split", r.Name)
			}
			if sp := r.Split; sp != nil {
				if len(sp.Bounds) == 0 || sp.Bounds[len(sp.Bounds)-1] != config.Buckets || len(sp.Bounds) != len(sp.Targets) {
					t.Fatalf("rule %s: bounds %v", r.Name, sp.Bounds)
				}
				for i := 1; i < len(sp.Bounds); i++ {
					if sp.Bounds[i] < sp.Bounds[i-1] {
						t.Fatalf("rule %s: bounds %v not sorted", r.Name, sp.Bounds)
					}
				}
			}
		}
		for name := range cfg.Trusted {
			if _, hint := cfg.Hints[config.Normalize(name)]; !hint {
				t.Fatalf("trusted %q is not a hint", name)
			}
		}
	})
}
