package gateway_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// hangGuard bounds each raw exchange: a test that hits it failed (the gateway hung),
// it measures nothing.
const hangGuard = 30 * time.Second

// rawResult is what a raw client got: a response, or a reset/closed stream.
type rawResult struct {
	status  int
	header  http.Header
	body    []byte
	reset   bool // HTTP/2 RST_STREAM, or the connection closed without a response
	rstCode http2.ErrCode
}

// rawH1 writes req (bytes as given) on a new connection and reads one response.
func rawH1(t testing.TB, addr, req string) rawResult {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(hangGuard)))
	_, err = io.WriteString(conn, req)
	require.NoError(t, err)
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		require.False(t, isTimeout(err), "hang guard hit")
		return rawResult{reset: true}
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	// A body cut short (the stream was reset) counts as a reset.
	return rawResult{status: res.StatusCode, header: res.Header, body: body, reset: err != nil}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// h2Conn is a raw cleartext HTTP/2 client connection (prior knowledge) written frame
// by frame.
type h2Conn struct {
	t    testing.TB
	conn net.Conn
	fr   *http2.Framer
	enc  *hpack.Encoder
	hbuf bytes.Buffer
	dec  *hpack.Decoder
	next uint32
}

func dialH2(t testing.TB, addr string) *h2Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	require.NoError(t, conn.SetDeadline(time.Now().Add(hangGuard)))
	_, err = io.WriteString(conn, http2.ClientPreface)
	require.NoError(t, err)
	c := &h2Conn{t: t, conn: conn, fr: http2.NewFramer(conn, conn), next: 1}
	c.fr.MaxHeaderListSize = 1 << 20
	c.enc = hpack.NewEncoder(&c.hbuf)
	c.dec = hpack.NewDecoder(4096, nil)
	require.NoError(t, c.fr.WriteSettings())
	return c
}

// headerBlock encodes a header list (pseudo-headers first, as given).
func (c *h2Conn) headerBlock(fields [][2]string) []byte {
	c.hbuf.Reset()
	for _, f := range fields {
		require.NoError(c.t, c.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]}))
	}
	return append([]byte(nil), c.hbuf.Bytes()...)
}

// request sends a request on a new stream (the block split into HEADERS and
// CONTINUATION frames of at most 16 KiB) and returns its stream id. A nil body ends
// the stream with the headers; an empty one leaves it open.
func (c *h2Conn) request(method, path string, extra [][2]string, body []byte) uint32 {
	id := c.next
	c.next += 2
	fields := append([][2]string{{":method", method}, {":scheme", "http"}, {":authority", "gw.test"}, {":path", path}}, extra...)
	block := c.headerBlock(fields)
	const max = 16 << 10
	first := block[:min(len(block), max)]
	rest := block[len(first):]
	require.NoError(c.t, c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: first, EndStream: body == nil, EndHeaders: len(rest) == 0}))
	for len(rest) > 0 {
		n := min(len(rest), max)
		require.NoError(c.t, c.fr.WriteContinuation(id, n == len(rest), rest[:n]))
		rest = rest[n:]
	}
	if body != nil {
		for len(body) > 0 {
			n := min(len(body), 16<<10)
			require.NoError(c.t, c.fr.WriteData(id, n == len(body), body[:n]))
			body = body[n:]
		}
	}
	return id
}

// response reads frames until stream id ends (END_STREAM, RST_STREAM, GOAWAY or the
// connection closing).
func (c *h2Conn) response(id uint32) rawResult {
	res := rawResult{header: http.Header{}}
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			require.False(c.t, isTimeout(err), "hang guard hit")
			res.reset = true
			return res
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				require.NoError(c.t, c.fr.WriteSettingsAck())
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				require.NoError(c.t, c.fr.WritePing(true, f.Data))
			}
		case *http2.GoAwayFrame:
			if f.LastStreamID < id {
				res.reset = true
				return res
			}
		case *http2.RSTStreamFrame:
			if f.StreamID == id {
				res.reset, res.rstCode = true, f.ErrCode
				return res
			}
		case *http2.HeadersFrame:
			if f.StreamID != id {
				continue
			}
			fields, err := c.dec.DecodeFull(f.HeaderBlockFragment())
			require.NoError(c.t, err)
			for _, hf := range fields {
				if hf.Name == ":status" {
					res.status = atoi(hf.Value)
				} else {
					res.header.Add(hf.Name, hf.Value)
				}
			}
			if f.StreamEnded() {
				return res
			}
		case *http2.DataFrame:
			if f.StreamID != id {
				continue
			}
			res.body = append(res.body, f.Data()...)
			if n := len(f.Data()); n > 0 {
				require.NoError(c.t, c.fr.WriteWindowUpdate(0, uint32(n)))
				require.NoError(c.t, c.fr.WriteWindowUpdate(id, uint32(n)))
			}
			if f.StreamEnded() {
				return res
			}
		}
	}
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

// h1Request is a raw HTTP/1.1 request with the given target and extra header lines.
func h1Request(method, target string, lines ...string) string {
	var b strings.Builder
	b.WriteString(method + " " + target + " HTTP/1.1\r\nHost: gw.test\r\n")
	for _, l := range lines {
		b.WriteString(l + "\r\n")
	}
	b.WriteString("Connection: close\r\n\r\n")
	return b.String()
}
