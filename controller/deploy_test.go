package controller

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/meshplug/meshplug/internal/yamldoc"
)

// ServiceAccount is the controller's identity in deploy/controller: the tests run the
// controller impersonating it, so every scenario exercises the generated RBAC.
const (
	deployNamespace = "meshplug-system"
	serviceAccount  = "meshplug-controller"
)

// deployObjects reads every resource deploy/kustomization.yaml lists, strictly
// (duplicate fields are errors), as unstructured objects.
func deployObjects(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	k, err := os.ReadFile("../deploy/kustomization.yaml")
	require.NoError(t, err)
	var kust struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Resources  []string `json:"resources"`
	}
	require.NoError(t, yaml.UnmarshalStrict(k, &kust))
	require.Equal(t, "Kustomization", kust.Kind)
	var out []*unstructured.Unstructured
	for _, r := range kust.Resources {
		b, err := os.ReadFile(filepath.Join("../deploy", r))
		require.NoError(t, err)
		for _, d := range yamldoc.Split(b) {
			j, err := yaml.YAMLToJSONStrict(d.Data)
			require.NoError(t, err, r)
			u := &unstructured.Unstructured{}
			require.NoError(t, u.UnmarshalJSON(j), r)
			out = append(out, u)
		}
	}
	return out
}

// applyDeploy creates every object of deploy/ on the API server with strict field
// validation (unknown fields are errors).
func applyDeploy(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	for _, u := range deployObjects(t) {
		if u.GetKind() == "CustomResourceDefinition" {
			continue // installed by TestMain from the same file
		}
		err := k8s.Create(ctx, u, client.FieldValidation(metav1.FieldValidationStrict))
		require.NoError(t, err, "%s %s", u.GetKind(), u.GetName())
	}
}

// asServiceAccount is testConfig impersonating the controller's ServiceAccount.
func asServiceAccount() *rest.Config {
	c := rest.CopyConfig(testConfig)
	c.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + deployNamespace + ":" + serviceAccount}
	return c
}

func TestDeployManifests(t *testing.T) {
	startController(t) // applied deploy/ before starting
	kinds := map[string]int{}
	for _, u := range deployObjects(t) {
		kinds[u.GetKind()]++
	}
	assert.Equal(t, map[string]int{"CustomResourceDefinition": 1, "Namespace": 1, "ServiceAccount": 1,
		"ClusterRole": 1, "Role": 1, "ClusterRoleBinding": 1, "RoleBinding": 1, "Deployment": 1, "Service": 1}, kinds)

	// Least privilege: the ServiceAccount cannot touch what the controller does not
	// need.
	sa, err := client.New(asServiceAccount(), client.Options{Scheme: Scheme()})
	require.NoError(t, err)
	var secrets unstructured.UnstructuredList
	secrets.SetAPIVersion("v1")
	secrets.SetKind("SecretList")
	assert.True(t, apierrors.IsForbidden(sa.List(context.Background(), &secrets)), "listing secrets is forbidden")
	var ef unstructured.UnstructuredList
	ef.SetAPIVersion("networking.istio.io/v1alpha3")
	ef.SetKind("EnvoyFilterList")
	assert.True(t, apierrors.IsForbidden(sa.List(context.Background(), &ef)), "listing EnvoyFilters is forbidden")
}

// TestRBACIsUpToDate regenerates deploy/rbac with the Makefile's controller-gen and
// compares: run `make generate` when it fails.
func TestRBACIsUpToDate(t *testing.T) {
	mk, err := os.ReadFile("../Makefile")
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^CONTROLLER_GEN \?= \$\(GO\) run (\S+)$`).FindSubmatch(mk)
	require.NotNil(t, m, "Makefile has no CONTROLLER_GEN line")
	tmp := t.TempDir()
	cmd := exec.Command("go", "run", string(m[1]), "rbac:roleName=meshplug-controller", "paths=./controller/...", "output:rbac:artifacts:config="+tmp)
	cmd.Dir = ".."
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	want, err := os.ReadFile(filepath.Join(tmp, "role.yaml"))
	require.NoError(t, err)
	got, err := os.ReadFile("../deploy/rbac/role.yaml")
	require.NoError(t, err)
	assert.Equal(t, string(want), string(got), "deploy/rbac is stale: run make generate")
}
