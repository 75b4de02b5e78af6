package main

import (
	"github.com/spf13/cobra"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/meshplug/meshplug/controller"
	"github.com/meshplug/meshplug/internal/version"
)

func init() { addCommand(newControllerCmd) }

func newControllerCmd() *cobra.Command {
	var (
		c         controller.Config
		wasmDir   string
		perFilter bool
	)
	cmd := &cobra.Command{
		Use:   "controller",
		Short: "Run the Kubernetes controller: TrafficPolicies to WasmPlugins, and the module server",
		Long: `controller reconciles meshplug.io/v1alpha1 TrafficPolicies into Istio WasmPlugins
(server-side apply, field manager "meshplug") and serves the .wasm modules, read from
--wasm-dir at start, at <--module-base-url>/modules/<sha256>.wasm. Every WasmPlugin
carries that URL and the sha256: the bundle meshplug.wasm's when --wasm-dir has it
(every filter in one module and one VM per worker, pluginName selecting the filter;
--per-filter-modules: each filter's own <filter>.wasm). With --module-oci-repository the
WasmPlugins point at the modules' Istio Wasm images there instead (meshplug push
--repository, same .wasm files): oci://<repository>/<meshplug or filter>@sha256:<digest>. It uses the in-cluster configuration, or
$KUBECONFIG / ~/.kube/config. See controller/README.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctrl.SetLogger(zap.New(zap.WriteTo(cmd.ErrOrStderr())))
			in := version.Get()
			ctrl.Log.WithName("setup").Info("starting meshplug controller", "version", in.Version, "commit", in.Commit, "goVersion", in.GoVersion)
			mods, err := controller.LoadModules(wasmDir)
			if err != nil {
				return err
			}
			mods.PerFilter = perFilter
			c.Modules = mods
			rc, err := ctrl.GetConfig()
			if err != nil {
				return err
			}
			mgr, err := controller.NewManager(rc, c)
			if err != nil {
				return err
			}
			return mgr.Start(ctrl.SetupSignalHandler())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&wasmDir, "wasm-dir", "build", "directory holding the bundle meshplug.wasm and the filters' <filter>.wasm (make build)")
	fl.BoolVar(&perFilter, "per-filter-modules", false, "point each WasmPlugin at its filter's own <filter>.wasm instead of the bundle meshplug.wasm (used whenever --wasm-dir has it)")
	fl.StringVar(&c.ModuleBaseURL, "module-base-url", "", "URL proxies fetch modules from, e.g. http://meshplug-controller.meshplug-system.svc:8082 (this or --module-oci-repository is required)")
	fl.StringVar(&c.ModuleOCIRepository, "module-oci-repository", "", "point the WasmPlugins at the modules' images under this repository instead, e.g. ghcr.io/acme/meshplug (pushed by meshplug push --repository from the same .wasm files)")
	fl.StringVar(&c.ModuleAddr, "module-bind-address", ":8082", "module server listen address (0 disables)")
	fl.StringVar(&c.MetricsAddr, "metrics-bind-address", ":8080", "Prometheus /metrics listen address (0 disables)")
	fl.StringVar(&c.ProbeAddr, "health-probe-bind-address", ":8081", "/healthz and /readyz listen address (0 disables)")
	fl.BoolVar(&c.LeaderElection, "leader-elect", true, "hold a Lease so that one replica reconciles at a time")
	fl.StringVar(&c.LeaderElectionNamespace, "leader-election-namespace", "", "namespace of the Lease (default: the pod's namespace)")
	fl.StringVar(&c.ImagePullPolicy, "image-pull-policy", "IfNotPresent", "the WasmPlugins' imagePullPolicy: IfNotPresent or Always")
	fl.IntVar(&c.Workers, "workers", 4, "policies reconciled concurrently")
	fl.StringSliceVar(&c.WatchNamespaces, "watch-namespaces", nil, "comma-separated namespaces whose TrafficPolicies and WasmPlugins the controller reads and writes (default: all; then it needs the ClusterRoleBinding, else a RoleBinding to the ClusterRole in each)")
	cmd.MarkFlagsOneRequired("module-base-url", "module-oci-repository")
	cmd.MarkFlagsMutuallyExclusive("module-base-url", "module-oci-repository")
	return cmd
}
