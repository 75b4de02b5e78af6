// Package demo is the setup of `make run` (`meshplug run --demo`): the local gateway
// with the committed demo policy (policy.yaml) in front of two demo upstreams (v1, v2),
// a JWKS server for a key generated at start, tokens signed with it for four users,
// and the curl commands that show each filter at work. docker-compose.yaml and
// envoy.yaml in this folder run the same policy on real Envoy.
package demo

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/meshplug/meshplug/api/v1alpha1"
	"github.com/meshplug/meshplug/filters/auth/jwt"
	"github.com/meshplug/meshplug/filters/auth/jwt/jwttest"
	"github.com/meshplug/meshplug/internal/gateway"
)

// Policy is the demo TrafficPolicy (policy.yaml).
//
//go:embed policy.yaml
var Policy []byte

// APIKey is the demo API key (consumer ci-bot); policy.yaml holds its sha256.
const APIKey = "demo-ci-key"

// JWKSCluster is the policy's JWKS cluster, served by the demo's JWKS server.
const JWKSCluster = "demo-jwks"

// Users are the demo users, each with a signed token: alice is an ordinary user, bob
// is routed to v2 (canary), carol's requests are delayed, dave's aborted.
var Users = []string{"alice", "bob", "carol", "dave"}

// Options configures Start.
type Options struct {
	Listen  string // gateway address; default 127.0.0.1:8080
	WasmDir string // default "build"
	// PerFilterModules runs each filter from its own <filter>.wasm (default: the
	// bundle meshplug.wasm).
	PerFilterModules bool
	Workers          int
	AccessLog        io.Writer
	LogWriter        io.Writer
	// V1Listen, V2Listen and JWKSListen are the addresses of the demo upstreams and
	// of the JWKS server; default 127.0.0.1:0 (any free port).
	V1Listen, V2Listen, JWKSListen string
	// LiveListen is the address of the live view (gateway.LiveView); default
	// 127.0.0.1:0.
	LiveListen string
	// BackendsOnly starts the upstreams and the JWKS server without the gateway (for
	// real Envoy in docker-compose.yaml).
	BackendsOnly bool
}

// Demo is a running demo.
type Demo struct {
	URL     string // the gateway, http://host:port
	LiveURL string // the live view page
	Tokens  Tokens // user → JWT
	Gateway *gateway.Gateway
	servers []*http.Server
	done    chan error
}

// Start starts the demo upstreams, the JWKS server and the gateway.
func Start(ctx context.Context, o Options) (*Demo, error) {
	if o.Listen == "" {
		o.Listen = "127.0.0.1:8080"
	}
	p, err := v1alpha1.Decode(Policy)
	if err != nil {
		return nil, fmt.Errorf("demo/policy.yaml: %w", err)
	}
	d := &Demo{Tokens: Tokens{}, done: make(chan error, 1)}
	signer := jwttest.New(jwt.ES256, "demo-"+time.Now().UTC().Format("20060102T150405"))
	jwks := jwttest.JWKS(signer)
	jwksAddr, err := d.serve(o.JWKSListen, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("content-type", "application/json")
		_, _ = io.WriteString(w, jwks)
	}))
	if err != nil {
		return nil, err
	}
	var ups []gateway.Upstream
	for i, v := range []string{"v1", "v2"} {
		a, err := d.serve([]string{o.V1Listen, o.V2Listen}[i], Upstream(v))
		if err != nil {
			d.closeServers()
			return nil, err
		}
		ups = append(ups, gateway.Upstream{Name: v, Address: a})
	}
	now := time.Now()
	for _, u := range Users {
		d.Tokens[u] = signer.Sign(map[string]any{
			"iss": "https://demo.meshplug.local", "aud": "demo", "sub": u,
			"iat": now.Unix(), "exp": now.Add(24 * time.Hour).Unix(),
		})
	}
	if o.BackendsOnly {
		d.URL = "http://" + ups[0].Address
		return d, nil
	}
	live := gateway.NewLiveView(0)
	liveAddr, err := d.serve(o.LiveListen, live)
	if err != nil {
		d.closeServers()
		return nil, err
	}
	d.LiveURL = "http://" + liveAddr + "/"
	gw, err := gateway.New(ctx, gateway.Config{
		Policy: p, WasmDir: o.WasmDir, PerFilterModules: o.PerFilterModules, Upstreams: ups, Workers: o.Workers, OnDecision: live.Record,
		Clusters:  map[string]string{JWKSCluster: jwksAddr},
		AccessLog: o.AccessLog, LogWriter: o.LogWriter,
	})
	if err != nil {
		d.closeServers()
		return nil, err
	}
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		d.closeServers()
		_ = gw.Shutdown(ctx)
		return nil, err
	}
	d.Gateway = gw
	d.URL = "http://" + ln.Addr().String()
	go func() { d.done <- gw.Serve(ln) }()
	return d, nil
}

func (d *Demo) serve(addr string, h http.Handler) (string, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", err
	}
	s := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	d.servers = append(d.servers, s)
	go func() { _ = s.Serve(ln) }()
	return ln.Addr().String(), nil
}

func (d *Demo) closeServers() {
	for _, s := range d.servers {
		_ = s.Close()
	}
}

// Done reports the gateway's Serve result once it stopped.
func (d *Demo) Done() <-chan error { return d.done }

// Shutdown stops the gateway (requests in flight finish) and the demo servers.
func (d *Demo) Shutdown(ctx context.Context) error {
	var err error
	if d.Gateway != nil {
		err = d.Gateway.Shutdown(ctx)
	}
	for _, s := range d.servers {
		err = errors.Join(err, s.Shutdown(ctx))
	}
	return err
}

// Upstream is a demo upstream: it answers JSON naming its version and what it got
// (method, path, the consumer and route target headers, the body's length); POST
// /echo sends the request body back.
func Upstream(version string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/echo" {
			w.Header().Set("content-type", r.Header.Get("content-type"))
			w.Header().Set("x-upstream", version)
			// Echoing writes while the body still comes in: without full duplex Go's
			// HTTP/1.1 server would discard the unread body at the first flush.
			_ = http.NewResponseController(w).EnableFullDuplex()
			_, _ = io.Copy(w, r.Body)
			return
		}
		n, _ := io.Copy(io.Discard, r.Body)
		w.Header().Set("content-type", "application/json")
		w.Header().Set("x-upstream", version)
		_ = json.NewEncoder(w).Encode(map[string]any{
			"upstream": version, "method": r.Method, "path": r.URL.RequestURI(),
			"consumer": r.Header.Get("x-consumer"), "route_hint": r.Header.Get("x-route-hint"),
			"body_bytes": n,
		})
	})
}

// Command is one ready-to-paste curl command of the demo: what it shows, the request
// it sends (Repeat times) and what the last answer is (the demo's test sends exactly
// these requests).
type Command struct {
	What         string
	Path         string
	User         string // bearer token of this user; "" none
	APIKey       bool   // send the demo API key
	Repeat       int    // default 1
	H2C          bool   // HTTP/2 with prior knowledge
	Timing       bool   // print status and total time
	WantStatus   int
	WantUpstream string // x-upstream of the answer ("" for a local reply)
}

// Commands are the demo's requests, in the order the banner shows them.
var Commands = []Command{
	{What: "no credentials: 401 with WWW-Authenticate", Path: "/hello", WantStatus: 401},
	{What: "public path, no credentials needed: 200 from v1", Path: "/healthz", WantStatus: 200, WantUpstream: "v1"},
	{What: "alice's token: 200 from v1", Path: "/hello", User: "alice", WantStatus: 200, WantUpstream: "v1"},
	{What: "the API key (consumer ci-bot): 200 from v1", Path: "/hello", APIKey: true, WantStatus: 200, WantUpstream: "v1"},
	{What: "alice 5 more times: the 5th is 429 with RateLimit headers (5 a minute per user)", Path: "/hello", User: "alice", Repeat: 5, WantStatus: 429},
	{What: "bob is a canary user: 200 from v2", Path: "/hello", User: "bob", WantStatus: 200, WantUpstream: "v2"},
	{What: "carol's requests are delayed 300ms", Path: "/hello", User: "carol", Timing: true, WantStatus: 200, WantUpstream: "v1"},
	{What: "dave's requests are aborted: 503", Path: "/hello", User: "dave", WantStatus: 503},
	{What: "HTTP/2 without TLS (h2c)", Path: "/hello", APIKey: true, H2C: true, WantStatus: 200, WantUpstream: "v1"},
}

// Curl is c as a curl command against the demo.
func (d *Demo) Curl(c Command) string {
	var b strings.Builder
	b.WriteString("curl")
	switch {
	case c.Repeat > 1 || c.Timing:
		b.WriteString(" -s -o /dev/null -w '%{http_code} %{time_total}s\\n'")
	default:
		b.WriteString(" -i")
	}
	if c.H2C {
		b.WriteString(" --http2-prior-knowledge")
	}
	if c.User != "" {
		fmt.Fprintf(&b, " -H 'authorization: Bearer %s'", d.Tokens[c.User])
	}
	if c.APIKey {
		fmt.Fprintf(&b, " -H 'x-api-key: %s'", APIKey)
	}
	b.WriteString(" " + d.URL + c.Path)
	if c.Repeat > 1 {
		return fmt.Sprintf("for i in $(seq %d); do %s; done", c.Repeat, b.String())
	}
	return b.String()
}

// Tokens are the demo users' JWTs by user.
type Tokens map[string]string

// String lists the tokens as shell assignments (ALICE=...).
func (t Tokens) String() string {
	var b strings.Builder
	b.WriteString("Demo tokens (ES256, signed at start, valid 24h):\n")
	for _, u := range Users {
		fmt.Fprintf(&b, "  %s=%s\n", strings.ToUpper(u), t[u])
	}
	return b.String()
}

// Banner is what `meshplug run --demo` prints: the gateway address, the tokens and the
// curl commands.
func (d *Demo) Banner() string {
	var b strings.Builder
	fmt.Fprintf(&b, "meshplug gateway on %s with demo/policy.yaml (auth, ratelimit, routehint, fault)\n\n", d.URL)
	b.WriteString(d.Tokens.String())
	fmt.Fprintf(&b, "Demo API key (consumer ci-bot): %s\n", APIKey)
	fmt.Fprintf(&b, "Live view of the decisions per user: %s\n\nTry:\n", d.LiveURL)
	for _, c := range Commands {
		fmt.Fprintf(&b, "  # %s\n  %s\n\n", c.What, d.Curl(c))
	}
	b.WriteString("Ctrl-C stops the gateway (requests in flight finish).\n")
	return b.String()
}
