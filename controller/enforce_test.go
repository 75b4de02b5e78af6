package controller

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	extensions "istio.io/client-go/pkg/apis/extensions/v1alpha1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshplug/meshplug/api/v1alpha1"
	"github.com/meshplug/meshplug/envoyfilters"
	authconfig "github.com/meshplug/meshplug/filters/auth/config"
)

// apiKeysAuth is an auth section accepting n API keys on every path, fail closed
// outside its rules (no default_rule).
func apiKeysAuth(n int) string {
	var b strings.Builder
	b.WriteString("  auth:\n    api_keys:\n      keys:\n")
	for i := range n {
		fmt.Fprintf(&b, "      - {consumer: c%05d, sha256: %s}\n", i, authconfig.HashSecret("", fmt.Sprint("key-", i)))
	}
	b.WriteString("    rules:\n    - match: {prefix: /api/}\n      requires: [api_keys]\n")
	return b.String()
}

func getWasmPlugin(t *testing.T, ns, name string) *unstructured.Unstructured {
	t.Helper()
	var w unstructured.Unstructured
	w.SetGroupVersionKind(wasmPluginGVK)
	require.NoError(t, k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &w))
	return &w
}

// driftMetric reads meshplug_controller_drift_reverted_total{filter} from the
// controller's /metrics (0 when absent).
func driftMetric(t *testing.T, run *running, filter string) float64 {
	t.Helper()
	resp, err := http.Get(run.metricsURL + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^meshplug_controller_drift_reverted_total\{filter="` + filter + `"\} (\S+)$`).FindSubmatch(b)
	if m == nil {
		return 0
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	require.NoError(t, err)
	return v
}

// policyEvents are the events.k8s.io events regarding the policy ns/name with reason.
func policyEvents(t *testing.T, ns, name, reason string) []eventsv1.Event {
	t.Helper()
	var l eventsv1.EventList
	require.NoError(t, k8s.List(context.Background(), &l, client.InNamespace(ns)))
	var out []eventsv1.Event
	for _, e := range l.Items {
		if e.Regarding.Kind == v1alpha1.Kind && e.Regarding.Name == name && e.Reason == reason {
			out = append(out, e)
		}
	}
	return out
}

// occurrences counts what events stand for (a series counts its occurrences).
func occurrences(ev []eventsv1.Event) int {
	n := 0
	for _, e := range ev {
		if e.Series != nil {
			n += int(e.Series.Count)
		} else {
			n++
		}
	}
	return n
}

// TestDrift: another writer changes a managed auth WasmPlugin's spec, with every kind
// of write (an update as kubectl edit makes, a JSON merge patch, server-side apply by
// another field manager), adding `default_rule: {public: true}` (which would make
// every path outside the rules public) or changing a value. The controller puts the
// spec back exactly as rendered (added keys removed, values restored), owns it alone,
// and reports the drift: status.lastDrift and a Warning event DriftReverted on the
// policy naming the path and the other field manager, and the drift counter of
// /metrics.
func TestDrift(t *testing.T) {
	run := startController(t)
	ctx := context.Background()
	ns := namespace(t)
	require.NoError(t, k8s.Create(ctx, policy(t, ns, "drift", selector+apiKeysAuth(3))))
	condition(t, ns, "drift", Ready, metav1.ConditionTrue)
	rendered := getWasmPlugin(t, ns, "drift-auth")
	wantSpec, err := normalJSON(rendered.Object["spec"])
	require.NoError(t, err)

	addDefaultRule := func(w *unstructured.Unstructured) {
		require.NoError(t, unstructured.SetNestedMap(w.Object, map[string]any{"public": true}, "spec", "pluginConfig", "default_rule"))
	}
	for _, tc := range []struct {
		name    string
		manager string
		path    string
		// write changes the spec and returns the object as the write stored it.
		write func(t *testing.T, manager string) *unstructured.Unstructured
	}{
		{"update adds a key", "kubectl-edit", "spec.pluginConfig.default_rule (added)", func(t *testing.T, m string) *unstructured.Unstructured {
			w := getWasmPlugin(t, ns, "drift-auth")
			addDefaultRule(w)
			require.NoError(t, k8s.Update(ctx, w, client.FieldOwner(m)))
			return w
		}},
		{"merge patch adds a key", "patcher", "spec.pluginConfig.default_rule (added)", func(t *testing.T, m string) *unstructured.Unstructured {
			w := getWasmPlugin(t, ns, "drift-auth")
			orig := w.DeepCopy()
			addDefaultRule(w)
			require.NoError(t, k8s.Patch(ctx, w, client.MergeFrom(orig), client.FieldOwner(m)))
			return w
		}},
		{"server-side apply by another manager adds a key", "other-applier", "spec.pluginConfig.default_rule (added)", func(t *testing.T, m string) *unstructured.Unstructured {
			a := &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": "extensions.istio.io/v1alpha1", "kind": "WasmPlugin",
				"metadata": map[string]any{"name": "drift-auth", "namespace": ns},
				"spec":     map[string]any{"pluginConfig": map[string]any{"default_rule": map[string]any{"public": true}}},
			}}
			ac := client.ApplyConfigurationFromUnstructured(a)
			require.NoError(t, k8s.Apply(ctx, ac, client.FieldOwner(m)))
			return a
		}},
		{"update changes a value", "kubectl-edit", "spec.pluginConfig.rules (changed)", func(t *testing.T, m string) *unstructured.Unstructured {
			w := getWasmPlugin(t, ns, "drift-auth")
			require.NoError(t, unstructured.SetNestedSlice(w.Object, []any{map[string]any{"match": map[string]any{"prefix": "/"}, "public": true}}, "spec", "pluginConfig", "rules"))
			require.NoError(t, k8s.Update(ctx, w, client.FieldOwner(m)))
			return w
		}},
		{"update adds a top-level spec field", "kubectl-edit", "spec.vmConfig (added)", func(t *testing.T, m string) *unstructured.Unstructured {
			w := getWasmPlugin(t, ns, "drift-auth")
			require.NoError(t, unstructured.SetNestedSlice(w.Object, []any{map[string]any{"name": "X", "value": "1"}}, "spec", "vmConfig", "env"))
			require.NoError(t, k8s.Update(ctx, w, client.FieldOwner(m)))
			return w
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := driftMetric(t, run, "auth")
			events := occurrences(policyEvents(t, ns, "drift", ReasonDriftReverted))
			edited := tc.write(t, tc.manager)
			got, err := normalJSON(edited.Object["spec"])
			require.NoError(t, err)
			require.NotEqual(t, wantSpec, got, "the write changed the spec")

			var w *unstructured.Unstructured
			eventually(t, func() error {
				w = getWasmPlugin(t, ns, "drift-auth")
				got, err := normalJSON(w.Object["spec"])
				require.NoError(t, err)
				if d := diffPaths("spec", got, wantSpec); len(d) > 0 {
					return fmt.Errorf("spec still differs: %v", d)
				}
				return nil
			})
			for _, f := range w.GetManagedFields() {
				if f.Manager == FieldManager || f.FieldsV1 == nil {
					continue
				}
				assert.NotContains(t, f.FieldsV1.GetRawString(), `"f:pluginConfig"`, "%s still owns pluginConfig fields", f.Manager)
				assert.NotContains(t, f.FieldsV1.GetRawString(), `"f:default_rule"`)
			}
			eventually(t, func() error {
				if got := driftMetric(t, run, "auth"); got != before+1 {
					return fmt.Errorf("drift counter %v, want %v", got, before+1)
				}
				return nil
			})
			// The first drift's event names the object, the path and the manager;
			// client-go may fold later ones of the policy into an event series whose
			// note stays the first one's (their detail is in status.lastDrift).
			eventually(t, func() error {
				if n := occurrences(policyEvents(t, ns, "drift", ReasonDriftReverted)); n < min(events+1, 2) {
					return fmt.Errorf("%d DriftReverted occurrences, want at least %d", n, min(events+1, 2))
				}
				return nil
			})
			if events == 0 {
				ev := policyEvents(t, ns, "drift", ReasonDriftReverted)
				require.Len(t, ev, 1)
				assert.Equal(t, "Warning", ev[0].Type)
				assert.Contains(t, ev[0].Note, "WasmPlugin "+ns+"/drift-auth was changed outside the policy and put back to the rendered spec: "+tc.path)
				assert.Contains(t, ev[0].Note, "other field managers: "+tc.manager)
			}
			// Each drift's detail stays in the policy's status (consecutive cases differ
			// in path or manager).
			eventually(t, func() error {
				var p v1alpha1.TrafficPolicy
				require.NoError(t, k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "drift"}, &p))
				d := p.Status.LastDrift
				if d == nil || !strings.Contains(d.Message, tc.path) || !strings.Contains(d.Message, "other field managers: "+tc.manager) {
					return fmt.Errorf("status.lastDrift: %+v", d)
				}
				return nil
			})
			got2 := condition(t, ns, "drift", Ready, metav1.ConditionTrue)
			assert.Equal(t, metav1.ConditionFalse, meta.FindStatusCondition(got2.Status.Conditions, Conflict).Status)
		})
	}
	// A policy change is not drift.
	before := driftMetric(t, run, "auth")
	p := &v1alpha1.TrafficPolicy{}
	require.NoError(t, k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "drift"}, p))
	p.Spec.Auth = policy(t, ns, "drift", selector+apiKeysAuth(4)).Spec.Auth
	require.NoError(t, k8s.Update(ctx, p))
	condition(t, ns, "drift", Ready, metav1.ConditionTrue)
	eventually(t, func() error {
		keys, _, _ := unstructured.NestedSlice(getWasmPlugin(t, ns, "drift-auth").Object, "spec", "pluginConfig", "api_keys", "keys")
		if len(keys) != 4 {
			return fmt.Errorf("%d keys", len(keys))
		}
		return nil
	})
	assert.Equal(t, before, driftMetric(t, run, "auth"))
}

// waitNextSecond returns once the clock is past the second after t: creation
// timestamps have a resolution of one second.
func waitNextSecond(t metav1.Time) {
	for !time.Now().After(t.Add(time.Second)) {
		time.Sleep(50 * time.Millisecond)
	}
}

func conditionMessage(t *testing.T, ns, name, typ string, want metav1.ConditionStatus) string {
	t.Helper()
	return meta.FindStatusCondition(condition(t, ns, name, typ, want).Status.Conditions, typ).Message
}

// TestOverlappingPolicies: two policies of a namespace select the same workloads (the
// same or overlapping selectors, or a common targetRef) with a rateLimit section each.
// Whichever was created first wins, whatever the names: the newer one's rateLimit
// section is refused (no WasmPlugin; Conflict=True and Ready=False naming the older),
// its other sections applied; the older one is Ready and reports Conflict=True naming
// the newer. Deleting the winner lets the newer apply the section. Policies with
// different values for a label do not conflict.
func TestOverlappingPolicies(t *testing.T) {
	startController(t)
	ctx := context.Background()
	gw := "  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: edge}]\n"
	gw2 := "  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: edge2}, {group: gateway.networking.k8s.io, kind: Gateway, name: edge}]\n"
	narrower := "  selector: {matchLabels: {app: orders, tier: api}}\n"
	for _, tc := range []struct {
		name                 string
		first, second        string // policy names, in order of creation
		firstSpec, secondSpc string
	}{
		{"selector zeta first", "zeta", "alpha", selector + rateLimit, narrower + rateLimit + faults},
		{"selector alpha first", "alpha", "zeta", selector + rateLimit, narrower + rateLimit + faults},
		{"targetRefs", "zeta", "alpha", gw + rateLimit, gw2 + rateLimit + faults},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := namespace(t)
			first := policy(t, ns, tc.first, tc.firstSpec)
			require.NoError(t, k8s.Create(ctx, first))
			condition(t, ns, tc.first, Ready, metav1.ConditionTrue)
			waitNextSecond(first.CreationTimestamp)
			require.NoError(t, k8s.Create(ctx, policy(t, ns, tc.second, tc.secondSpc)))

			msg := conditionMessage(t, ns, tc.second, Conflict, metav1.ConditionTrue)
			assert.Contains(t, msg, "section rateLimit refused: the older TrafficPolicy "+ns+"/"+tc.first)
			p := condition(t, ns, tc.second, Ready, metav1.ConditionFalse)
			c := meta.FindStatusCondition(p.Status.Conditions, Ready)
			assert.Equal(t, ReasonOverlap, c.Reason)
			assert.Contains(t, c.Message, ns+"/"+tc.first)
			eventually(t, func() error {
				if msg := conditionMessage(t, ns, tc.first, Conflict, metav1.ConditionTrue); !strings.Contains(msg, "refused for it: "+ns+"/"+tc.second) {
					return fmt.Errorf("winner's Conflict: %s", msg)
				}
				return nil
			})
			condition(t, ns, tc.first, Ready, metav1.ConditionTrue)
			eventually(t, func() error {
				got := names(plugins(t, ns))
				if len(got) != 2 {
					return fmt.Errorf("objects %v", got)
				}
				return nil
			})
			assert.ElementsMatch(t, []string{tc.first + "-ratelimit", tc.second + "-fault"}, names(plugins(t, ns)),
				"the newer policy's fault section is applied, its rateLimit section is not")

			// The winner goes: the newer one takes the section.
			require.NoError(t, k8s.Delete(ctx, first))
			condition(t, ns, tc.second, Ready, metav1.ConditionTrue)
			assert.Equal(t, metav1.ConditionFalse, meta.FindStatusCondition(condition(t, ns, tc.second, Conflict, metav1.ConditionFalse).Status.Conditions, Conflict).Status)
			eventually(t, func() error {
				got := names(plugins(t, ns))
				if len(got) != 2 || plugins(t, ns)[tc.second+"-ratelimit"] == nil {
					return fmt.Errorf("objects %v", got)
				}
				return nil
			})
		})
	}
	t.Run("no overlap", func(t *testing.T) {
		ns := namespace(t)
		require.NoError(t, k8s.Create(ctx, policy(t, ns, "orders", selector+rateLimit)))
		require.NoError(t, k8s.Create(ctx, policy(t, ns, "payments", "  selector: {matchLabels: {app: payments}}\n"+rateLimit)))
		for _, n := range []string{"orders", "payments"} {
			condition(t, ns, n, Ready, metav1.ConditionTrue)
			condition(t, ns, n, Conflict, metav1.ConditionFalse)
		}
		assert.ElementsMatch(t, []string{"orders-ratelimit", "payments-ratelimit"}, names(plugins(t, ns)))
	})
	t.Run("an edit makes them overlap", func(t *testing.T) {
		ns := namespace(t)
		older := policy(t, ns, "older", "  selector: {matchLabels: {app: payments}}\n"+rateLimit)
		require.NoError(t, k8s.Create(ctx, older))
		condition(t, ns, "older", Ready, metav1.ConditionTrue)
		waitNextSecond(older.CreationTimestamp)
		require.NoError(t, k8s.Create(ctx, policy(t, ns, "newer", selector+rateLimit)))
		condition(t, ns, "newer", Ready, metav1.ConditionTrue)
		require.Contains(t, plugins(t, ns), "newer-ratelimit")
		// The older policy now selects the newer one's workloads: the newer is refused
		// and its object pruned.
		require.NoError(t, k8s.Get(ctx, client.ObjectKeyFromObject(older), older))
		older.Spec.Selector.MatchLabels = map[string]string{"app": "orders"}
		require.NoError(t, k8s.Update(ctx, older))
		condition(t, ns, "newer", Conflict, metav1.ConditionTrue)
		eventually(t, func() error {
			if _, ok := plugins(t, ns)["newer-ratelimit"]; ok {
				return fmt.Errorf("newer-ratelimit not pruned")
			}
			return nil
		})
		condition(t, ns, "older", Conflict, metav1.ConditionTrue)
	})
}

// TestRecreatedInvalidPolicyAdoptsKeptObjects: a policy is deleted and recreated with
// an invalid spec before its objects went (the controller missed the deletion, or the
// garbage collector had not run). The objects are kept, as for any invalid spec, and
// their controller reference now carries the new policy's UID, so a garbage collector
// does not delete them while the status says they are kept. When the spec is fixed
// they are applied.
func TestRecreatedInvalidPolicyAdoptsKeptObjects(t *testing.T) {
	startController(t)
	ctx := context.Background()
	ns := namespace(t)
	// The recreated, invalid policy first (once the controller has seen it, objects of
	// its name are not pruned as an absent policy's), then the objects its deleted
	// predecessor left.
	require.NoError(t, k8s.Create(ctx, policy(t, ns, "re", selector+invalidAuth+rateLimit)))
	got := condition(t, ns, "re", InvalidSpec, metav1.ConditionTrue)
	old := metav1.OwnerReference{APIVersion: v1alpha1.GroupVersion.String(), Kind: v1alpha1.Kind, Name: "re",
		UID: "00000000-0000-0000-0000-000000000002", Controller: ptr(true)}
	for _, f := range []string{"ratelimit", "fault"} {
		w := &extensions.WasmPlugin{ObjectMeta: metav1.ObjectMeta{Name: "re-" + f, Namespace: ns,
			Labels:          map[string]string{envoyfilters.LabelManagedBy: "meshplug", envoyfilters.LabelPolicy: "re", envoyfilters.LabelFilter: f},
			OwnerReferences: []metav1.OwnerReference{old}}}
		w.Spec.Url = "http://old.example/" + f + ".wasm"
		require.NoError(t, k8s.Create(ctx, w, client.FieldOwner(FieldManager)))
	}
	eventually(t, func() error {
		ws := plugins(t, ns)
		if len(ws) != 2 {
			return fmt.Errorf("objects: %v", names(ws))
		}
		for n, w := range ws {
			refs := w.OwnerReferences
			if len(refs) != 1 || refs[0].UID != got.UID || refs[0].Controller == nil || !*refs[0].Controller {
				return fmt.Errorf("%s owner references: %+v", n, refs)
			}
		}
		return nil
	})
	condition(t, ns, "re", InvalidSpec, metav1.ConditionTrue)
	ws := plugins(t, ns)
	require.Len(t, ws, 2)
	assert.Equal(t, "http://old.example/fault.wasm", ws["re-fault"].Spec.Url, "kept, not re-applied")

	// Fixed: applied; the fault section it no longer has is pruned.
	p := got
	p.Spec.Auth = nil
	require.NoError(t, k8s.Update(ctx, p))
	condition(t, ns, "re", Ready, metav1.ConditionTrue)
	eventually(t, func() error {
		ws := plugins(t, ns)
		if _, ok := ws["re-fault"]; ok || ws["re-ratelimit"] == nil || ws["re-ratelimit"].Spec.Url == "http://old.example/ratelimit.wasm" {
			return fmt.Errorf("objects: %v", names(ws))
		}
		return nil
	})
}

// renderedAuth is the auth WasmPlugin the controller would apply for a policy of n API
// keys, and its estimated stored size.
func renderedAuth(t *testing.T, run *running, ns, name string, n int) (*unstructured.Unstructured, int) {
	t.Helper()
	p := policy(t, ns, name, selector+apiKeysAuth(n)+faults)
	p.APIVersion, p.Kind = v1alpha1.GroupVersion.String(), v1alpha1.Kind
	p.UID = "00000000-0000-0000-0000-000000000000" // as long as a real one
	ws, err := envoyfilters.WasmPlugins(p, run.modules.RenderOptions(run.moduleURL))
	require.NoError(t, err)
	for _, w := range ws {
		if w.Name == name+"-auth" {
			u, _, _, err := prepare(p, w)
			require.NoError(t, err)
			size, err := storedSize(u)
			require.NoError(t, err)
			return u, size
		}
	}
	t.Fatal("no auth WasmPlugin")
	return nil, 0
}

// TestSizeLimit: a policy with many API keys (about 15k) renders an auth WasmPlugin
// too big to store. The controller refuses it up front (Ready=False, reason TooLarge,
// naming the object, its size and etcd's limit) and still applies the policy's other
// section. The largest policy under the ceiling is accepted by the real API server
// (the ceiling is not too tight to be useful), and an object a little over the
// ceiling plus its reserve, written directly, is refused by the API server
// ("request is too large": the ceiling is not too loose).
func TestSizeLimit(t *testing.T) {
	run := startController(t)
	ctx := context.Background()
	ns := namespace(t)
	// The largest key count whose auth WasmPlugin is under the ceiling: every key has
	// the same length, so the size is linear in the count.
	_, s1 := renderedAuth(t, run, ns, "fits", 1000)
	_, s2 := renderedAuth(t, run, ns, "fits", 2000)
	perKey := (s2 - s1) / 1000
	lo := 1000 + (MaxRenderedBytes-s1)/perKey
	_, s := renderedAuth(t, run, ns, "fits", lo)
	require.LessOrEqual(t, s, MaxRenderedBytes)
	_, s = renderedAuth(t, run, ns, "fits", lo+1)
	require.Greater(t, s, MaxRenderedBytes)
	t.Logf("ceiling %d bytes: %d API keys fit (%d bytes each)", MaxRenderedBytes, lo, perKey)

	require.NoError(t, k8s.Create(ctx, policy(t, ns, "fits", selector+apiKeysAuth(lo)+faults)))
	condition(t, ns, "fits", Ready, metav1.ConditionTrue)
	keys, _, _ := unstructured.NestedSlice(getWasmPlugin(t, ns, "fits-auth").Object, "spec", "pluginConfig", "api_keys", "keys")
	assert.Len(t, keys, lo)

	over := lo + 100
	require.NoError(t, k8s.Create(ctx, policy(t, ns, "over", "  selector: {matchLabels: {app: other}}\n"+apiKeysAuth(over)+faults)),
		"the policy itself is stored")
	p := condition(t, ns, "over", Ready, metav1.ConditionFalse)
	c := meta.FindStatusCondition(p.Status.Conditions, Ready)
	assert.Equal(t, ReasonTooLarge, c.Reason)
	assert.Contains(t, c.Message, "WasmPlugin "+ns+"/over-auth not applied")
	assert.Contains(t, c.Message, fmt.Sprintf("etcd's default request limit of %d bytes", EtcdRequestLimit))
	ws := plugins(t, ns)
	assert.Contains(t, ws, "over-fault", "the other section is applied")
	assert.NotContains(t, ws, "over-auth")

	// Past the reserve, the API server itself refuses the object.
	u, size := renderedAuth(t, run, ns, "direct", lo+sizeReserve/50)
	require.Greater(t, size, EtcdRequestLimit)
	err := k8s.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner("test-direct"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "too large")
}
