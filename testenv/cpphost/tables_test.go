package cpphost

// The filters' decision tables (beyond their README examples) on proxy-wasm-cpp-host:
// each table's rows as one scenario, the plugin reconfigured (Step.Reconfigure, as an
// xDS update does) whenever the next rows need another configuration, run through the
// per-filter module and through the bundle meshplug.wasm (the filter selected by its
// root id in the bundle's VM).

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshplug/meshplug/filters/routehint/routehinttest"
)

// modules are the two builds a filter ships in: its own module (root id and vm_id the
// filter's name) and the bundle (root id the filter's name, one VM "meshplug").
func modules(t *testing.T, filter string) []Plugin {
	return []Plugin{
		{Name: filter, RootID: filter, VMID: filter, Wasm: BuildGuest(t, "../../filters/"+filter)},
		{Name: filter, RootID: filter, VMID: "meshplug", Wasm: BuildGuest(t, "../../filters/meshplug")},
	}
}

// moduleName names a subtest after the plugin's module.
func moduleName(p Plugin) string {
	if p.VMID == "meshplug" {
		return "meshplug.wasm"
	}
	return p.Name + ".wasm"
}

// tableScenario turns rows (a configuration and a step each) into one scenario: the
// first row's configuration starts the plugin, a Reconfigure step precedes each row
// whose configuration differs from the one before it.
func tableScenario(p Plugin, configs []string, steps []Step) Scenario {
	sc := Scenario{}
	p.Config = configs[0]
	sc.Plugins = []Plugin{p}
	for i, st := range steps {
		if i > 0 && configs[i] != configs[i-1] {
			sc.Steps = append(sc.Steps, Step{Reconfigure: &Reconfigure{Config: configs[i]}})
		}
		sc.Steps = append(sc.Steps, st)
	}
	return sc
}

// TestRoutehintDecisionTable: routehint's decision table (routehinttest.DecisionTable,
// the rows filters/routehint's TestDecisionTable drives natively and on testenv: every
// operator holding and not, repeated and ambiguous inputs, AND/OR groups, rule order
// and mode all, spoofed and trusted hints, overrides), with the echo header.
func TestRoutehintDecisionTable(t *testing.T) {
	table := routehinttest.DecisionTable()
	var configs []string
	var steps []Step
	for _, tc := range table {
		cfg := map[string]any{"echo_header": "x-route-target"}
		for k, v := range tc.Cfg {
			cfg[k] = v
		}
		b, err := json.Marshal(cfg)
		require.NoError(t, err)
		configs = append(configs, string(b))
		st := get(tc.Path, tc.Headers...)
		if st.Request.Path == "" {
			st.Request.Path = "/"
		}
		st.Request.Method = tc.Method
		steps = append(steps, st)
	}
	for _, p := range modules(t, "routehint") {
		t.Run(moduleName(p), func(t *testing.T) {
			sc := tableScenario(p, configs, steps)
			want := RunTestenv(t, sc)
			require.True(t, want.Loaded(), "testenv loads: %+v", want.Loads)
			for _, ok := range want.Reconfigures {
				require.True(t, ok, "every configuration of the table is taken")
			}
			// The scenario does what the table says (on testenv; the hosts are
			// compared with it below).
			require.Len(t, want.Results, len(table))
			for i, tc := range table {
				r := want.Results[i]
				require.NotNil(t, r.Upstream, "%s: status %d", tc.Name, r.Status)
				assert.Equal(t, tc.Want, hintsOf(r.Upstream.Headers), "%s: hints upstream", tc.Name)
				echo := strings.Join(tc.Targets, ",")
				if echo == "" {
					echo = "-"
				}
				assert.Contains(t, r.Headers, [2]string{"x-route-target", echo}, "%s: echo header", tc.Name)
			}
			differential(t, sc)
		})
	}
}

// hintsOf picks routehinttest.HintNames out of a header list.
func hintsOf(h [][2]string) map[string]string {
	out := map[string]string{}
	for _, kv := range h {
		for _, n := range routehinttest.HintNames {
			if kv[0] == n {
				out[n] = kv[1]
			}
		}
	}
	return out
}
