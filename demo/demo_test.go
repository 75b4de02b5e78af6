package demo

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshplug/meshplug/internal/gateway/gatewaytest"
)

// The demo of `make run` starts (the same entry point as `meshplug run --demo`) and
// answers each command its banner prints as the banner says, over real sockets.
func TestDemoCommands(t *testing.T) {
	d, err := Start(context.Background(), Options{Listen: "127.0.0.1:0", WasmDir: gatewaytest.WasmDir(t), Workers: 2})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, d.Shutdown(context.Background())) })
	banner := d.Banner()
	h1 := &http.Client{}
	h2 := &http.Client{Transport: &http.Transport{Protocols: h2cOnly()}}
	for _, c := range Commands {
		t.Run(c.What, func(t *testing.T) {
			assert.Contains(t, banner, d.Curl(c))
			client := h1
			if c.H2C {
				client = h2
			}
			var resp *http.Response
			start := time.Now()
			for range max(c.Repeat, 1) {
				req, err := http.NewRequest("GET", d.URL+c.Path, nil)
				require.NoError(t, err)
				if c.User != "" {
					req.Header.Set("authorization", "Bearer "+d.Tokens[c.User])
				}
				if c.APIKey {
					req.Header.Set("x-api-key", APIKey)
				}
				start = time.Now()
				resp, err = client.Do(req)
				require.NoError(t, err)
				resp.Body.Close()
			}
			took := time.Since(start)
			assert.Equal(t, c.WantStatus, resp.StatusCode)
			assert.Equal(t, c.WantUpstream, resp.Header.Get("x-upstream"))
			switch c.WantStatus {
			case 401:
				assert.Contains(t, resp.Header.Get("www-authenticate"), "Bearer")
			case 429:
				assert.NotEmpty(t, resp.Header.Get("retry-after"))
				assert.Equal(t, "0", resp.Header.Get("ratelimit-remaining"))
				assert.Contains(t, resp.Header.Get("ratelimit-limit"), "5")
			}
			if c.Timing {
				assert.GreaterOrEqual(t, took, 300*time.Millisecond, "carol's delay")
			}
			if c.H2C {
				assert.Equal(t, 2, resp.ProtoMajor)
			}
		})
	}
	assert.Contains(t, banner, "ALICE="+d.Tokens["alice"])
}

func h2cOnly() *http.Protocols {
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	return p
}
