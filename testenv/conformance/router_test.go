package conformance

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshplug/meshplug/testenv"
)

// routes is a small route table in Envoy's shape: header matchers, then path matchers,
// then a catch-all-but-/admin.
var routes = []testenv.Route{
	{Name: "canary", Cluster: "svc-canary", Match: testenv.RouteMatch{Prefix: "/", Headers: []testenv.HeaderMatcher{{Name: "x-canary", Exact: "1"}}}},
	{Name: "beta-users", Cluster: "svc-beta", Match: testenv.RouteMatch{Headers: []testenv.HeaderMatcher{{Name: "x-user", Regex: "beta-[0-9]+"}}}},
	{Name: "multi", Cluster: "svc-multi", Match: testenv.RouteMatch{Headers: []testenv.HeaderMatcher{{Name: "x-tag", Exact: "a,b"}}}},
	{Name: "not-internal", Cluster: "svc-ext", Match: testenv.RouteMatch{Path: "/ext", Headers: []testenv.HeaderMatcher{{Name: "x-internal", Present: true, Invert: true}}}},
	{Name: "no-debug", Cluster: "svc-nodebug", Match: testenv.RouteMatch{Path: "/nodebug", Headers: []testenv.HeaderMatcher{{Name: "x-debug", Exact: "1", Invert: true}}}},
	{Name: "exact", Cluster: "svc-exact", Match: testenv.RouteMatch{Path: "/exact"}},
	{Name: "api", Cluster: "svc-api", Match: testenv.RouteMatch{Prefix: "/api/", Headers: []testenv.HeaderMatcher{{Name: ":method", Prefix: "P"}}}},
	{Name: "default", Cluster: "svc-default", Match: testenv.RouteMatch{Prefix: "/pub"}},
}

// TestRouter drives requests through the conformance guest into the router stage: the
// route is chosen from the request headers as they leave the chain (after the guest's
// edits, which clear Envoy's route cache), header matchers follow HeaderUtility, and no
// route is Envoy's 404 route_not_found local reply, sent back through the guest.
func TestRouter(t *testing.T) {
	var seen []string
	h := start(t, setup{opts: testenv.Options{Routes: routes, Upstream: func(r *testenv.UpstreamRequest) *testenv.UpstreamResponse {
		seen = append(seen, r.Cluster)
		return &testenv.UpstreamResponse{Status: 200, Body: []byte(r.Cluster)}
	}}})
	for _, tc := range []struct {
		name    string
		method  string
		path    string
		headers [][2]string
		route   string // "" = 404
		cluster string
	}{
		{name: "header exact", path: "/x", headers: [][2]string{{"x-canary", "1"}}, route: "canary", cluster: "svc-canary"},
		{name: "header exact mismatch falls through", path: "/pub/x", headers: [][2]string{{"x-canary", "2"}}, route: "default", cluster: "svc-default"},
		{name: "regex is a full match", path: "/pub", headers: [][2]string{{"x-user", "beta-12"}}, route: "beta-users", cluster: "svc-beta"},
		{name: "regex partial does not match", path: "/pub", headers: [][2]string{{"x-user", "xbeta-12"}}, route: "default", cluster: "svc-default"},
		{name: "repeated header joined with comma", path: "/q", headers: [][2]string{{"x-tag", "a"}, {"x-tag", "b"}}, route: "multi", cluster: "svc-multi"},
		{name: "repeated header not matched per value", path: "/q", headers: [][2]string{{"x-tag", "a,b"}, {"x-tag", "c"}}},
		{name: "inverted present, absent", path: "/ext", route: "not-internal", cluster: "svc-ext"},
		{name: "inverted present, present", path: "/ext", headers: [][2]string{{"x-internal", ""}}},
		{name: "inverted exact on a missing header never matches", path: "/nodebug"},
		{name: "inverted exact, other value", path: "/nodebug", headers: [][2]string{{"x-debug", "0"}}, route: "no-debug", cluster: "svc-nodebug"},
		{name: "exact path ignores the query", path: "/exact?a=1", route: "exact", cluster: "svc-exact"},
		{name: "exact path is not a prefix", path: "/exact/more"},
		{name: "pseudo-header matcher", method: "POST", path: "/api/v1", route: "api", cluster: "svc-api"},
		{name: "pseudo-header mismatch", method: "GET", path: "/api/v1"},
		{name: "prefix is case-sensitive", path: "/PUB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seen = nil
			resp := do(t, h, testenv.Request{Method: tc.method, Path: tc.path, Headers: tc.headers})
			assert.Equal(t, tc.route, resp.Route)
			assert.Equal(t, tc.cluster, resp.Cluster)
			if tc.route == "" {
				assert.Equal(t, 404, resp.Status)
				assert.True(t, resp.LocalReply)
				assert.Equal(t, "route_not_found", resp.Details)
				assert.Empty(t, resp.Body)
				assert.Nil(t, resp.Upstream)
				assert.Empty(t, seen)
				// The router's reply goes back through the guest's response callback.
				v, _ := resp.Headers.Get("x-response-seen")
				assert.Equal(t, "/404", v)
				return
			}
			require.NotNil(t, resp.Upstream)
			assert.Equal(t, tc.route, resp.Upstream.Route)
			assert.Equal(t, tc.cluster, resp.Upstream.Cluster)
			assert.Equal(t, []string{tc.cluster}, seen)
			assert.Equal(t, tc.cluster, string(resp.Body))
		})
	}
}

// TestRouterRouteCache checks that a filter's request header edit re-chooses the route
// (Envoy's wasm context clears the route cache on request header edits) and what
// xds.route_name / xds.cluster_name say before and after the edit.
func TestRouterRouteCache(t *testing.T) {
	h := start(t, setup{opts: testenv.Options{Routes: routes}})
	for _, tc := range []struct {
		name           string
		headers        [][2]string
		before, after  string
		beforeStatus   string
		afterStatus    string
		cluster, route string
		status         int
	}{
		{name: "set a header that selects a route", headers: [][2]string{{"x-route-set", "x-canary=1"}},
			before: "default", beforeStatus: "ok", after: "canary", afterStatus: "ok", route: "canary", cluster: "svc-canary", status: 200},
		{name: "remove the header that selected the route", headers: [][2]string{{"x-canary", "1"}, {"x-route-del", "x-canary"}},
			before: "canary", beforeStatus: "ok", after: "default", afterStatus: "ok", route: "default", cluster: "svc-default", status: 200},
		{name: "rewrite the path away from every route", headers: [][2]string{{"x-route-set", ":path=/nowhere"}},
			before: "default", beforeStatus: "ok", afterStatus: "not found", status: 404},
		{name: "rewrite the path onto a route", headers: [][2]string{{"x-route-set", ":path=/exact"}},
			before: "default", beforeStatus: "ok", after: "exact", afterStatus: "ok", route: "exact", cluster: "svc-exact", status: 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := do(t, h, testenv.Request{Path: "/pub/x", Headers: append([][2]string{{"x-op", "route"}}, tc.headers...)})
			assert.Equal(t, tc.status, resp.Status)
			assert.Equal(t, tc.route, resp.Route)
			assert.Equal(t, tc.cluster, resp.Cluster)
			if tc.status != 200 {
				assert.Equal(t, "route_not_found", resp.Details)
				return
			}
			require.NotNil(t, resp.Upstream)
			raw, _ := resp.Upstream.Headers.Get("x-report")
			var r map[string]any
			require.NoError(t, json.Unmarshal([]byte(raw), &r), raw)
			assert.Equal(t, tc.before, r["route_before"])
			assert.Equal(t, tc.beforeStatus, r["route_before_status"])
			assert.Equal(t, tc.after, r["route_after"])
			assert.Equal(t, tc.afterStatus, r["route_after_status"])
			assert.Equal(t, tc.cluster, r["cluster_after"])
		})
	}
}

// TestNoRouter: without Options.Routes there is no router stage: everything reaches
// Upstream, no route is reported and xds.route_name is NotFound.
func TestNoRouter(t *testing.T) {
	h := start(t, setup{})
	resp := do(t, h, testenv.Request{Path: "/anything", Headers: [][2]string{{"x-op", "route"}}})
	require.NotNil(t, resp.Upstream)
	assert.Equal(t, 200, resp.Status)
	assert.Empty(t, resp.Route)
	assert.Empty(t, resp.Upstream.Cluster)
	raw, _ := resp.Upstream.Headers.Get("x-report")
	var r map[string]any
	require.NoError(t, json.Unmarshal([]byte(raw), &r), raw)
	assert.Equal(t, "not found", r["route_before_status"])
}

// TestRouterConfigErrors: a route table Envoy would reject is a start error.
func TestRouterConfigErrors(t *testing.T) {
	for _, rs := range [][]testenv.Route{
		{{Name: "r", Match: testenv.RouteMatch{Headers: []testenv.HeaderMatcher{{Name: "x", Regex: "("}}}}},
		{{Name: "r", Match: testenv.RouteMatch{Headers: []testenv.HeaderMatcher{{Name: "x", Exact: "a", Prefix: "b"}}}}},
		{{Name: "r", Match: testenv.RouteMatch{Prefix: "/", Path: "/a"}}},
	} {
		_, err := testenv.New(t.Context(), testenv.Options{Routes: rs}, testenv.Plugin{Wasm: guest(t)})
		assert.Error(t, err)
	}
}
