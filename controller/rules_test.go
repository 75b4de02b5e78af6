package controller

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/meshplug/meshplug/api/v1alpha1"
)

func TestOverlapping(t *testing.T) {
	sel := func(kv ...string) *v1alpha1.TrafficPolicySpec {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return &v1alpha1.TrafficPolicySpec{Selector: &v1alpha1.WorkloadSelector{MatchLabels: m}}
	}
	refs := func(names ...string) *v1alpha1.TrafficPolicySpec {
		s := &v1alpha1.TrafficPolicySpec{}
		for _, n := range names {
			s.TargetRefs = append(s.TargetRefs, v1alpha1.PolicyTargetReference{Group: "gateway.networking.k8s.io", Kind: "Gateway", Name: n})
		}
		return s
	}
	svc := &v1alpha1.TrafficPolicySpec{TargetRefs: []v1alpha1.PolicyTargetReference{{Kind: "Service", Name: "gw"}}}
	for _, tc := range []struct {
		name string
		a, b *v1alpha1.TrafficPolicySpec
		want bool
	}{
		{"same labels", sel("app", "orders"), sel("app", "orders"), true},
		{"subset", sel("app", "orders"), sel("app", "orders", "tier", "api"), true},
		{"disjoint keys", sel("app", "orders"), sel("tier", "api"), true},
		{"different value", sel("app", "orders"), sel("app", "payments"), false},
		{"one of several differs", sel("app", "orders", "tier", "api"), sel("app", "orders", "tier", "web"), false},
		{"same target", refs("gw"), refs("other", "gw"), true},
		{"other target", refs("gw"), refs("gw2"), false},
		{"same name, other kind", refs("gw"), svc, false},
		{"selector vs targetRefs", sel("app", "gw"), refs("gw"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, overlapping(tc.a, tc.b))
			assert.Equal(t, tc.want, overlapping(tc.b, tc.a), "symmetric")
		})
	}
}

func TestFindOverlaps(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	mk := func(name string, at time.Duration, spec string) v1alpha1.TrafficPolicy {
		p := policy(t, "ns", name, spec)
		p.UID = types.UID("uid-" + name)
		p.CreationTimestamp = metav1.NewTime(t0.Add(at))
		return *p
	}
	all := []v1alpha1.TrafficPolicy{
		mk("b-first", 0, selector+rateLimit+faults),
		mk("a-same-second", 0, selector+rateLimit),          // same time: the name decides
		mk("later", time.Second, selector+rateLimit+faults), // refused for both
		mk("other-app", 0, "  selector: {matchLabels: {app: payments}}\n"+rateLimit),
	}
	for _, tc := range []struct {
		policy    int
		refused   map[string]string
		overrides map[string][]string
	}{
		{0, map[string]string{"rateLimit": "a-same-second"}, map[string][]string{"rateLimit": {"later"}, "faults": {"later"}}},
		{1, map[string]string{}, map[string][]string{"rateLimit": {"b-first", "later"}}},
		{2, map[string]string{"rateLimit": "a-same-second", "faults": "b-first"}, map[string][]string{}},
		{3, map[string]string{}, map[string][]string{}},
	} {
		t.Run(all[tc.policy].Name, func(t *testing.T) {
			o := findOverlaps(&all[tc.policy], all)
			assert.Equal(t, tc.refused, o.refused)
			assert.Equal(t, tc.overrides, o.overrides)
		})
	}
	// Being deleted: out of the contest.
	gone := all[1]
	now := metav1.Now()
	gone.DeletionTimestamp = &now
	o := findOverlaps(&all[0], []v1alpha1.TrafficPolicy{all[0], gone, all[2]})
	assert.Empty(t, o.refused)
}

func TestDiffPaths(t *testing.T) {
	want := map[string]any{"pluginConfig": map[string]any{"rules": []any{"a"}, "x": 1.0}, "url": "u"}
	for _, tc := range []struct {
		name string
		got  any
		want []string
	}{
		{"equal", map[string]any{"pluginConfig": map[string]any{"rules": []any{"a"}, "x": 1.0}, "url": "u"}, nil},
		{"added", map[string]any{"pluginConfig": map[string]any{"rules": []any{"a"}, "x": 1.0, "default_rule": map[string]any{"public": true}}, "url": "u"},
			[]string{"spec.pluginConfig.default_rule (added)"}},
		{"changed and removed", map[string]any{"pluginConfig": map[string]any{"rules": []any{"a", "b"}}, "url": "u"},
			[]string{"spec.pluginConfig.rules (changed)", "spec.pluginConfig.x (removed)"}},
		{"type changed", map[string]any{"pluginConfig": "x", "url": "u"}, []string{"spec.pluginConfig (changed)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, diffPaths("spec", tc.got, want))
		})
	}
	many := map[string]any{}
	for i := range 30 {
		many[fmt.Sprintf("k%02d", i)] = i
	}
	got := diffPaths("spec", many, map[string]any{})
	require.Len(t, got, maxDiffPaths+1)
	assert.Equal(t, "... 10 more", got[maxDiffPaths])
}
