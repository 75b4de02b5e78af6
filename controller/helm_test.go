package controller

import (
	"context"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/meshplug/meshplug/internal/yamldoc"
)

// The Helm chart: rendered and linted with Helm's own code (helm.sh/helm/v4: the
// engine behind `helm template` and `helm lint`), every object accepted by the real API
// server (dry run, strict field validation), its RBAC the generated one.
const chartDir = "../deploy/helm/meshplug"

// renderChart renders the chart as `helm template --namespace ns meshplug` with the
// values, and returns the objects, or the rendering error.
func renderChart(t *testing.T, ns string, values map[string]any) ([]*unstructured.Unstructured, error) {
	t.Helper()
	ch, err := loader.Load(chartDir)
	require.NoError(t, err)
	rv, err := util.ToRenderValues(ch, values, common.ReleaseOptions{Name: "meshplug", Namespace: ns, IsInstall: true}, nil)
	if err != nil {
		return nil, err
	}
	files, err := engine.Render(ch, rv)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []*unstructured.Unstructured
	for _, n := range names {
		if !strings.HasSuffix(n, ".yaml") {
			continue // NOTES.txt, helpers
		}
		for _, d := range yamldoc.Split([]byte(files[n])) {
			j, err := yaml.YAMLToJSONStrict(d.Data)
			require.NoError(t, err, "%s:\n%s", n, files[n])
			u := &unstructured.Unstructured{}
			require.NoError(t, u.UnmarshalJSON(j), n)
			out = append(out, u)
		}
	}
	return out, nil
}

func TestHelmChartLint(t *testing.T) {
	for name, values := range chartCases {
		if values.err != "" {
			continue
		}
		l := lint.RunAll(chartDir, values.values, "meshplug-system")
		for _, m := range l.Messages {
			assert.Less(t, m.Severity, support.WarningSev, "%s: %s", name, m.Error())
		}
	}
}

var chartCases = map[string]struct {
	values map[string]any
	err    string
	check  func(t *testing.T, objs map[string]*unstructured.Unstructured)
	kinds  map[string]int // objects by kind, when not the defaults'
}{
	"defaults": {check: func(t *testing.T, objs map[string]*unstructured.Unstructured) {
		c := container(t, objs)
		assert.Equal(t, "ghcr.io/meshplug/meshplug:v0.1.0", c["image"])
		assert.Contains(t, c["args"], "--module-base-url=http://meshplug.helm-defaults.svc:8082")
		assert.Contains(t, c["args"], "--leader-elect=true")
		assert.Contains(t, c["args"], "--leader-election-namespace=helm-defaults")
		assert.Contains(t, c["args"], "--metrics-bind-address=:8080")
		assert.Len(t, ports(t, objs["Service/meshplug"]), 2)
	}},
	"image by digest, modules from a registry, no metrics, no leader election": {values: map[string]any{
		"image":          map[string]any{"repository": "registry.example/mp", "tag": "v1.2.3", "digest": "sha256:" + strings.Repeat("ab", 32)},
		"modules":        map[string]any{"source": "oci", "oci": map[string]any{"repository": "registry.example/modules"}},
		"metrics":        map[string]any{"enabled": false},
		"leaderElection": map[string]any{"enabled": false},
		"replicas":       1,
		"resources":      map[string]any{"limits": map[string]any{"memory": "1Gi"}},
	}, check: func(t *testing.T, objs map[string]*unstructured.Unstructured) {
		c := container(t, objs)
		assert.Equal(t, "registry.example/mp:v1.2.3@sha256:"+strings.Repeat("ab", 32), c["image"])
		assert.Contains(t, c["args"], "--module-oci-repository=registry.example/modules")
		assert.Contains(t, c["args"], "--module-bind-address=0")
		assert.NotContains(t, strings.Join(toStrings(c["args"]), " "), "--module-base-url")
		assert.Contains(t, c["args"], "--leader-elect=false")
		assert.Contains(t, c["args"], "--metrics-bind-address=0")
		assert.Equal(t, "1Gi", c["resources"].(map[string]any)["limits"].(map[string]any)["memory"])
		assert.Nil(t, objs["Service/meshplug"], "neither modules nor metrics: no Service")
	}},
	"module server elsewhere": {values: map[string]any{"modules": map[string]any{"baseURL": "http://mods.example:9000"}},
		check: func(t *testing.T, objs map[string]*unstructured.Unstructured) {
			assert.Contains(t, container(t, objs)["args"], "--module-base-url=http://mods.example:9000")
		}},
	"watch its own namespace only": {values: map[string]any{"watchNamespaces": []any{"helm-watch"}},
		kinds: map[string]int{"ServiceAccount": 1, "ClusterRole": 1, "Role": 1, "RoleBinding": 2, "Deployment": 1, "Service": 1},
		check: func(t *testing.T, objs map[string]*unstructured.Unstructured) {
			assert.Contains(t, container(t, objs)["args"], "--watch-namespaces=helm-watch")
			assert.Nil(t, objs["ClusterRoleBinding/meshplug"], "no cluster-wide binding")
			rb := objs["RoleBinding/meshplug-watch"]
			require.NotNil(t, rb)
			assert.Equal(t, "helm-watch", rb.GetNamespace())
			kind, _, _ := unstructured.NestedString(rb.Object, "roleRef", "kind")
			assert.Equal(t, "ClusterRole", kind)
		}},
	"bad module source":          {values: map[string]any{"modules": map[string]any{"source": "s3"}}, err: `modules.source must be server or oci, got "s3"`},
	"oci without its repository": {values: map[string]any{"modules": map[string]any{"source": "oci"}}, err: "modules.oci.repository is required when modules.source is oci"},
}

// TestHelmChart renders each case, checks what it says, and creates every object on
// the API server (dry run, strict field validation) in the release's namespace.
func TestHelmChart(t *testing.T) {
	needEnv(t)
	for name, tc := range chartCases {
		t.Run(name, func(t *testing.T) {
			ns := "helm-" + strings.Fields(name)[0]
			objs, err := renderChart(t, ns, tc.values)
			if tc.err != "" {
				assert.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			ctx := context.Background()
			require.NoError(t, k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
			t.Cleanup(func() {
				_ = k8s.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
			})
			byName := map[string]*unstructured.Unstructured{}
			for _, u := range objs {
				byName[u.GetKind()+"/"+u.GetName()] = u
				if u.GetNamespace() != "" {
					assert.Equal(t, ns, u.GetNamespace(), "%s %s", u.GetKind(), u.GetName())
				}
				err := k8s.Create(ctx, u.DeepCopy(), client.DryRunAll, client.FieldValidation(metav1.FieldValidationStrict))
				assert.NoError(t, err, "%s %s", u.GetKind(), u.GetName())
			}
			kinds := map[string]int{}
			for _, u := range objs {
				kinds[u.GetKind()]++
			}
			want := map[string]int{"ServiceAccount": 1, "ClusterRole": 1, "ClusterRoleBinding": 1,
				"Role": 1, "RoleBinding": 1, "Deployment": 1, "Service": 1}
			if byName["Service/meshplug"] == nil {
				delete(want, "Service")
			}
			if tc.kinds != nil {
				want = tc.kinds
			}
			assert.Equal(t, want, kinds)
			tc.check(t, byName)
		})
	}
}

// TestHelmChartRBAC: the chart's roles have exactly the rules of the generated
// deploy/rbac/role.yaml, bound to the chart's ServiceAccount; the chart's copies of the
// generated RBAC and CRD (make generate writes them) are current.
func TestHelmChartRBAC(t *testing.T) {
	for _, f := range []struct{ generated, copy string }{
		{"../deploy/rbac/role.yaml", chartDir + "/files/rbac/role.yaml"},
		{"../deploy/crds/meshplug.io_trafficpolicies.yaml", chartDir + "/crds/meshplug.io_trafficpolicies.yaml"},
	} {
		want, err := os.ReadFile(f.generated)
		require.NoError(t, err)
		got, err := os.ReadFile(f.copy)
		require.NoError(t, err)
		assert.Equal(t, string(want), string(got), "%s is stale: run make generate", f.copy)
	}

	generated := map[string]any{}
	for _, u := range deployObjects(t) {
		if k := u.GetKind(); k == "ClusterRole" || k == "Role" {
			generated[k] = u.Object["rules"]
		}
	}
	require.NotEmpty(t, generated)
	objs, err := renderChart(t, "elsewhere", nil)
	require.NoError(t, err)
	rendered := map[string]any{}
	for _, u := range objs {
		switch u.GetKind() {
		case "ClusterRole", "Role":
			rendered[u.GetKind()] = u.Object["rules"]
		case "ClusterRoleBinding", "RoleBinding":
			assert.Equal(t, []any{map[string]any{"kind": "ServiceAccount", "name": "meshplug", "namespace": "elsewhere"}}, u.Object["subjects"])
			ref, _, _ := unstructured.NestedString(u.Object, "roleRef", "name")
			assert.Equal(t, "meshplug", ref)
		}
	}
	assert.Equal(t, generated, rendered)
}

func container(t *testing.T, objs map[string]*unstructured.Unstructured) map[string]any {
	t.Helper()
	d := objs["Deployment/meshplug"]
	require.NotNil(t, d)
	cs, _, err := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
	require.NoError(t, err)
	require.Len(t, cs, 1)
	return cs[0].(map[string]any)
}

func ports(t *testing.T, svc *unstructured.Unstructured) []any {
	t.Helper()
	require.NotNil(t, svc)
	p, _, _ := unstructured.NestedSlice(svc.Object, "spec", "ports")
	return p
}

func toStrings(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}
