package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshplug/meshplug/demo"
	"github.com/meshplug/meshplug/internal/gateway"
)

func init() { addCommand(newRunCmd) }

type runFlags struct {
	listen, wasmDir string
	upstreams       []string
	clusters        map[string]string
	workers         int
	demo            bool
	quiet           bool
	backendsOnly    bool
	v1, v2, jwks    string
	live            string
	withParent      bool
	perFilter       bool
}

func newRunCmd() *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run [FILE]",
		Short: "Run a TrafficPolicy's filters in a local HTTP gateway (no Envoy needed)",
		Long: `run serves HTTP/1.1 and cleartext HTTP/2 (h2c) on --listen, runs every request
through the policy's filters (the same .wasm Envoy loads, from --wasm-dir: the bundle
meshplug.wasm, or each filter's with --per-filter-modules, on an embedded proxy-wasm
host) and proxies what passes to an upstream:

  --upstream NAME=HOST:PORT   repeatable; the first is the default route, the others
                              are chosen when the request carries the headers of the
                              route hint target of the same name

At start, run refuses an upstream no route reaches (a name that is no route hint
target with headers) and warns about a target with headers but no upstream (its
requests go to the default) and about a callout cluster (JWKS, ext_authz, rate limit
service) that does not accept a connection.

--demo runs the demo of make run instead: demo/policy.yaml in front of two demo
upstreams, with signed tokens and curl commands printed at start.

Ctrl-C (SIGINT) or SIGTERM stops accepting connections and lets requests in flight
finish (up to 30s). On Linux the gateway also stops so when the process that started
it ends (--exit-with-parent, default on): a gateway under go run or make never
outlives them holding its port.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if f.withParent {
				if err := exitWithParent(); err != nil {
					return fmt.Errorf("--exit-with-parent: %w", err)
				}
			}
			return runGateway(ctx, cmd, args, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.listen, "listen", "127.0.0.1:8080", "address the gateway listens on")
	fl.StringVar(&f.wasmDir, "wasm-dir", "build", "directory holding the bundle meshplug.wasm (or, with --per-filter-modules, <filter>.wasm)")
	fl.BoolVar(&f.perFilter, "per-filter-modules", false, "run each filter from its own <filter>.wasm in VMs of its own, instead of all from the bundle meshplug.wasm (one VM per worker)")
	fl.StringArrayVar(&f.upstreams, "upstream", nil, "upstream cluster NAME=HOST:PORT (repeatable; the first is the default route)")
	fl.StringToStringVar(&f.clusters, "cluster", nil, "address of a callout cluster (JWKS, ext_authz): NAME=HOST:PORT (repeatable)")
	fl.IntVar(&f.workers, "workers", 0, "worker VMs per filter (default: the number of CPUs)")
	fl.BoolVar(&f.demo, "demo", false, "run the demo (demo/policy.yaml, demo upstreams v1 and v2, signed tokens)")
	fl.BoolVar(&f.quiet, "quiet", false, "no access log lines")
	fl.BoolVar(&f.withParent, "exit-with-parent", true, "stop (as on SIGTERM) when the process that started the gateway ends (Linux)")
	fl.StringVar(&f.live, "live", "", "address of the live view page of recent decisions per user (default: none; with --demo, any free loopback port)")
	fl.BoolVar(&f.backendsOnly, "demo-backends-only", false, "with --demo: start only the demo upstreams and JWKS server (for real Envoy, demo/docker-compose.yaml)")
	fl.StringVar(&f.v1, "demo-v1", "", "with --demo: address of demo upstream v1 (default: any free loopback port)")
	fl.StringVar(&f.v2, "demo-v2", "", "with --demo: address of demo upstream v2")
	fl.StringVar(&f.jwks, "demo-jwks", "", "with --demo: address of the demo JWKS server")
	return cmd
}

func runGateway(ctx context.Context, cmd *cobra.Command, args []string, f runFlags) error {
	out, errw := cmd.OutOrStdout(), cmd.ErrOrStderr()
	var access io.Writer = out
	if f.quiet {
		access = nil
	}
	var (
		done <-chan error
		stop func(context.Context) error
	)
	if f.demo {
		if len(args) > 0 || len(f.upstreams) > 0 {
			return fmt.Errorf("--demo takes no policy file and no --upstream")
		}
		d, err := demo.Start(ctx, demo.Options{Listen: f.listen, WasmDir: f.wasmDir, PerFilterModules: f.perFilter, Workers: f.workers, AccessLog: access, LogWriter: errw,
			V1Listen: f.v1, V2Listen: f.v2, JWKSListen: f.jwks, BackendsOnly: f.backendsOnly, LiveListen: f.live})
		if err != nil {
			return err
		}
		if f.backendsOnly {
			fmt.Fprint(out, d.Tokens.String())
		} else {
			fmt.Fprint(out, d.Banner())
		}
		done, stop = d.Done(), d.Shutdown
	} else {
		if len(args) != 1 {
			return fmt.Errorf("give a policy file (or --demo)")
		}
		docs, err := readPolicies(args, cmd.InOrStdin())
		if err != nil {
			return err
		}
		if err := report(errw, docs); err != nil {
			return err
		}
		if len(docs) != 1 {
			return fmt.Errorf("run takes one policy, %s has %d documents", args[0], len(docs))
		}
		ups, err := parseUpstreams(f.upstreams)
		if err != nil {
			return err
		}
		warnings, err := checkRun(ctx, docs[0].policy, ups, f.clusters, dialTCP)
		if err != nil {
			return err
		}
		for _, w := range warnings {
			fmt.Fprintf(errw, "%s: warning: %s\n", docs[0].where(), w)
		}
		cfg := gateway.Config{
			Policy: docs[0].policy, WasmDir: f.wasmDir, PerFilterModules: f.perFilter, Upstreams: ups, Clusters: f.clusters,
			Workers: f.workers, AccessLog: access, LogWriter: errw,
		}
		var liveLn net.Listener
		if f.live != "" {
			live := gateway.NewLiveView(0)
			cfg.OnDecision = live.Record
			if liveLn, err = net.Listen("tcp", f.live); err != nil {
				return err
			}
			defer liveLn.Close()
			go func() { _ = http.Serve(liveLn, live) }()
		}
		gw, err := gateway.New(ctx, cfg)
		if err != nil {
			return err
		}
		ln, err := net.Listen("tcp", f.listen)
		if err != nil {
			_ = gw.Shutdown(ctx)
			return err
		}
		ch := make(chan error, 1)
		go func() { ch <- gw.Serve(ln) }()
		fmt.Fprintf(out, "meshplug gateway on http://%s with %s\n", ln.Addr(), args[0])
		if liveLn != nil {
			fmt.Fprintf(out, "live view on http://%s/\n", liveLn.Addr())
		}
		done, stop = ch, gw.Shutdown
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	fmt.Fprintln(errw, "shutting down: waiting for requests in flight")
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return stop(sctx)
}

func parseUpstreams(flags []string) ([]gateway.Upstream, error) {
	var ups []gateway.Upstream
	for _, s := range flags {
		name, addr, ok := cutEq(s)
		if !ok {
			return nil, fmt.Errorf("--upstream %q: want NAME=HOST:PORT", s)
		}
		ups = append(ups, gateway.Upstream{Name: name, Address: addr})
	}
	if len(ups) == 0 {
		return nil, fmt.Errorf("give at least one --upstream NAME=HOST:PORT")
	}
	return ups, nil
}

func cutEq(s string) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == '=' {
			return s[:i], s[i+1:], i > 0 && i < len(s)-1
		}
	}
	return "", "", false
}
