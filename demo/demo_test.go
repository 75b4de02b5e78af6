package demo

import (
	"context"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshplug/meshplug/internal/gateway"
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
				_, err = io.Copy(io.Discard, resp.Body)
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
	assert.Contains(t, banner, d.LiveURL)

	t.Run("live view", func(t *testing.T) {
		resp, err := http.Get(d.LiveURL + "decisions.json")
		require.NoError(t, err)
		defer resp.Body.Close()
		var got struct {
			Recent []struct {
				Consumer string
				Kind     string `json:"kind"`
			} `json:"recent"`
			Users []gateway.UserStats `json:"users"`
		}
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&got))
		users := map[string]gateway.UserStats{}
		for _, u := range got.Users {
			users[u.User] = u
		}
		assert.Equal(t, map[string]int{"allowed": 5, "limited": 1}, users["alice"].Kinds)
		assert.Equal(t, map[string]int{"v1": 5}, users["alice"].Clusters)
		assert.Equal(t, map[string]int{"v2": 1}, users["bob"].Clusters)
		assert.Equal(t, map[string]int{"fault": 1}, users["dave"].Kinds)
		assert.Equal(t, map[string]int{"denied": 1, "allowed": 1}, users["(anonymous)"].Kinds)
		require.NotEmpty(t, got.Recent)
		assert.Equal(t, "ci-bot", got.Recent[0].Consumer, "newest first: the h2c request")
		liveInBrowser(t, d.LiveURL)
	})
}

// liveInBrowser loads the live view in headless chromium (Debian's package; skipped
// when it is not installed): the rendered DOM lists the users, and the screenshot
// shows the canary split bars, v1's blue and bob's v2 orange.
func liveInBrowser(t *testing.T, url string) {
	bin := ""
	for _, b := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(b); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		t.Skip("chromium is not installed (apt-get install chromium)")
	}
	flags := []string{"--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
		"--window-size=1000,700", "--virtual-time-budget=5000", "--user-data-dir=" + t.TempDir()}
	dom, err := exec.Command(bin, append(flags, "--dump-dom", url)...).Output()
	require.NoError(t, err)
	for _, s := range []string{"alice", "bob", "carol", "dave", "ci-bot", "v2 100%", "meshplug_ratelimit_limited"} {
		assert.Contains(t, string(dom), s)
	}
	shot := filepath.Join(t.TempDir(), "live.png")
	out, err := exec.Command(bin, append(flags, "--screenshot="+shot, url)...).CombinedOutput()
	require.NoError(t, err, "%s", out)
	f, err := os.Open(shot)
	require.NoError(t, err)
	defer f.Close()
	img, err := png.Decode(f)
	require.NoError(t, err)
	assert.Equal(t, image.Rect(0, 0, 1000, 700), img.Bounds())
	near := func(c color.Color, r, g, b uint8) bool {
		cr, cg, cb, _ := c.RGBA()
		d := func(x uint32, y uint8) bool { return int(x>>8)-int(y) < 8 && int(y)-int(x>>8) < 8 }
		return d(cr, r) && d(cg, g) && d(cb, b)
	}
	var blue, orange int
	for y := 0; y < 700; y++ {
		for x := 0; x < 1000; x++ {
			c := img.At(x, y)
			if near(c, 0x4a, 0x7b, 0xd0) {
				blue++
			}
			if near(c, 0xe0, 0x90, 0x2a) {
				orange++
			}
		}
	}
	assert.Greater(t, blue, 100, "v1 split bars")
	assert.Greater(t, orange, 100, "bob's v2 split bar")
}

func h2cOnly() *http.Protocols {
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	return p
}
