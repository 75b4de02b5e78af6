package gateway_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"

	"github.com/meshplug/meshplug/internal/gateway"
)

// warm sends a few requests through the whole chain so that the VMs, pools and
// connections a first request creates are not counted as growth.
func warm(t testing.TB, e *edgeEnv) {
	for range 8 {
		for _, p := range protocols {
			e.get(t, p.h2, "/warm")
		}
	}
}

// growthBound is a generous bound on the heap that n stalled streams may hold: the
// window and one read each, plus room for buffers, goroutines and the collector's
// slack. Without flow control each would hold up to bigBody.
func growthBound(n int) int64 {
	return int64(n*(gateway.DefaultBufferLimitBytes+gateway.DefaultChunkSize) + 48<<20)
}

// heapInUse is the live heap after a collection.
func heapInUse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}

// settle polls the counters until none moved for several polls in a row (the
// transfers are stalled) or maxPolls ran out; it returns the counters' values. The
// sleeps pace the polls, they assert nothing.
func settle(counters []*atomic.Int64, maxPolls int) []int64 {
	vals := make([]int64, len(counters))
	still := 0
	for range maxPolls {
		time.Sleep(100 * time.Millisecond)
		moved := false
		for i, c := range counters {
			if v := c.Load(); v != vals[i] {
				vals[i], moved = v, true
			}
		}
		if moved {
			still = 0
		} else if still++; still >= 5 {
			break
		}
	}
	return vals
}

const bigBody = 64 << 20 // what each client would move without flow control

// Clients that never read a large response hold at most the flow-control window of
// the gateway's memory each: the upstream is read only as the client takes the
// response (HTTP/1.1: the socket fills; h2c: the client gives no WINDOW_UPDATE).
// Once they leave, the upstream requests end.
func TestFlowControlSlowReaders(t *testing.T) {
	const clients = 4
	counters := make([]*atomic.Int64, clients)
	for i := range counters {
		counters[i] = new(atomic.Int64)
	}
	var upstreamDone sync.WaitGroup
	upstreamDone.Add(clients)
	chunk := bytes.Repeat([]byte("x"), 64<<10)
	e := startEdge(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/warm" {
			return
		}
		defer upstreamDone.Done()
		var i int
		_, _ = fmt.Sscanf(r.URL.Path, "/big/%d", &i)
		w.Header().Set("content-length", fmt.Sprint(bigBody))
		for sent := 0; sent < bigBody; sent += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
			counters[i].Add(int64(len(chunk)))
		}
	}))
	warm(t, e)
	before := heapInUse()
	var conns []net.Conn
	for i := range clients {
		if i%2 == 0 {
			conn, err := net.Dial("tcp", e.addr)
			require.NoError(t, err)
			conns = append(conns, conn)
			_, err = io.WriteString(conn, h1Request("GET", fmt.Sprintf("/big/%d", i)))
			require.NoError(t, err)
			require.NoError(t, conn.SetReadDeadline(time.Now().Add(hangGuard)))
			res, err := http.ReadResponse(bufio.NewReaderSize(conn, 16), nil)
			require.NoError(t, err)
			require.Equal(t, 200, res.StatusCode) // and never read the body
		} else {
			c := dialH2(t, e.addr)
			conns = append(conns, c.conn)
			id := c.request("GET", fmt.Sprintf("/big/%d", i), nil, nil)
			for { // up to the response headers; no WINDOW_UPDATE ever
				f, err := c.fr.ReadFrame()
				require.NoError(t, err)
				if s, ok := f.(*http2.SettingsFrame); ok && !s.IsAck() {
					require.NoError(t, c.fr.WriteSettingsAck())
				}
				if h, ok := f.(*http2.HeadersFrame); ok && h.StreamID == id {
					break
				}
			}
		}
	}
	sent := settle(counters, 300)
	grown := heapInUse() - before
	t.Logf("upstream sent per client: %v; heap grew %d KiB", sent, grown>>10)
	for i, n := range sent {
		assert.Less(t, n, int64(bigBody/2), "client %d: the upstream was read without back-pressure", i)
	}
	assert.Less(t, grown, growthBound(clients), "heap grew %d bytes", grown)
	for _, c := range conns {
		c.Close()
	}
	ended := make(chan struct{})
	go func() { upstreamDone.Wait(); close(ended) }()
	select {
	case <-ended:
	case <-time.After(hangGuard):
		t.Fatal("upstream requests kept going after their clients left")
	}
}

// An upstream that does not read an upload holds the client back: the gateway reads
// only what the window allows.
func TestFlowControlNonReadingUpstream(t *testing.T) {
	const clients = 4
	release := make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	e := startEdge(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/warm" {
			return
		}
		<-release // never reads the body
		w.WriteHeader(204)
	}))
	warm(t, e)
	before := heapInUse()
	counters := make([]*atomic.Int64, clients)
	var conns []net.Conn
	for i := range clients {
		counters[i] = new(atomic.Int64)
		conn, err := net.Dial("tcp", e.addr)
		require.NoError(t, err)
		conns = append(conns, conn)
		require.NoError(t, conn.SetWriteDeadline(time.Now().Add(hangGuard)))
		_, err = fmt.Fprintf(conn, "POST /upload HTTP/1.1\r\nHost: gw.test\r\nContent-Length: %d\r\n\r\n", bigBody)
		require.NoError(t, err)
		go func() {
			chunk := bytes.Repeat([]byte("y"), 64<<10)
			for sent := 0; sent < bigBody; sent += len(chunk) {
				if _, err := conn.Write(chunk); err != nil {
					return
				}
				counters[i].Add(int64(len(chunk)))
			}
		}()
	}
	sent := settle(counters, 300)
	grown := heapInUse() - before
	t.Logf("client sent per upload: %v; heap grew %d KiB", sent, grown>>10)
	for i, n := range sent {
		assert.Less(t, n, int64(bigBody/2), "upload %d: the gateway read it without back-pressure", i)
	}
	assert.Less(t, grown, growthBound(clients), "heap grew %d bytes", grown)
	once.Do(func() { close(release) })
	for _, c := range conns {
		c.Close()
	}
}

// The stream idle timeout: a stalled upload gets 408, an upstream that answers
// nothing 504 (route timeout), a stalled download is reset, and a client that never
// reads is cut; each time the upstream request is cancelled.
func TestStreamTimeouts(t *testing.T) {
	upCancelled := make(chan string, 16)
	e := startEdge(t, func(c *gateway.Config) {
		c.StreamIdleTimeout = 500 * time.Millisecond
		c.UpstreamTimeout = 300 * time.Millisecond
	}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/silent": // reads the request, never answers
			_, _ = io.Copy(io.Discard, r.Body)
		case "/stall": // headers and some body, then nothing
			w.WriteHeader(200)
			_, _ = io.WriteString(w, "partial")
			w.(http.Flusher).Flush()
		case "/endless": // more than any client reads
			w.WriteHeader(200)
			chunk := bytes.Repeat([]byte("z"), 64<<10)
			for {
				if _, err := w.Write(chunk); err != nil {
					break
				}
			}
		default:
			_, _ = io.Copy(io.Discard, r.Body)
			w.WriteHeader(200)
			return
		}
		<-r.Context().Done()
		upCancelled <- r.URL.Path
	}))
	t.Run("stalled upload gets 408", func(t *testing.T) { // the idle timeout
		for _, p := range protocols {
			var r rawResult
			if p.h2 {
				c := dialH2(t, e.addr)
				id := c.request("POST", "/pub", [][2]string{{"content-length", "100"}}, []byte{}) // stream left open
				require.NoError(t, c.fr.WriteData(id, false, []byte("only ten b")))
				r = c.response(id)
			} else {
				r = rawH1(t, e.addr, "POST /pub HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 100\r\n\r\nonly ten b")
			}
			assert.Equal(t, 408, r.status, p.name)
		}
	})
	t.Run("silent upstream gets 504", func(t *testing.T) { // the route timeout
		for _, p := range protocols {
			r := e.get(t, p.h2, "/silent")
			assert.Equal(t, 504, r.status, p.name)
			assert.Equal(t, "/silent", <-upCancelled)
		}
	})
	t.Run("stalled download is reset", func(t *testing.T) {
		for _, p := range protocols {
			r := e.get(t, p.h2, "/stall")
			assert.True(t, r.reset, "%s: the stream must be reset (body %q)", p.name, r.body)
			assert.Equal(t, "/stall", <-upCancelled)
		}
	})
	t.Run("client that never reads is cut", func(t *testing.T) {
		conn, err := net.Dial("tcp", e.addr)
		require.NoError(t, err)
		defer conn.Close()
		_, err = io.WriteString(conn, h1Request("GET", "/endless"))
		require.NoError(t, err)
		select {
		case p := <-upCancelled:
			assert.Equal(t, "/endless", p)
		case <-time.After(hangGuard):
			t.Fatal("the upstream request of a client that never reads was not cancelled")
		}
	})
	t.Run("h2c header block trickled byte by byte is cut", func(t *testing.T) {
		c := dialH2(t, e.addr)
		block := c.headerBlock([][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "gw.test"}, {":path", "/pub"}, {"x-pad", strings.Repeat("p", 400)}})
		require.NoError(t, c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:1], EndStream: true}))
		sentBytes := 1
		for _, b := range block[1:] {
			time.Sleep(20 * time.Millisecond) // the trickle's pace: 400 bytes take 8 s
			if err := c.fr.WriteContinuation(1, false, []byte{b}); err != nil {
				break
			}
			sentBytes++
		}
		assert.Less(t, sentBytes, len(block)-1, "the gateway kept the connection for the whole trickle")
	})
}

// Many short streams over HTTP/1.1 and h2c keep-alive connections whose stream
// idle timer fires about when their handler ends: the upstream answers around the
// timeout, never answers (504) or stalls after the headers (reset). The timer's
// callback must never touch a stream whose handler returned (HTTP/2's writer
// panics, which crashes the process; under -race the access is a data race), and
// each client gets one of Envoy's answers.
func TestStreamIdleRace(t *testing.T) {
	const idle = 20 * time.Millisecond
	e := startEdge(t, func(c *gateway.Config) {
		c.StreamIdleTimeout = idle
		c.UpstreamTimeout = time.Hour
	}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		delay, err := time.ParseDuration(q.Get("delay"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		_, _ = io.Copy(io.Discard, r.Body) // then a client that leaves cancels r's context
		if q.Get("stall") != "" {
			w.WriteHeader(200)
			_, _ = io.WriteString(w, "partial")
			w.(http.Flusher).Flush()
		}
		select {
		case <-time.After(delay):
			_, _ = io.WriteString(w, "ok")
		case <-r.Context().Done():
		}
	}))
	const clients, perClient = 4, 30
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			var tr *http.Transport
			if p.h2 {
				tr = h2c().Transport.(*http.Transport)
			} else {
				tr = &http.Transport{}
			}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			type outcome struct {
				status int
				body   string
				err    error
			}
			outcomes := make([][]outcome, clients)
			var wg sync.WaitGroup
			for c := range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range perClient {
						n := c*perClient + i
						target := fmt.Sprintf("http://%s/p?delay=%s", e.addr, idle*time.Duration(80+n*40/(clients*perClient))/100)
						switch n % 5 {
						case 0:
							target = fmt.Sprintf("http://%s/p?delay=1h", e.addr)
						case 1:
							target = fmt.Sprintf("http://%s/p?delay=1h&stall=1", e.addr)
						}
						var o outcome
						resp, err := client.Get(target)
						if err == nil {
							var b []byte
							b, err = io.ReadAll(resp.Body)
							resp.Body.Close()
							o.status, o.body = resp.StatusCode, string(b)
						}
						o.err = err
						outcomes[c] = append(outcomes[c], o)
					}
				}()
			}
			wg.Wait()
			counts := map[string]int{}
			for _, list := range outcomes {
				for _, o := range list {
					switch {
					case o.err != nil: // a reset (after the response started)
						counts["reset"]++
					case o.status == http.StatusOK:
						counts["200"]++
						assert.Equal(t, "ok", o.body, "a 200 is whole")
					default:
						counts[strconv.Itoa(o.status)]++
						assert.Equal(t, http.StatusGatewayTimeout, o.status, "body %q", o.body) // the request had ended: never 408
					}
				}
			}
			t.Logf("outcomes %v", counts)
			assert.Equal(t, clients*perClient, counts["200"]+counts["504"]+counts["reset"])
			assert.Positive(t, counts["504"]+counts["reset"], "the idle timeout fired")
		})
	}
}

// A request without a body goes upstream without one on both protocols (Go's
// HTTP/2 server gives it an empty body to read; Envoy's codec ends the stream with
// its headers), one with a body with it.
func TestBodylessRequestUpstream(t *testing.T) {
	type got struct {
		te   []string
		cl   int64
		body string
	}
	seenCh := make(chan got, 1)
	e := startEdge(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		seenCh <- got{te: r.TransferEncoding, cl: r.ContentLength, body: string(b)}
	}))
	for _, p := range protocols {
		for _, tc := range []struct {
			method string
			body   []byte
			want   got
		}{
			{"GET", nil, got{cl: 0}},
			{"DELETE", nil, got{cl: 0}},
			{"POST", []byte("hello"), got{te: []string{"chunked"}, cl: -1, body: "hello"}},
		} {
			var r rawResult
			if p.h2 {
				c := dialH2(t, e.addr)
				r = c.response(c.request(tc.method, "/b", nil, tc.body))
			} else {
				r = rawH1(t, e.addr, h1Request(tc.method, "/b", fmt.Sprintf("Content-Length: %d", len(tc.body)))+string(tc.body))
			}
			require.Equal(t, 200, r.status, "%s %s", p.name, tc.method)
			assert.Equal(t, tc.want, <-seenCh, "%s %s", p.name, tc.method)
		}
	}
}
