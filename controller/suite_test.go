package controller

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// One real kube-apiserver and etcd for the package (envtest), with the TrafficPolicy
// CRD from deploy/crds and Istio's CRDs from the istio.io/api module. The binaries come
// from hack/kube-binaries.sh: KUBEBUILDER_ASSETS, else its default cache directory.
// Without them the tests skip, except in CI (CI=true), where they fail.
var (
	testEnv    *envtest.Environment
	testConfig *rest.Config
	k8s        client.Client // the test's own client: field manager "test"
	skipReason string
)

func TestMain(m *testing.M) {
	logger := zap.New(zap.WriteTo(os.Stderr), zap.UseDevMode(false), zap.Level(zapLevel()))
	logf.SetLogger(logger)
	klog.SetLogger(logger) // client-go's leader election and reflectors log through klog
	os.Exit(run(m))
}

func run(m *testing.M) int {
	assets, err := kubeAssets()
	if err != nil {
		if os.Getenv("CI") == "true" {
			fmt.Fprintln(os.Stderr, "controller tests: CI=true and", err)
			return 1
		}
		skipReason = err.Error()
		return m.Run()
	}
	istio, err := istioCRDFile()
	if err != nil {
		fmt.Fprintln(os.Stderr, "controller tests:", err)
		return 1
	}
	// A fixed certificate directory: restarting the API server (TestAPIServerRestart)
	// then keeps its serving certificate, which the clients trust.
	certDir, err := os.MkdirTemp("", "meshplug-envtest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(certDir)
	testEnv = &envtest.Environment{
		BinaryAssetsDirectory: assets,
		ControlPlane:          envtest.ControlPlane{APIServer: &envtest.APIServer{CertDir: certDir}},
		// kube-apiserver's graceful shutdown can outlast envtest's 20 s; after 3 s it is
		// killed (TestAPIServerRestart, teardown).
		ControlPlaneStopTimeout: 3 * time.Second,
		CRDInstallOptions: envtest.CRDInstallOptions{
			Paths:              []string{filepath.Join("..", "deploy", "crds"), istio},
			ErrorIfPathMissing: true,
		},
	}
	testConfig, err = testEnv.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "controller tests: starting envtest:", err)
		return 1
	}
	defer func() { _ = testEnv.Stop() }()
	c, err := client.New(testConfig, client.Options{Scheme: Scheme()})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	k8s = client.WithFieldOwner(c, "test")
	defer func() { stopController() }()
	return m.Run()
}

// needEnv skips t when the API server binaries are missing (never in CI: TestMain
// fails there).
func needEnv(t *testing.T) {
	t.Helper()
	if skipReason != "" {
		t.Skip("no kube-apiserver/etcd for envtest: " + skipReason + " (run hack/kube-binaries.sh)")
	}
}

func kubeAssets() (string, error) {
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		if d := os.Getenv("MESHPLUG_KUBE_ASSETS"); d != "" {
			dir = d
		} else if home, err := os.UserHomeDir(); err == nil {
			dir = filepath.Join(home, ".cache", "meshplug", "kube-v1.36.3")
		}
	}
	for _, b := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return "", fmt.Errorf("%s not found in %q (KUBEBUILDER_ASSETS)", b, dir)
		}
	}
	return dir, nil
}

// istioCRDFile is Istio's CRDs from the istio.io/api module this repository requires.
func istioCRDFile() (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "istio.io/api").Output()
	if err != nil {
		return "", fmt.Errorf("go list -m istio.io/api: %w", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "kubernetes", "customresourcedefinitions.gen.yaml"), nil
}

// zapLevel: errors only, unless MESHPLUG_TEST_LOG is set.
func zapLevel() zapcore.Level {
	if os.Getenv("MESHPLUG_TEST_LOG") != "" {
		return zapcore.DebugLevel
	}
	return zapcore.ErrorLevel
}
