package conformance

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshplug/meshplug/filters/abi"
	"github.com/meshplug/meshplug/testenv"
)

// TestOnCallout: Options.OnCallout sees each HTTP callout the host accepted as the
// guest passed it (headers in its order, body, timeout), and what the service got
// agrees; a dispatch the host refuses (unknown cluster, no :method) is not reported.
func TestOnCallout(t *testing.T) {
	var mu sync.Mutex
	var got []string // what the service received
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, r.Method+" "+r.Host+" "+r.RequestURI+" "+r.Header.Get("x-from-guest")+" "+string(b))
		mu.Unlock()
	}))
	defer backend.Close()
	var sent []testenv.CalloutRequest
	h := start(t, setup{opts: testenv.Options{Clusters: map[string]string{"backend": strings.TrimPrefix(backend.URL, "http://")},
		OnCallout: func(c testenv.CalloutRequest) {
			mu.Lock()
			sent = append(sent, c)
			mu.Unlock()
		}}})
	for _, tc := range []struct {
		name    string
		headers [][2]string
		want    *testenv.CalloutRequest
	}{
		{"accepted", [][2]string{{"x-cluster", "backend"}, {"x-call-path", "/check?a=1"}, {"x-timeout-ms", "1500"}},
			&testenv.CalloutRequest{Kind: "http", Cluster: "backend", Headers: []abi.Pair{{Key: ":method", Value: "POST"},
				{Key: ":path", Value: "/check?a=1"}, {Key: ":authority", Value: "backend"}, {Key: "x-from-guest", Value: "1"}},
				Body: []byte("ping"), TimeoutMS: 1500}},
		{"unknown cluster: refused, not reported", [][2]string{{"x-cluster", "nope"}, {"x-call-path", "/"}}, nil},
		{"no :method: refused, not reported", [][2]string{{"x-cluster", "backend"}, {"x-call-path", "/"}, {"x-no-method", "1"}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			sent, got = nil, nil
			mu.Unlock()
			report(t, h, "http-call", tc.headers...)
			mu.Lock()
			defer mu.Unlock()
			if tc.want == nil {
				assert.Empty(t, sent)
				assert.Empty(t, got)
				return
			}
			require.Len(t, sent, 1)
			c := sent[0]
			c.Trailers = nil
			assert.Equal(t, *tc.want, c)
			assert.Equal(t, []string{"POST backend /check?a=1 1 ping"}, got, "what the service received")
		})
	}
}
