package envoyfilters

import (
	"fmt"
	"net"
	"net/url"
	"path"
	"sort"
	"strconv"
	"strings"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"sigs.k8s.io/yaml"

	"github.com/meshplug/meshplug/api/v1alpha1"
	"github.com/meshplug/meshplug/filters/configjson"
)

// EnvoyOptions are the inputs of the envoy.yaml rendering that are not in the policy.
type EnvoyOptions struct {
	// ModuleDir is the directory holding meshplug.wasm (or, with PerFilterModules,
	// <filter>.wasm) where Envoy runs. Default "/etc/envoy/wasm".
	ModuleDir string
	// PerFilterModules runs each filter from its own <filter>.wasm in a VM of its own,
	// instead of every filter from the bundle meshplug.wasm in one shared VM.
	PerFilterModules bool
	// ListenAddress is the listener's host:port. Default "0.0.0.0:10000".
	ListenAddress string
	// Upstream is the host:port every request is routed to. Default "127.0.0.1:8080".
	Upstream string
	// AdminAddress is the admin interface's host:port; "" = 127.0.0.1:9901.
	AdminAddress string
	// Clusters gives addresses to callout clusters that the configuration names without
	// a URL (an ext_authz service) and that are not Istio outbound cluster names
	// (`outbound|9000||authz.shop.svc.cluster.local`): cluster name → "host:port"
	// (plain HTTP/1.1) or "https://host:port" (TLS, SNI = host).
	Clusters map[string]string
	// TargetUpstreams gives route hint targets their own upstream: target name →
	// host:port. Each target of the policy's routeHints section that has headers and
	// an entry here gets a cluster "upstream-<target>" and a route, before the default
	// one, matching exactly the target's headers (the headers routehint sets), so the
	// hint picks the upstream as an Istio VirtualService would pick the subset.
	TargetUpstreams map[string]string
}

// CACertFile is the trust store the TLS clusters verify servers against (Debian and
// the official Envoy image).
const CACertFile = "/etc/ssl/certs/ca-certificates.crt"

// EnvoyBootstrap renders a complete Envoy bootstrap (envoy.yaml) running p's filters in
// front of one upstream: a listener whose HTTP connection manager has the Wasm filters
// in chain order (modules loaded from local files) and the router; a cluster for the
// upstream and one per callout cluster named in the policy (JWKS endpoints, the
// authorization service); and the admin interface on loopback. p's selector or
// targetRefs do not apply to a single Envoy and are ignored.
//
// The connection manager follows Envoy's edge hardening, which auth's path matching
// relies on: normalize_path, merge_slashes, escaped slashes unescaped and redirected,
// headers with underscores rejected, the client address taken from the connection.
//
// Reference: https://www.envoyproxy.io/docs/envoy/latest/configuration/best_practices/edge
func EnvoyBootstrap(p *v1alpha1.TrafficPolicy, o EnvoyOptions) (*bootstrapv3.Bootstrap, error) {
	secs, err := sections(p)
	if err != nil {
		return nil, err
	}
	if o.ModuleDir == "" {
		o.ModuleDir = "/etc/envoy/wasm"
	}
	listen, err := socketAddress(o.ListenAddress, "0.0.0.0:10000")
	if err != nil {
		return nil, fmt.Errorf("listen address: %w", err)
	}
	admin, err := socketAddress(o.AdminAddress, "127.0.0.1:9901")
	if err != nil {
		return nil, fmt.Errorf("admin address: %w", err)
	}
	upHost, upPort, err := splitHostPort(o.Upstream, "127.0.0.1:8080")
	if err != nil {
		return nil, fmt.Errorf("upstream: %w", err)
	}
	clusters := []*clusterv3.Cluster{cluster("upstream", upHost, upPort, false, false)}
	seen := map[string]string{"upstream": "the upstream"}
	var filters []*hcmv3.HttpFilter
	for _, s := range secs {
		wasm, err := wasmFilter(s, &corev3.AsyncDataSource{Specifier: &corev3.AsyncDataSource_Local{Local: &corev3.DataSource{
			Specifier: &corev3.DataSource_Filename{Filename: path.Join(o.ModuleDir, moduleFile(s.sec, o.PerFilterModules))},
		}}}, o.PerFilterModules)
		if err != nil {
			return nil, err
		}
		filters = append(filters, &hcmv3.HttpFilter{Name: filterName(s.sec), ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(wasm)}})
		for _, c := range s.sec.Callouts(s.spec) {
			where := "spec." + s.sec.Field + "." + c.Path
			host, port, tls, err := calloutAddress(c, o.Clusters)
			if err != nil {
				return nil, configjson.Errorf(where, "%v", err)
			}
			addr := fmt.Sprintf("%v %v %s:%d", tls, c.GRPC, host, port)
			if prev, ok := seen[c.Cluster]; ok {
				if prev != addr {
					return nil, configjson.Errorf(where, "cluster %q is used with two different addresses or protocols", c.Cluster)
				}
				continue
			}
			seen[c.Cluster] = addr
			clusters = append(clusters, cluster(c.Cluster, host, port, tls, c.GRPC))
		}
	}
	routes, err := targetRoutes(p, o.TargetUpstreams, seen, &clusters)
	if err != nil {
		return nil, err
	}
	routes = append(routes, &routev3.Route{
		Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "upstream"}}},
	})
	filters = append(filters, &hcmv3.HttpFilter{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{})}})
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: "meshplug",
		CodecType:  hcmv3.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
			Name: "upstream",
			VirtualHosts: []*routev3.VirtualHost{{
				Name:    "upstream",
				Domains: []string{"*"},
				Routes:  routes,
			}},
		}},
		HttpFilters: filters,
	}
	proto.Merge(hcm, EdgeConnectionManager())
	return &bootstrapv3.Bootstrap{
		Admin: &bootstrapv3.Admin{Address: admin},
		StaticResources: &bootstrapv3.Bootstrap_StaticResources{
			Listeners: []*listenerv3.Listener{{
				Name:    "meshplug",
				Address: listen,
				FilterChains: []*listenerv3.FilterChain{{
					Filters: []*listenerv3.Filter{{
						Name:       "envoy.filters.network.http_connection_manager",
						ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(hcm)},
					}},
				}},
			}},
			Clusters: clusters,
		},
	}, nil
}

// EdgeConnectionManager is the edge hardening EnvoyBootstrap gives its HTTP connection
// manager (only those fields are set): normalize_path, merge_slashes, escaped slashes
// unescaped and redirected, headers with underscores rejected, the client address
// taken from the connection. Everything else (header limits, timeouts, buffer limits)
// is left at Envoy's defaults. `meshplug run` (internal/gateway) reads its edge
// behaviour from here, so the two cannot drift apart.
func EdgeConnectionManager() *hcmv3.HttpConnectionManager {
	return &hcmv3.HttpConnectionManager{
		NormalizePath:                wrapperspb.Bool(true),
		MergeSlashes:                 true,
		PathWithEscapedSlashesAction: hcmv3.HttpConnectionManager_UNESCAPE_AND_REDIRECT,
		CommonHttpProtocolOptions: &corev3.HttpProtocolOptions{
			HeadersWithUnderscoresAction: corev3.HttpProtocolOptions_REJECT_REQUEST,
		},
		UseRemoteAddress: wrapperspb.Bool(true),
	}
}

// targetRoutes: a route and a cluster per route hint target given an upstream in
// upstreams (see EnvoyOptions.TargetUpstreams), in the order of the targets.
func targetRoutes(p *v1alpha1.TrafficPolicy, upstreams map[string]string, seen map[string]string, clusters *[]*clusterv3.Cluster) ([]*routev3.Route, error) {
	rh := p.Spec.RouteHints
	if len(upstreams) == 0 {
		return nil, nil
	}
	if rh == nil {
		return nil, fmt.Errorf("%s: target upstreams given but the policy has no routeHints section", p)
	}
	known := map[string]bool{}
	var routes []*routev3.Route
	for i, t := range rh.Targets {
		known[t.Name] = true
		addr, ok := upstreams[t.Name]
		if !ok {
			continue
		}
		if len(t.Headers) == 0 {
			return nil, configjson.Errorf(fmt.Sprintf("spec.routeHints.targets[%d]", i), "target %q has no headers to route on", t.Name)
		}
		host, port, err := splitHostPort(addr, "")
		if err != nil {
			return nil, fmt.Errorf("upstream of target %q: %w", t.Name, err)
		}
		name := "upstream-" + t.Name
		if _, dup := seen[name]; dup {
			return nil, fmt.Errorf("cluster %q is already used", name)
		}
		seen[name] = addr
		// The default upstream's cluster (plain HTTP/1.1), repointed.
		c := proto.Clone((*clusters)[0]).(*clusterv3.Cluster)
		c.Name = name
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_LOGICAL_DNS}
		if isIP(host) {
			c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}
		}
		sa, _ := socketAddress(net.JoinHostPort(host, strconv.FormatUint(uint64(port), 10)), "")
		c.LoadAssignment.ClusterName = name
		c.LoadAssignment.Endpoints[0].LbEndpoints[0].GetEndpoint().Address = sa
		*clusters = append(*clusters, c)
		names := make([]string, 0, len(t.Headers))
		for n := range t.Headers {
			names = append(names, n)
		}
		sort.Strings(names)
		m := &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}
		for _, n := range names {
			m.Headers = append(m.Headers, &routev3.HeaderMatcher{Name: n, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{
				StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: t.Headers[n]}},
			}})
		}
		routes = append(routes, &routev3.Route{Name: t.Name, Match: m,
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: name}}}})
	}
	for t := range upstreams {
		if !known[t] {
			return nil, fmt.Errorf("%s: target upstream %q is not a routeHints target", p, t)
		}
	}
	return routes, nil
}

// MarshalEnvoyYAML writes a bootstrap as envoy.yaml (protobuf JSON field names, as
// Envoy's documentation writes them).
func MarshalEnvoyYAML(b *bootstrapv3.Bootstrap) ([]byte, error) {
	j, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(b)
	if err != nil {
		return nil, err
	}
	return yaml.JSONToYAML(j)
}

func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(err) // only for messages of registered types, which always marshal
	}
	return a
}

// calloutAddress is where cluster c points: the URL of the configuration, an Istio
// outbound cluster name, or clusters[c.Cluster].
func calloutAddress(c v1alpha1.Callout, clusters map[string]string) (string, uint32, bool, error) {
	if a, ok := clusters[c.Cluster]; ok {
		tls := strings.HasPrefix(a, "https://")
		h, p, err := splitHostPort(strings.TrimPrefix(a, "https://"), "")
		return h, p, tls, err
	}
	if c.URL != "" {
		u, err := url.Parse(c.URL)
		if err != nil {
			return "", 0, false, err
		}
		h, p := hostPort(u)
		return h, p, u.Scheme == "https", nil
	}
	if h, p, ok := parseIstioCluster(c.Cluster); ok {
		return h, p, false, nil
	}
	return "", 0, false, fmt.Errorf("cluster %q has no address: give one (host:port or https://host:port) in EnvoyOptions.Clusters (meshplug render --cluster %s=HOST:PORT)", c.Cluster, c.Cluster)
}

func splitHostPort(s, def string) (string, uint32, error) {
	if s == "" {
		s = def
	}
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, err
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || n == 0 || h == "" {
		return "", 0, fmt.Errorf("%q is not host:port", s)
	}
	return h, uint32(n), nil
}

func socketAddress(s, def string) (*corev3.Address, error) {
	h, p, err := splitHostPort(s, def)
	if err != nil {
		return nil, err
	}
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: h, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: p},
	}}}, nil
}

// cluster is a cluster of one endpoint: STATIC for an IP address, LOGICAL_DNS for a
// name; with TLS, the server's certificate is verified against CACertFile for host;
// with http2 (gRPC services), the upstream protocol is HTTP/2, as Envoy's gRPC clients
// need (explicit http2_protocol_options in envoy.extensions.upstreams.http.v3's
// HttpProtocolOptions; prior knowledge in clear text, ALPN h2 under TLS).
func cluster(name, host string, port uint32, tls, http2 bool) *clusterv3.Cluster {
	typ := clusterv3.Cluster_LOGICAL_DNS
	if isIP(host) {
		typ = clusterv3.Cluster_STATIC
	}
	addr, _ := socketAddress(net.JoinHostPort(host, strconv.FormatUint(uint64(port), 10)), "")
	c := &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: typ},
		ConnectTimeout:       durationpb.New(5e9),
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: name,
			Endpoints: []*endpointv3.LocalityLbEndpoints{{
				LbEndpoints: []*endpointv3.LbEndpoint{{
					HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: addr}},
				}},
			}},
		},
	}
	if http2 {
		c.TypedExtensionProtocolOptions = map[string]*anypb.Any{
			"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": mustAny(&upstreamhttpv3.HttpProtocolOptions{
				UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
					ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}},
				}},
			}),
		}
	}
	if tls {
		sanType := tlsv3.SubjectAltNameMatcher_DNS
		if isIP(host) {
			sanType = tlsv3.SubjectAltNameMatcher_IP_ADDRESS
		}
		c.TransportSocket = &corev3.TransportSocket{
			Name: "envoy.transport_sockets.tls",
			ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(&tlsv3.UpstreamTlsContext{
				Sni: host,
				CommonTlsContext: &tlsv3.CommonTlsContext{
					ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
						TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: CACertFile}},
						MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
							SanType: sanType,
							Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: host}},
						}},
					}},
				},
			})},
		}
	}
	return c
}
