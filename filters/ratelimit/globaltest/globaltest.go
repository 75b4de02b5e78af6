// Package globaltest runs the real rate limit service for the ratelimit filter's
// global-mode tests: Redis (Debian's redis-server) and envoyproxy/ratelimit's service,
// each a child process on loopback ports, configured with a file rendered by
// envoyfilters.RateLimitServiceFromSpec. hack/ratelimit-service.sh installs both.
//
// Binaries: redis-server on PATH; the service at $RATELIMIT_SERVICE, else the newest
// $MESHPLUG_CACHE/ratelimit/<version>/bin/service_cmd (MESHPLUG_CACHE defaults to
// $XDG_CACHE_HOME/meshplug or ~/.cache/meshplug, as the script installs it). When one
// is missing the test fails under CI=true and is skipped otherwise.
package globaltest

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/meshplug/meshplug/envoyfilters"
	ratelimitconfig "github.com/meshplug/meshplug/filters/ratelimit/config"
)

// Binaries are the paths of redis-server and the ratelimit service.
type Binaries struct{ Redis, Service string }

// Find locates the binaries, failing t under CI=true and skipping it otherwise when
// one is missing.
func Find(t testing.TB) Binaries {
	t.Helper()
	var b Binaries
	var missing []string
	if p, err := exec.LookPath("redis-server"); err == nil {
		b.Redis = p
	} else {
		missing = append(missing, "redis-server (Debian package redis-server)")
	}
	b.Service = os.Getenv("RATELIMIT_SERVICE")
	if b.Service == "" {
		cache := os.Getenv("MESHPLUG_CACHE")
		if cache == "" {
			if c := os.Getenv("XDG_CACHE_HOME"); c != "" {
				cache = filepath.Join(c, "meshplug")
			} else if h, err := os.UserHomeDir(); err == nil {
				cache = filepath.Join(h, ".cache", "meshplug")
			}
		}
		found, _ := filepath.Glob(filepath.Join(cache, "ratelimit", "*", "bin", "service_cmd"))
		sort.Strings(found)
		if len(found) > 0 {
			b.Service = found[len(found)-1]
		}
	}
	if b.Service == "" {
		missing = append(missing, "envoyproxy/ratelimit's service_cmd")
	} else if _, err := os.Stat(b.Service); err != nil {
		missing = append(missing, b.Service)
	}
	if len(missing) > 0 {
		msg := fmt.Sprintf("missing %v: run hack/ratelimit-service.sh", missing)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return b
}

// FreePort returns a loopback port nothing listens on now.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Process is a child process the test started; Stop kills it (idempotent), Start
// starts it again with the same arguments and ports.
type Process struct {
	t    testing.TB
	name string
	args []string
	env  []string
	// ready says whether the process serves.
	ready func() bool

	mu  sync.Mutex
	cmd *exec.Cmd
	out bytes.Buffer
}

// Start starts the process and waits until it is ready (at most about 20 s).
func (p *Process) Start() {
	p.t.Helper()
	p.mu.Lock()
	cmd := exec.Command(p.args[0], p.args[1:]...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = &lockedWriter{p}, &lockedWriter{p}
	if err := cmd.Start(); err != nil {
		p.mu.Unlock()
		p.t.Fatalf("starting %s: %v", p.name, err)
	}
	p.cmd = cmd
	p.mu.Unlock()
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	for i := 0; i < 400; i++ {
		if p.ready() {
			return
		}
		select {
		case <-exited:
			p.t.Fatalf("%s exited; output:\n%s", p.name, p.Output())
		case <-time.After(50 * time.Millisecond):
		}
	}
	p.t.Fatalf("%s did not become ready; output:\n%s", p.name, p.Output())
}

// Stop kills the process (SIGKILL: what a crash looks like to its clients).
func (p *Process) Stop() {
	p.mu.Lock()
	cmd := p.cmd
	p.cmd = nil
	p.mu.Unlock()
	if cmd != nil && cmd.Process != nil {
		_ = cmd.Process.Kill()
		for i := 0; i < 200 && p.ready(); i++ {
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// Output is what the process wrote so far.
func (p *Process) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

type lockedWriter struct{ p *Process }

func (w *lockedWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	if w.p.out.Len() < 1<<20 {
		w.p.out.Write(b)
	}
	return len(b), nil
}

func dials(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

// Service is Redis and the rate limit service in front of it.
type Service struct {
	Redis, RLS *Process
	// GRPCAddr is the service's gRPC address (the filter's cluster).
	GRPCAddr string
	// Config is the service's configuration file as rendered.
	Config []byte
}

// Start starts Redis and the service configured for spec (mode global), and stops
// them when t ends.
func Start(t testing.TB, spec *ratelimitconfig.Spec) *Service {
	t.Helper()
	bins := Find(t)
	rc, err := envoyfilters.RateLimitServiceFromSpec(spec)
	if err != nil {
		t.Fatal(err)
	}
	conf, err := envoyfilters.MarshalRateLimitService(rc)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "rls", "config"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "rls", "config", rc.Domain+".yaml"), conf, 0o644); err != nil {
		t.Fatal(err)
	}
	redisAddr := "127.0.0.1:" + strconv.Itoa(FreePort(t))
	_, redisPort, _ := net.SplitHostPort(redisAddr)
	s := &Service{Config: conf}
	s.Redis = &Process{t: t, name: "redis-server",
		args:  []string{bins.Redis, "--bind", "127.0.0.1", "--port", redisPort, "--save", "", "--appendonly", "no", "--dir", dir},
		ready: func() bool { return dials(redisAddr) }}
	s.Redis.Start()
	t.Cleanup(s.Redis.Stop)

	httpPort, grpcPort, debugPort := FreePort(t), FreePort(t), FreePort(t)
	s.GRPCAddr = "127.0.0.1:" + strconv.Itoa(grpcPort)
	health := "http://127.0.0.1:" + strconv.Itoa(httpPort) + "/healthcheck"
	s.RLS = &Process{t: t, name: "ratelimit service", args: []string{bins.Service},
		// Settings: envoyproxy/ratelimit's src/settings/settings.go.
		env: []string{
			"HOST=127.0.0.1", "PORT=" + strconv.Itoa(httpPort),
			"GRPC_HOST=127.0.0.1", "GRPC_PORT=" + strconv.Itoa(grpcPort),
			"DEBUG_HOST=127.0.0.1", "DEBUG_PORT=" + strconv.Itoa(debugPort),
			"USE_STATSD=false", "LOG_LEVEL=warn",
			"BACKEND_TYPE=redis", "REDIS_SOCKET_TYPE=tcp", "REDIS_URL=" + redisAddr,
			// A dead Redis answers errors quickly rather than after the 10 s default.
			"REDIS_TIMEOUT=300ms",
			"RUNTIME_ROOT=" + dir, "RUNTIME_SUBDIRECTORY=rls", "RUNTIME_WATCH_ROOT=false", "RUNTIME_IGNOREDOTFILES=true",
		},
		ready: func() bool {
			if !dials(s.GRPCAddr) {
				return false
			}
			resp, err := http.Get(health)
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		}}
	s.RLS.Start()
	t.Cleanup(func() {
		s.RLS.Stop()
		if t.Failed() {
			t.Logf("ratelimit service output:\n%s", s.RLS.Output())
		}
	})
	return s
}
