package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	extensions "istio.io/client-go/pkg/apis/extensions/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshplug/meshplug/api/v1alpha1"
	"github.com/meshplug/meshplug/envoyfilters"
	"github.com/meshplug/meshplug/internal/version"
)

// fakeModules stand in for the built filters: the controller only hashes and serves
// the bytes.
func fakeModules() *Modules {
	var ms []Module
	for _, sec := range v1alpha1.Sections {
		ms = append(ms, NewModule(sec.Filter, []byte("\x00asm\x01\x00\x00\x00 fake "+sec.Filter)))
	}
	return NewModules(ms...)
}

// running is one controller process for the package's tests, started on first use.
type running struct {
	modules             *Modules
	moduleURL, probeURL string
	metricsURL          string
}

var (
	ctrlOnce sync.Once
	ctrlRun  *running
	ctrlErr  error
	// ctrlStopped holds the error the manager stopped with (it should not stop).
	ctrlStopped atomic.Pointer[error]
	// stopController stops the controller (TestMain, before the API server).
	stopController = func() {}
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

// startController applies deploy/ and runs the controller as deploy/'s ServiceAccount
// (its generated RBAC), with leader election in meshplug-system, against the package's
// API server until the test binary exits.
func startController(t *testing.T) *running {
	t.Helper()
	needEnv(t)
	ctrlOnce.Do(func() {
		r := &running{modules: fakeModules()}
		modAddr, probeAddr, metricsAddr := freeAddr(t), freeAddr(t), freeAddr(t)
		r.moduleURL, r.probeURL, r.metricsURL = "http://"+modAddr, "http://"+probeAddr, "http://"+metricsAddr
		applyDeploy(t)
		mgr, err := NewManager(asServiceAccount(), Config{
			Modules: r.modules, ModuleAddr: modAddr, ModuleBaseURL: r.moduleURL,
			ProbeAddr: probeAddr, MetricsAddr: metricsAddr,
			LeaderElection: true, LeaderElectionNamespace: deployNamespace,
			// Long enough to keep leadership through TestAPIServerRestart's outage.
			LeaseDuration: 90 * time.Second, RenewDeadline: 60 * time.Second,
		})
		if err != nil {
			ctrlErr = err
			return
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			err := mgr.Start(ctx)
			if ctx.Err() == nil {
				ctrlStopped.Store(&err)
			}
			close(done)
		}()
		stopController = func() { cancel(); <-done }
		ctrlRun = r
	})
	require.NoError(t, ctrlErr)
	return ctrlRun
}

var nsSeq struct {
	sync.Mutex
	n int
}

// namespace creates a fresh namespace for one test.
func namespace(t *testing.T) string {
	t.Helper()
	nsSeq.Lock()
	nsSeq.n++
	name := fmt.Sprintf("t%d-%s", nsSeq.n, strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")))
	nsSeq.Unlock()
	if len(name) > 50 {
		name = name[:50]
	}
	name = strings.TrimRight(name, "-_")
	name = strings.ReplaceAll(name, "_", "-")
	require.NoError(t, k8s.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}))
	return name
}

// policy decodes a TrafficPolicy named name in ns with the given spec YAML (indented
// under spec:).
func policy(t *testing.T, ns, name, spec string) *v1alpha1.TrafficPolicy {
	t.Helper()
	p, err := v1alpha1.Decode([]byte(fmt.Sprintf("apiVersion: meshplug.io/v1alpha1\nkind: TrafficPolicy\nmetadata: {name: %s, namespace: %s}\nspec:\n%s", name, ns, spec)))
	require.NoError(t, err)
	return p
}

const (
	selector  = "  selector: {matchLabels: {app: orders}}\n"
	rateLimit = `  rateLimit:
    rules:
    - name: per-consumer
      descriptors: [{key: consumer, header: x-consumer}]
      limit: {requests: 100, unit: minute}
`
	faults = `  faults:
    faults:
    - name: chaos-header
      abort: {header_abort: {}, percentage: {numerator: 100}}
`
	// An auth rule requiring a provider that is not defined: the CRD accepts it, the
	// auth filter's Compile refuses it.
	invalidAuth = `  auth:
    rules:
    - match: {prefix: /}
      requires: [nobody]
`
)

// eventually polls f every 50 ms until it returns nil, for at most 60 s, and fails
// with its last error. (The bound is a safety net for a stuck controller, not a
// performance assertion.)
func eventually(t *testing.T, f func() error) {
	t.Helper()
	var err error
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if stopped := ctrlStopped.Load(); stopped != nil {
			require.FailNow(t, "the controller stopped", "%v", *stopped)
		}
		if err = f(); err == nil {
			return
		}
	}
	require.NoError(t, err, "did not converge")
}

func plugins(t *testing.T, ns string) map[string]*extensions.WasmPlugin {
	t.Helper()
	var l extensions.WasmPluginList
	require.NoError(t, k8s.List(context.Background(), &l, client.InNamespace(ns)))
	out := map[string]*extensions.WasmPlugin{}
	for _, w := range l.Items {
		out[w.Name] = w
	}
	return out
}

func names(m map[string]*extensions.WasmPlugin) []string {
	var out []string
	for n := range m {
		out = append(out, n)
	}
	return out
}

// condition waits until the policy's status describes its current generation and has
// condition typ with status want, and returns the policy.
func condition(t *testing.T, ns, name, typ string, want metav1.ConditionStatus) *v1alpha1.TrafficPolicy {
	t.Helper()
	var p v1alpha1.TrafficPolicy
	eventually(t, func() error {
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &p); err != nil {
			return err
		}
		if p.Status.ObservedGeneration != p.Generation {
			return fmt.Errorf("observedGeneration %d, generation %d", p.Status.ObservedGeneration, p.Generation)
		}
		c := meta.FindStatusCondition(p.Status.Conditions, typ)
		if c == nil || c.Status != want {
			return fmt.Errorf("condition %s is %+v, want %s", typ, c, want)
		}
		return nil
	})
	return &p
}

func TestLifecycle(t *testing.T) {
	run := startController(t)
	ctx := context.Background()
	ns := namespace(t)
	p := policy(t, ns, "orders", selector+rateLimit+faults)
	require.NoError(t, k8s.Create(ctx, p))

	got := condition(t, ns, "orders", Ready, metav1.ConditionTrue)
	assert.Equal(t, int64(1), got.Status.ObservedGeneration)
	ws := plugins(t, ns)
	require.ElementsMatch(t, []string{"orders-ratelimit", "orders-fault"}, names(ws))
	for _, w := range ws {
		assert.Equal(t, "meshplug", w.Labels[envoyfilters.LabelManagedBy])
		assert.Equal(t, "orders", w.Labels[envoyfilters.LabelPolicy])
		ref := metav1.GetControllerOf(w)
		require.NotNil(t, ref, w.Name)
		assert.Equal(t, got.UID, ref.UID)
		m, ok := run.modules.Get(w.Labels[envoyfilters.LabelFilter])
		require.True(t, ok)
		assert.Equal(t, m.SHA256, w.Spec.Sha256)
		assert.Equal(t, run.moduleURL+"/modules/"+m.SHA256+".wasm", w.Spec.Url)
		assert.Equal(t, "orders", w.Spec.Selector.MatchLabels["app"])
	}

	// Update: drop faults, change the limit.
	require.NoError(t, k8s.Get(ctx, client.ObjectKeyFromObject(p), p))
	p.Spec.Faults = nil
	p.Spec.RateLimit.Rules[0].Limit.Requests = 7
	require.NoError(t, k8s.Update(ctx, p))
	eventually(t, func() error {
		ws := plugins(t, ns)
		if _, ok := ws["orders-fault"]; ok {
			return fmt.Errorf("orders-fault not pruned")
		}
		w, ok := ws["orders-ratelimit"]
		if !ok {
			return fmt.Errorf("orders-ratelimit missing")
		}
		rules := w.Spec.PluginConfig.GetFields()["rules"].GetListValue().GetValues()
		if len(rules) != 1 || rules[0].GetStructValue().GetFields()["limit"].GetStructValue().GetFields()["requests"].GetNumberValue() != 7 {
			return fmt.Errorf("pluginConfig not updated: %v", w.Spec.PluginConfig)
		}
		return nil
	})
	got = condition(t, ns, "orders", Ready, metav1.ConditionTrue)
	assert.Equal(t, int64(2), got.Status.ObservedGeneration)

	// Delete: the objects go (pruned by the controller; envtest runs no garbage
	// collector).
	require.NoError(t, k8s.Delete(ctx, p))
	eventually(t, func() error {
		if ws := plugins(t, ns); len(ws) > 0 {
			return fmt.Errorf("left: %v", names(ws))
		}
		return nil
	})
}

func TestInvalidSpec(t *testing.T) {
	startController(t)
	ctx := context.Background()
	ns := namespace(t)
	p := policy(t, ns, "bad", selector+invalidAuth+rateLimit)
	require.NoError(t, k8s.Create(ctx, p), "the CRD accepts what only the filter's Compile refuses")

	got := condition(t, ns, "bad", InvalidSpec, metav1.ConditionTrue)
	c := meta.FindStatusCondition(got.Status.Conditions, InvalidSpec)
	assert.Contains(t, c.Message, "spec.auth.rules[0].requires")
	assert.Equal(t, metav1.ConditionFalse, meta.FindStatusCondition(got.Status.Conditions, Ready).Status)
	assert.Empty(t, plugins(t, ns), "nothing is applied for an invalid spec")

	// Fixed: applied.
	p = got
	p.Spec.Auth = nil
	require.NoError(t, k8s.Update(ctx, p))
	got = condition(t, ns, "bad", Ready, metav1.ConditionTrue)
	assert.Equal(t, metav1.ConditionFalse, meta.FindStatusCondition(got.Status.Conditions, InvalidSpec).Status)
	assert.ElementsMatch(t, []string{"bad-ratelimit"}, names(plugins(t, ns)))

	// Broken again: the objects of the last valid spec stay.
	p = got
	q := policy(t, ns, "bad", selector+invalidAuth+rateLimit)
	p.Spec = q.Spec
	require.NoError(t, k8s.Update(ctx, p))
	condition(t, ns, "bad", InvalidSpec, metav1.ConditionTrue)
	assert.ElementsMatch(t, []string{"bad-ratelimit"}, names(plugins(t, ns)))
}

func TestForeignObject(t *testing.T) {
	startController(t)
	ctx := context.Background()
	ns := namespace(t)
	foreign := &extensions.WasmPlugin{ObjectMeta: metav1.ObjectMeta{Name: "shop-ratelimit", Namespace: ns,
		Labels: map[string]string{"team": "other"}}}
	foreign.Spec.Url = "oci://registry.example.com/theirs:1"
	require.NoError(t, k8s.Create(ctx, foreign))
	before := foreign.ResourceVersion

	require.NoError(t, k8s.Create(ctx, policy(t, ns, "shop", selector+rateLimit+faults)))
	got := condition(t, ns, "shop", Conflict, metav1.ConditionTrue)
	c := meta.FindStatusCondition(got.Status.Conditions, Conflict)
	assert.Contains(t, c.Message, "WasmPlugin "+ns+"/shop-ratelimit exists and is not owned by this policy")
	assert.Contains(t, c.Message, "field managers: test")
	assert.Equal(t, metav1.ConditionFalse, meta.FindStatusCondition(got.Status.Conditions, Ready).Status)

	ws := plugins(t, ns)
	require.Contains(t, ws, "shop-fault", "the sections without a conflict are applied")
	f := ws["shop-ratelimit"]
	assert.Equal(t, before, f.ResourceVersion, "the foreign object is untouched")
	assert.Equal(t, "oci://registry.example.com/theirs:1", f.Spec.Url)
	assert.Nil(t, metav1.GetControllerOf(f))

	// The owner removes theirs: the policy takes the name.
	require.NoError(t, k8s.Delete(ctx, f))
	got = condition(t, ns, "shop", Ready, metav1.ConditionTrue)
	assert.Equal(t, metav1.ConditionFalse, meta.FindStatusCondition(got.Status.Conditions, Conflict).Status)
	assert.NotNil(t, metav1.GetControllerOf(plugins(t, ns)["shop-ratelimit"]))
}

// TestOtherFieldManager: someone edits a field the controller applies (kubectl edit
// style update, field manager "intruder"); the controller takes it back (forced apply:
// the policy is the source of truth for the objects it owns) and owns the field again.
func TestOtherFieldManager(t *testing.T) {
	startController(t)
	ctx := context.Background()
	ns := namespace(t)
	require.NoError(t, k8s.Create(ctx, policy(t, ns, "edit", selector+faults)))
	condition(t, ns, "edit", Ready, metav1.ConditionTrue)

	var w unstructured.Unstructured
	w.SetGroupVersionKind(wasmPluginGVK)
	require.NoError(t, k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "edit-fault"}, &w))
	want, _, _ := unstructured.NestedString(w.Object, "spec", "sha256")
	require.NoError(t, unstructured.SetNestedField(w.Object, strings.Repeat("0", 64), "spec", "sha256"))
	require.NoError(t, k8s.Update(ctx, &w, client.FieldOwner("intruder")))
	edited := w.GetResourceVersion()

	eventually(t, func() error {
		require.NoError(t, k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "edit-fault"}, &w))
		if got, _, _ := unstructured.NestedString(w.Object, "spec", "sha256"); got != want {
			return fmt.Errorf("sha256 is %s", got)
		}
		return nil
	})
	assert.NotEqual(t, edited, w.GetResourceVersion())
	owner := ""
	for _, f := range w.GetManagedFields() {
		if f.FieldsV1 != nil && strings.Contains(f.FieldsV1.GetRawString(), `"f:sha256"`) {
			owner += f.Manager + " "
		}
	}
	assert.Equal(t, "meshplug ", owner, "spec.sha256 is owned by meshplug alone again")
}

// appSelector selects app: app-<i>: policies that do not overlap.
func appSelector(i int) string {
	return fmt.Sprintf("  selector: {matchLabels: {app: app-%03d}}\n", i)
}

// TestManyPolicies: 100 policies (two sections each, selecting different workloads) converge to 200 WasmPlugins and
// Ready; the time is logged (docs/controller.md).
func TestManyPolicies(t *testing.T) {
	startController(t)
	ctx := context.Background()
	ns := namespace(t)
	const n = 100
	start := time.Now()
	for i := range n {
		require.NoError(t, k8s.Create(ctx, policy(t, ns, fmt.Sprintf("p%03d", i), appSelector(i)+rateLimit+faults)))
	}
	eventually(t, func() error {
		var l v1alpha1.TrafficPolicyList
		require.NoError(t, k8s.List(ctx, &l, client.InNamespace(ns)))
		ready := 0
		for _, p := range l.Items {
			if c := meta.FindStatusCondition(p.Status.Conditions, Ready); c != nil && c.Status == metav1.ConditionTrue && p.Status.ObservedGeneration == p.Generation {
				ready++
			}
		}
		if ready != n {
			return fmt.Errorf("%d of %d ready", ready, n)
		}
		return nil
	})
	t.Logf("%d policies created and Ready in %v", n, time.Since(start))
	assert.Len(t, plugins(t, ns), 2*n)
}

// TestStrictFieldValidation: every object the controller renders is accepted by the
// real API server's schema with strict field validation (dry run), and the check can
// fail: an unknown field is refused.
func TestStrictFieldValidation(t *testing.T) {
	run := startController(t)
	ctx := context.Background()
	ns := namespace(t)
	p := policy(t, ns, "strict", selector+rateLimit+faults)
	p.Spec.Auth = policy(t, ns, "x", selector+`  auth:
    providers:
      corp:
        issuer: https://idp.example.com
        algorithms: [RS256]
        remote_jwks: {http_uri: {uri: "https://idp.example.com/jwks", cluster: "outbound|443||idp.example.com", timeout: 2s}}
    rules:
    - match: {prefix: /}
      requires: [corp]
`).Spec.Auth
	require.NoError(t, k8s.Create(ctx, p, client.FieldValidation(metav1.FieldValidationStrict)))
	p.APIVersion, p.Kind = v1alpha1.GroupVersion.String(), v1alpha1.Kind
	ws, err := envoyfilters.WasmPlugins(p, run.modules.RenderOptions(run.moduleURL))
	require.NoError(t, err)
	require.Len(t, ws, 3)
	for _, w := range ws {
		u, err := toUnstructured(w)
		require.NoError(t, err)
		assert.NoError(t, k8s.Create(ctx, u, client.DryRunAll, client.FieldValidation(metav1.FieldValidationStrict)), w.Name)
		require.NoError(t, unstructured.SetNestedField(u.Object, "x", "spec", "notAField"))
		err = k8s.Create(ctx, u, client.DryRunAll, client.FieldValidation(metav1.FieldValidationStrict))
		assert.ErrorContains(t, err, `unknown field "spec.notAField"`)
		// The controller's own write, server-side apply, refuses unknown fields too.
		a, err := toUnstructured(w)
		require.NoError(t, err)
		require.NoError(t, unstructured.SetNestedField(a.Object, "x", "spec", "notAField"))
		err = k8s.Apply(ctx, client.ApplyConfigurationFromUnstructured(a), client.DryRunAll, client.FieldOwner(FieldManager))
		assert.ErrorContains(t, err, "notAField")
	}
	condition(t, ns, "strict", Ready, metav1.ConditionTrue)
}

// TestModuleServer: every WasmPlugin's url serves bytes whose sha256 is the one the
// WasmPlugin carries.
func TestModuleServer(t *testing.T) {
	startController(t)
	ctx := context.Background()
	ns := namespace(t)
	require.NoError(t, k8s.Create(ctx, policy(t, ns, "mods", selector+rateLimit+faults)))
	condition(t, ns, "mods", Ready, metav1.ConditionTrue)
	for _, w := range plugins(t, ns) {
		resp, err := http.Get(w.Spec.Url)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, "application/wasm", resp.Header.Get("Content-Type"))
		sum := sha256.Sum256(body)
		assert.Equal(t, w.Spec.Sha256, hex.EncodeToString(sum[:]), w.Name)
	}
}

func TestHealthAndMetrics(t *testing.T) {
	run := startController(t)
	startReconciled(t)
	for _, u := range []string{run.probeURL + "/healthz", run.probeURL + "/readyz", run.metricsURL + "/metrics"} {
		var body string
		eventually(t, func() error {
			resp, err := http.Get(u)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			body = string(b)
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("%s: %s", u, resp.Status)
			}
			return nil
		})
		if strings.HasSuffix(u, "/metrics") {
			assert.Contains(t, body, `controller_runtime_reconcile_total{controller="trafficpolicy",result="success"}`)
			assert.Contains(t, body, `leader_election_master_status{name="meshplug-controller"} 1`)
			in := version.Get()
			assert.Contains(t, body, fmt.Sprintf(`meshplug_build_info{commit=%q,go_version=%q,version=%q} 1`, in.Commit, in.GoVersion, in.Version))
		}
	}
}

// startReconciled makes sure the controller has reconciled at least one policy.
func startReconciled(t *testing.T) {
	t.Helper()
	ns := namespace(t)
	require.NoError(t, k8s.Create(context.Background(), policy(t, ns, "one", selector+faults)))
	condition(t, ns, "one", Ready, metav1.ConditionTrue)
}

// TestAPIServerRestart stops the API server right after a policy is created (the
// controller is mid-reconcile or about to be), starts it again, and expects the
// controller to converge: the policy Ready and its objects present; then a policy
// created after the restart converges too.
func TestAPIServerRestart(t *testing.T) {
	startController(t)
	ctx := context.Background()
	ns := namespace(t)
	startReconciled(t)
	require.NoError(t, k8s.Create(ctx, policy(t, ns, "before", selector+rateLimit+faults)))
	apiServer := testEnv.ControlPlane.APIServer
	// SIGTERM, then SIGKILL after ControlPlaneStopTimeout (reported as an error).
	if err := apiServer.Stop(); err != nil {
		require.ErrorContains(t, err, "timeout waiting for process kube-apiserver to stop")
	}
	addr := apiServer.SecureServing.ListenAddr.HostPort()
	eventually(t, func() error { // the killed process has released the port
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return nil
		}
		c.Close()
		return fmt.Errorf("%s still accepts connections", addr)
	})
	require.NoError(t, apiServer.Start())
	condition(t, ns, "before", Ready, metav1.ConditionTrue)
	require.NoError(t, k8s.Create(ctx, policy(t, ns, "after", appSelector(1)+rateLimit)))
	condition(t, ns, "after", Ready, metav1.ConditionTrue)
	assert.ElementsMatch(t, []string{"before-ratelimit", "before-fault", "after-ratelimit"}, names(plugins(t, ns)))
}

// TestPreviousIncarnation: a WasmPlugin left by a deleted policy of the same name (its
// controller reference has another UID; envtest runs no garbage collector, and in a
// cluster the collector may not have run yet) is taken over, not reported as a
// conflict, and one the new policy does not render is pruned.
func TestPreviousIncarnation(t *testing.T) {
	startController(t)
	ctx := context.Background()
	ns := namespace(t)
	old := metav1.OwnerReference{APIVersion: v1alpha1.GroupVersion.String(), Kind: v1alpha1.Kind, Name: "re",
		UID: "00000000-0000-0000-0000-000000000001", Controller: ptr(true)}
	for _, f := range []string{"fault", "auth"} {
		w := &extensions.WasmPlugin{ObjectMeta: metav1.ObjectMeta{Name: "re-" + f, Namespace: ns,
			Labels:          map[string]string{envoyfilters.LabelManagedBy: "meshplug", envoyfilters.LabelPolicy: "re"},
			OwnerReferences: []metav1.OwnerReference{old}}}
		w.Spec.Url = "http://old.example/" + f + ".wasm"
		require.NoError(t, k8s.Create(ctx, w, client.FieldOwner(FieldManager)))
	}
	require.NoError(t, k8s.Create(ctx, policy(t, ns, "re", selector+faults)))
	got := condition(t, ns, "re", Ready, metav1.ConditionTrue)
	assert.Equal(t, metav1.ConditionFalse, meta.FindStatusCondition(got.Status.Conditions, Conflict).Status)
	eventually(t, func() error {
		ws := plugins(t, ns)
		if _, ok := ws["re-auth"]; ok {
			return fmt.Errorf("re-auth not pruned")
		}
		refs := ws["re-fault"].OwnerReferences
		if len(refs) != 1 || refs[0].UID != got.UID {
			return fmt.Errorf("re-fault owner references: %+v", refs)
		}
		return nil
	})
}

func ptr[T any](v T) *T { return &v }
