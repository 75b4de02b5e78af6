package controller

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	extensions "istio.io/client-go/pkg/apis/extensions/v1alpha1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/meshplug/meshplug/api/v1alpha1"
	"github.com/meshplug/meshplug/envoyfilters"
)

// Config configures a controller process (`meshplug controller` flags).
type Config struct {
	// Modules are served at ModuleAddr and rendered into every WasmPlugin.
	Modules *Modules
	// ModuleAddr is the module server's listen address (":8082"); "0" disables it.
	ModuleAddr string
	// ModuleOCIRepository, when set, points the WasmPlugins at the modules' Istio Wasm
	// images under it (pushed by `meshplug push --repository`) instead of the module
	// server: oci://<repository>/<filter>@sha256:<digest> (Modules.OCIRenderOptions).
	ModuleOCIRepository string
	// ModuleBaseURL is where proxies (Istio's agent) reach the module server, e.g.
	// http://meshplug-controller.meshplug-system.svc:8082.
	ModuleBaseURL string
	// MetricsAddr serves Prometheus metrics at /metrics (":8080"; "0" disables).
	MetricsAddr string
	// ProbeAddr serves /healthz and /readyz (":8081"; "0" disables).
	ProbeAddr string
	// LeaderElection makes one replica of several reconcile at a time, holding a
	// coordination.k8s.io Lease named LeaderElectionID in LeaderElectionNamespace.
	LeaderElection          bool
	LeaderElectionNamespace string
	// LeaseDuration and RenewDeadline of leader election; zero means
	// controller-runtime's defaults (15 s and 10 s). A leader that cannot renew its
	// lease for RenewDeadline (the API server is unreachable) exits, to be restarted.
	LeaseDuration, RenewDeadline time.Duration
	// ImagePullPolicy of the WasmPlugins ("IfNotPresent" by default).
	ImagePullPolicy string
	// Workers reconcile policies concurrently (default 4).
	Workers int
	// WatchNamespaces, when not empty, are the only namespaces whose TrafficPolicies
	// and WasmPlugins the controller reads and writes: its caches list and watch in
	// those namespaces alone, so RoleBindings in each (to the ClusterRole
	// meshplug-controller) are all the RBAC it needs besides the Lease's Role. Empty:
	// every namespace, which needs the ClusterRoleBinding.
	WatchNamespaces []string

	// name of the controller (metrics label); "trafficpolicy" when empty. Tests run a
	// second one in the same process.
	name string
}

// LeaderElectionID is the name of the controller's Lease.
const LeaderElectionID = "meshplug-controller"

// Scheme knows the core types, TrafficPolicy and Istio's WasmPlugin.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, v1alpha1.AddToScheme, extensions.AddToScheme} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}

// NewManager builds the controller's manager: the reconciler, leader election, the
// metrics server (controller-runtime's: reconcile counts, durations, errors, work
// queue depth, plus Go runtime and process metrics, and meshplug_build_info), /healthz and /readyz, and the
// module server.
func NewManager(rc *rest.Config, c Config) (manager.Manager, error) {
	if c.Modules == nil {
		return nil, errors.New("no modules")
	}
	var opts envoyfilters.Options
	switch {
	case c.ModuleOCIRepository != "" && c.ModuleBaseURL != "":
		return nil, errors.New("a module base URL (--module-base-url) and a module OCI repository (--module-oci-repository) exclude each other")
	case c.ModuleOCIRepository != "":
		o, err := c.Modules.OCIRenderOptions(c.ModuleOCIRepository)
		if err != nil {
			return nil, err
		}
		opts = o
	case c.ModuleBaseURL != "":
		opts = c.Modules.RenderOptions(c.ModuleBaseURL)
	default:
		return nil, errors.New("one of the module base URL (--module-base-url) and the module OCI repository (--module-oci-repository) is required")
	}
	var cacheOpts cache.Options
	if len(c.WatchNamespaces) > 0 {
		cacheOpts.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range c.WatchNamespaces {
			if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
				return nil, fmt.Errorf("--watch-namespaces: %q: %s", ns, strings.Join(msgs, "; "))
			}
			cacheOpts.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	registerBuildInfoMetric()
	mgr, err := ctrl.NewManager(rc, ctrl.Options{
		Scheme:                  Scheme(),
		Cache:                   cacheOpts,
		Metrics:                 metricsserver.Options{BindAddress: or(c.MetricsAddr, "0")},
		HealthProbeBindAddress:  or(c.ProbeAddr, "0"),
		LeaderElection:          c.LeaderElection,
		LeaderElectionID:        LeaderElectionID,
		LeaderElectionNamespace: c.LeaderElectionNamespace,
		// Give up leadership on shutdown so a new replica takes over at once.
		LeaderElectionReleaseOnCancel: true,
		LeaseDuration:                 durationOrNil(c.LeaseDuration),
		RenewDeadline:                 durationOrNil(c.RenewDeadline),
	})
	if err != nil {
		return nil, err
	}
	opts.ImagePullPolicy = c.ImagePullPolicy
	workers := c.Workers
	if workers <= 0 {
		workers = 4
	}
	r := &Reconciler{Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Options: opts, Workers: workers, name: c.name,
		Recorder: mgr.GetEventRecorder("meshplug-controller")}
	if err := r.SetupWithManager(mgr); err != nil {
		return nil, err
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return nil, err
	}
	// Ready once the informers have synced: before that a replica would serve stale
	// reads to nobody, but a rollout should wait for it.
	if err := mgr.AddReadyzCheck("informers", func(req *http.Request) error {
		if !mgr.GetCache().WaitForCacheSync(req.Context()) {
			return errors.New("informers not synced")
		}
		return nil
	}); err != nil {
		return nil, err
	}
	if c.ModuleAddr != "" && c.ModuleAddr != "0" {
		if err := mgr.Add(moduleServer(c.ModuleAddr, c.Modules)); err != nil {
			return nil, err
		}
	}
	return mgr, nil
}

// moduleServer serves the modules on every replica (not only the leader: proxies
// fetch from the Service, which balances across replicas).
func moduleServer(addr string, m *Modules) manager.Runnable {
	return moduleRunnable{addr: addr, m: m}
}

type moduleRunnable struct {
	addr string
	m    *Modules
}

func (moduleRunnable) NeedLeaderElection() bool { return false }

func (s moduleRunnable) Start(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("module server: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle(ModulePath, s.m)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func durationOrNil(d time.Duration) *time.Duration {
	if d == 0 {
		return nil
	}
	return &d
}
