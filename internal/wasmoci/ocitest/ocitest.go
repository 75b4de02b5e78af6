// Package ocitest runs Debian's docker-registry (the CNCF distribution registry) on
// loopback for tests.
package ocitest

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Registry starts docker-registry with filesystem storage in a temporary directory on
// a free loopback port, stops it when t ends, and returns its host:port (plain HTTP,
// no auth). Without the binary the test is skipped, or fails when CI=true (.ci/run
// installs the docker-registry package).
func Registry(t testing.TB) string {
	t.Helper()
	return start(t, "", "", http.StatusOK)
}

// RegistryReadOnly is Registry in read-only maintenance mode: every push is refused
// (405 Method Not Allowed).
func RegistryReadOnly(t testing.TB) string {
	t.Helper()
	return start(t, "", "  maintenance: {readonly: {enabled: true}}\n", http.StatusOK)
}

// RegistryWithAuth is Registry requiring HTTP basic authentication as user with
// password (an htpasswd file with a bcrypt hash, the registry's htpasswd auth).
// Requests without valid credentials get 401 with the registry's error body.
func RegistryWithAuth(t testing.TB, user, password string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(file, []byte(user+":"+string(h)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return start(t, fmt.Sprintf("auth: {htpasswd: {realm: meshplug-test, path: %s}}\n", file), "", http.StatusUnauthorized)
}

// start runs the registry with extra top-level and storage configuration and waits
// until /v2/ answers ready (200, or 401 with auth).
func start(t testing.TB, extra, storage string, ready int) string {
	t.Helper()
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true and docker-registry is not installed (apt-get install docker-registry)")
		}
		t.Skip("docker-registry is not installed (apt-get install docker-registry)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`version: 0.1
log: {level: error}
storage:
  filesystem: {rootdirectory: %s}
  delete: {enabled: true}
%shttp: {addr: "%s"}
`, filepath.Join(dir, "data"), storage, addr)+extra), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", cfg)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	// Wait for /v2/ (bounded; the registry starts in well under a second).
	for i := 0; ; i++ {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == ready {
				return addr
			}
		}
		if i == 200 {
			t.Fatalf("docker-registry on %s did not come up: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
