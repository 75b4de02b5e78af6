package controller

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshplug/meshplug/api/v1alpha1"
)

// TestFigures runs the `meshplug controller` binary as its own process against the
// package's API server and measures what docs/controller.md reports: the time from
// creating one policy to its Ready condition (20 policies one after the other), the
// time for 100 policies created at once to all be Ready, and the controller process's
// memory afterwards. Opt-in (it builds the binary):
//
//	MESHPLUG_FIGURES=1 go test -count=1 -run TestFigures -v ./controller/
func TestFigures(t *testing.T) {
	if os.Getenv("MESHPLUG_FIGURES") == "" {
		t.Skip("set MESHPLUG_FIGURES=1 to measure the controller's figures")
	}
	needEnv(t)
	ctx := context.Background()
	dir := t.TempDir()
	bin := filepath.Join(dir, "meshplug")
	out, err := exec.Command("go", "build", "-o", bin, "../cmd/meshplug").CombinedOutput()
	require.NoError(t, err, "%s", out)
	wasmDir := filepath.Join(dir, "wasm")
	require.NoError(t, os.Mkdir(wasmDir, 0o755))
	for _, sec := range v1alpha1.Sections {
		require.NoError(t, os.WriteFile(filepath.Join(wasmDir, sec.Filter+".wasm"), []byte("\x00asm "+sec.Filter), 0o644))
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	require.NoError(t, os.WriteFile(kubeconfig, testEnv.KubeConfig, 0o600))
	modAddr, probeAddr, metricsAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	cmd := exec.Command(bin, "controller", "--wasm-dir", wasmDir, "--module-base-url", "http://"+modAddr,
		"--module-bind-address", modAddr, "--health-probe-bind-address", probeAddr,
		"--metrics-bind-address", metricsAddr, "--leader-elect=false")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	eventually(t, func() error {
		resp, err := http.Get("http://" + probeAddr + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz: %s", resp.Status)
		}
		return nil
	})
	rssStart := rss(t, cmd.Process.Pid)

	ready := func(ns, name string) bool {
		var p v1alpha1.TrafficPolicy
		if k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &p) != nil {
			return false
		}
		c := meta.FindStatusCondition(p.Status.Conditions, Ready)
		return c != nil && c.Status == metav1.ConditionTrue && p.Status.ObservedGeneration == p.Generation
	}
	ns := namespace(t)
	var one []time.Duration
	for i := range 20 {
		name := fmt.Sprintf("one-%02d", i)
		start := time.Now()
		require.NoError(t, k8s.Create(ctx, policy(t, ns, name, appSelector(i)+rateLimit+faults)))
		for !ready(ns, name) {
			time.Sleep(5 * time.Millisecond)
		}
		one = append(one, time.Since(start))
	}
	slices.Sort(one)

	ns = namespace(t)
	start := time.Now()
	for i := range 100 {
		require.NoError(t, k8s.Create(ctx, policy(t, ns, fmt.Sprintf("p%03d", i), appSelector(i)+rateLimit+faults)))
	}
	created := time.Since(start)
	eventually(t, func() error {
		var l v1alpha1.TrafficPolicyList
		require.NoError(t, k8s.List(ctx, &l, client.InNamespace(ns)))
		n := 0
		for _, p := range l.Items {
			if c := meta.FindStatusCondition(p.Status.Conditions, Ready); c != nil && c.Status == metav1.ConditionTrue {
				n++
			}
		}
		if n != 100 {
			return fmt.Errorf("%d ready", n)
		}
		return nil
	})
	all := time.Since(start)
	t.Logf("one policy (2 sections) create→Ready, 20 runs: median %v, min %v, max %v", one[10].Round(time.Millisecond), one[0].Round(time.Millisecond), one[19].Round(time.Millisecond))
	t.Logf("100 policies (200 WasmPlugins): created in %v, all Ready after %v", created.Round(time.Millisecond), all.Round(time.Millisecond))
	t.Logf("controller RSS: %d MiB after start, %d MiB with 120 policies and 240 WasmPlugins", rssStart>>20, rss(t, cmd.Process.Pid)>>20)
}

// rss is the resident set size of pid in bytes (/proc/<pid>/status VmRSS).
func rss(t *testing.T, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			var kb int64
			_, err := fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kb)
			require.NoError(t, err)
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}
