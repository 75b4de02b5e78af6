package testenv

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshplug/meshplug/filters/abi"
)

// TestCalloutHeadersInWireOrder: a callout's response headers reach the guest in the
// order the upstream sent them, repeated names interleaved as sent (Envoy's async
// client keeps the codec's order; Go's http.Header is a map), over a fresh connection
// and a kept-alive one alike.
func TestCalloutHeadersInWireOrder(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	heads := []string{
		"X-Zeta: 1\r\nx-alpha: 2\r\nX-Zeta: 3\r\nSet-Cookie: b=2\r\nset-cookie: a=1\r\nContent-Type: text/plain\r\n",
		"x-user: alice\r\nx-tier: gold\r\n",
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				r := bufio.NewReader(c)
				for i := 0; ; i++ {
					req, err := http.ReadRequest(r)
					if err != nil {
						return
					}
					_ = req.Body.Close()
					fmt.Fprintf(c, "HTTP/1.1 200 OK\r\n%sContent-Length: 2\r\n\r\nok", heads[i%len(heads)])
				}
			}(c)
		}
	}()
	want := [][]abi.Pair{
		{{Key: ":status", Value: "200"}, {Key: "x-zeta", Value: "1"}, {Key: "x-alpha", Value: "2"}, {Key: "x-zeta", Value: "3"},
			{Key: "set-cookie", Value: "b=2"}, {Key: "set-cookie", Value: "a=1"}, {Key: "content-type", Value: "text/plain"},
			{Key: "content-length", Value: "2"}},
		{{Key: ":status", Value: "200"}, {Key: "x-user", Value: "alice"}, {Key: "x-tier", Value: "gold"}, {Key: "content-length", Value: "2"}},
	}
	for i := range 4 { // the second pair of calls reuses the connection
		res := doHTTP(context.Background(), ln.Addr().String(), "GET", "/", "backend", nil, nil, time.Second)
		require.False(t, res.failed)
		assert.Equal(t, want[i%2], res.headers, "call %d", i)
		assert.Equal(t, "ok", string(res.body))
	}
}

func TestOrderedHeadersWithoutHead(t *testing.T) {
	// No recorded head (a head over maxHead): the names sorted, each name's values in
	// their order.
	got := orderedHeaders("", http.Header{"X-B": {"1", "2"}, "X-A": {"3"}})
	assert.Equal(t, []abi.Pair{{Key: "x-a", Value: "3"}, {Key: "x-b", Value: "1"}, {Key: "x-b", Value: "2"}}, got)
}
