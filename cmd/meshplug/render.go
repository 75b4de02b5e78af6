package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/meshplug/meshplug/api/v1alpha1"
	"github.com/meshplug/meshplug/envoyfilters"
)

func init() { addCommand(newRenderCmd) }

type renderFlags struct {
	format, moduleURL, wasmDir, pullPolicy string
	moduleDir, listen, adminListen         string
	upstreams                              []string
	clusters                               map[string]string
	host, subsetLabel                      string
	gateways, hosts, exportTo              []string
	port                                   int32
	perFilter                              bool
}

func newRenderCmd() *cobra.Command {
	var f renderFlags
	cmd := &cobra.Command{
		Use:   "render FILE...",
		Short: "Render TrafficPolicy files to Istio or Envoy configuration on standard output",
		Long: `render validates the policies (as validate does) and writes what runs them:

  --format istio        one WasmPlugin per policy section
  --format envoyfilter  one EnvoyFilter per policy section (ECDS, remote module)
  --format envoy        a complete envoy.yaml for plain Envoy (exactly one policy)
  --format ratelimit-config
                        envoyproxy/ratelimit's configuration for the rate limits of
                        the policies in mode global (one YAML document per domain)
  --format routes       the routing the routeHints sections' headers feed, for --host:
                        per namespace a DestinationRule and one VirtualService
                        (sidecar and classic gateway policies), an HTTPRoute per
                        policy on Gateway API gateways or waypoints

Every section runs from the bundle meshplug.wasm (one module and one VM per worker;
each plugin's pluginName / root_id selects its filter); --per-filter-modules runs each
from its own <filter>.wasm instead. Istio formats take the module's URL from
--module-url ({filter} is replaced by "meshplug", or by the filter's name with
--per-filter-modules) and its sha256 from the file in --wasm-dir: for https:// and
http:// the file's sha256; for oci:// the digest of the image manifest meshplug push
makes of that file (the digest push prints, which is what Istio's agent compares), so
render and push must see the same .wasm. An oci:// url pinning another digest is refused.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			docs, err := readPolicies(args, cmd.InOrStdin())
			if err != nil {
				return err
			}
			if err := report(cmd.ErrOrStderr(), docs); err != nil {
				return err
			}
			for _, d := range docs {
				for _, w := range d.policy.Warnings() {
					fmt.Fprintf(cmd.ErrOrStderr(), "%s: warning: %s\n", d.at(w.Path), w)
				}
			}
			out, err := render(docs, f)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.format, "format", "istio", "output: istio (WasmPlugin), envoyfilter (EnvoyFilter), envoy (envoy.yaml), routes (VirtualService, DestinationRule) or ratelimit-config (envoyproxy/ratelimit's config)")
	fl.StringVar(&f.moduleURL, "module-url", "", "where proxies fetch the modules, e.g. oci://ghcr.io/org/{filter}:v1 or https://host/wasm/{filter}.wasm (istio, envoyfilter)")
	fl.StringVar(&f.wasmDir, "wasm-dir", "build", "directory holding meshplug.wasm (or <filter>.wasm), whose sha256 is rendered (istio, envoyfilter)")
	fl.BoolVar(&f.perFilter, "per-filter-modules", false, "run each filter from its own <filter>.wasm in a VM of its own, instead of all from the bundle meshplug.wasm")
	fl.StringVar(&f.pullPolicy, "image-pull-policy", "IfNotPresent", "WasmPlugin imagePullPolicy: IfNotPresent or Always (istio)")
	fl.StringVar(&f.moduleDir, "module-dir", "/etc/envoy/wasm", "directory of meshplug.wasm (or <filter>.wasm) where Envoy runs (envoy)")
	fl.StringVar(&f.listen, "listen", "0.0.0.0:10000", "listener address (envoy)")
	fl.StringArrayVar(&f.upstreams, "upstream", nil, "where requests are routed (envoy): HOST:PORT, or NAME=HOST:PORT as meshplug run takes them (repeatable; the first is the default route, the others the route hint targets of the same name); default 127.0.0.1:8080")
	fl.StringVar(&f.adminListen, "admin", "127.0.0.1:9901", "admin interface address (envoy)")
	fl.StringVar(&f.host, "host", "", "destination service whose subsets the route hints select, e.g. reviews.default.svc.cluster.local (routes)")
	fl.StringVar(&f.subsetLabel, "subset-label", "version", "pod label that tells the subsets apart (routes)")
	fl.StringArrayVar(&f.gateways, "gateway", nil, "Istio Gateway the routes of policies on classic gateway pods bind to, e.g. istio-system/public (routes; repeatable)")
	fl.StringArrayVar(&f.hosts, "route-host", nil, "VirtualService host / HTTPRoute hostname, default the --host (VirtualService) or every hostname of the gateway (HTTPRoute) (routes; repeatable)")
	fl.StringArrayVar(&f.exportTo, "export-to", nil, `namespaces the VirtualService and DestinationRule are exported to (routes; repeatable; default ".", the policy's)`)
	fl.Int32Var(&f.port, "port", 0, "the --host service's port, which HTTPRoute backendRefs name (routes of policies on Gateway API gateways and waypoints)")
	fl.StringToStringVar(&f.clusters, "cluster", nil, "address of a callout cluster named without a URL: NAME=HOST:PORT or NAME=https://HOST:PORT (envoy; repeatable)")
	return cmd
}

func render(docs []policyDoc, f renderFlags) ([]byte, error) {
	switch f.format {
	case "envoy":
		if len(docs) != 1 {
			return nil, fmt.Errorf("--format envoy renders one policy, got %d documents", len(docs))
		}
		upstream, targets, err := envoyUpstreams(f.upstreams)
		if err != nil {
			return nil, err
		}
		bs, err := envoyfilters.EnvoyBootstrap(docs[0].policy, envoyfilters.EnvoyOptions{
			ModuleDir: f.moduleDir, ListenAddress: f.listen, Upstream: upstream,
			AdminAddress: f.adminListen, Clusters: f.clusters, TargetUpstreams: targets,
			PerFilterModules: f.perFilter,
		})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", docs[0].where(), err)
		}
		return envoyfilters.MarshalEnvoyYAML(bs)
	case "routes":
		var ps []*v1alpha1.TrafficPolicy
		for _, d := range docs {
			if d.policy.Spec.RouteHints != nil {
				ps = append(ps, d.policy)
			}
		}
		if len(ps) == 0 {
			return nil, fmt.Errorf("--format routes: no policy has a routeHints section")
		}
		objs, err := envoyfilters.Routes(ps, envoyfilters.RouteOptions{Host: f.host, Hosts: f.hosts, Gateways: f.gateways,
			SubsetLabel: f.subsetLabel, Port: f.port, ExportTo: f.exportTo})
		if err != nil {
			return nil, err
		}
		return envoyfilters.MarshalYAML(objs...)
	case "ratelimit-config":
		return renderRateLimitConfig(docs)
	case "istio", "envoyfilter":
	default:
		return nil, fmt.Errorf("--format must be istio, envoyfilter, envoy, routes or ratelimit-config, got %q", f.format)
	}
	opts, err := modules(docs, f)
	if err != nil {
		return nil, err
	}
	var objs []any
	for _, d := range docs {
		if f.format == "istio" {
			ws, err := envoyfilters.WasmPlugins(d.policy, opts)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", d.where(), err)
			}
			for _, w := range ws {
				objs = append(objs, w)
			}
			continue
		}
		es, err := envoyfilters.EnvoyFilters(d.policy, opts)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", d.where(), err)
		}
		for _, e := range es {
			objs = append(objs, e)
		}
	}
	return envoyfilters.MarshalYAML(objs...)
}

// envoyUpstreams reads --upstream for the envoy.yaml: one HOST:PORT, or
// NAME=HOST:PORT flags as meshplug run reads them (the first is the default route,
// each other one the upstream of the route hint target of its name).
func envoyUpstreams(flags []string) (string, map[string]string, error) {
	if len(flags) == 0 {
		return "", nil, nil
	}
	if len(flags) == 1 && !strings.Contains(flags[0], "=") {
		return flags[0], nil, nil
	}
	ups, err := parseUpstreams(flags)
	if err != nil {
		return "", nil, err
	}
	targets := map[string]string{}
	for _, u := range ups[1:] {
		if _, dup := targets[u.Name]; dup {
			return "", nil, fmt.Errorf("--upstream %s given twice", u.Name)
		}
		targets[u.Name] = u.Address
	}
	return ups[0].Address, targets, nil
}

// modules gives each filter the policies use its module: the url from --module-url and
// the sha256 Istio's agent checks it against (envoyfilters.NewModule: the file's for
// https://, the manifest digest of the image meshplug push makes for oci://).
func modules(docs []policyDoc, f renderFlags) (envoyfilters.Options, error) {
	opts := envoyfilters.Options{Modules: map[string]envoyfilters.Module{}, ImagePullPolicy: f.pullPolicy}
	if f.moduleURL == "" {
		return opts, fmt.Errorf("--module-url is required for --format %s", f.format)
	}
	if !f.perFilter {
		m, err := moduleOf(f, strings.TrimSuffix(envoyfilters.BundleModule, ".wasm"), "the bundle")
		opts.Bundle = &m
		return opts, err
	}
	for _, d := range docs {
		for _, sec := range v1alpha1.Sections {
			if _, done := opts.Modules[sec.Filter]; done || sec.Spec(&d.policy.Spec) == nil {
				continue
			}
			m, err := moduleOf(f, sec.Filter, "section "+sec.Field)
			if err != nil {
				return opts, err
			}
			opts.Modules[sec.Filter] = m
		}
	}
	return opts, nil
}

// moduleOf is the module name.wasm ("meshplug" for the bundle, else a filter's name)
// from --wasm-dir, served at --module-url with {filter} replaced by name; what names
// it in errors. An oci:// url without {filter} is one image: the bundle's, refused with
// --per-filter-modules (each filter needs an image of its own).
func moduleOf(f renderFlags, name, what string) (envoyfilters.Module, error) {
	b, err := os.ReadFile(filepath.Join(f.wasmDir, name+".wasm"))
	if err != nil {
		return envoyfilters.Module{}, fmt.Errorf("module of %s: %w (build it with make build, or point --wasm-dir at it)", what, err)
	}
	u := f.moduleURL
	if !strings.Contains(u, "{filter}") {
		switch {
		case strings.HasPrefix(u, "oci://") && f.perFilter:
			return envoyfilters.Module{}, fmt.Errorf("--module-url %q: with --per-filter-modules an oci:// url names one image per filter; put {filter} in it, e.g. oci://ghcr.io/acme/meshplug/{filter}:v1 as meshplug push --repository ghcr.io/acme/meshplug --tag v1 pushes them", u)
		case !strings.HasPrefix(u, "oci://"):
			u = strings.TrimSuffix(u, "/") + "/{filter}.wasm"
		}
	}
	m, err := envoyfilters.NewModule(strings.ReplaceAll(u, "{filter}", name), b)
	if err != nil {
		return m, fmt.Errorf("module of %s: %w", what, err)
	}
	return m, nil
}

// renderRateLimitConfig writes the rate limit service's configuration of every policy
// whose rateLimit section is in mode global, one YAML document each (one file per
// domain in the service's config directory; two policies with one domain would need
// the service's MERGE_DOMAIN_CONFIG).
func renderRateLimitConfig(docs []policyDoc) ([]byte, error) {
	var out []byte
	for _, d := range docs {
		if rl := d.policy.Spec.RateLimit; rl == nil || rl.Mode != "global" {
			continue
		}
		c, err := envoyfilters.RateLimitService(d.policy)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", d.where(), err)
		}
		b, err := envoyfilters.MarshalRateLimitService(c)
		if err != nil {
			return nil, err
		}
		if len(out) > 0 {
			out = append(out, "---\n"...)
		}
		out = append(out, b...)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--format ratelimit-config: no policy has a rateLimit section in mode global")
	}
	return out, nil
}
