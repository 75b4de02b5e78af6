package main

import (
	"context"
	"crypto/sha256"
	b64 "encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/meshplug/meshplug/internal/version"
	"github.com/meshplug/meshplug/internal/wasmoci"
	"github.com/meshplug/meshplug/internal/wasmoci/ocitest"
)

// TestPush pushes three modules (the bundle and two filters') to a real registry and pulls each back by the printed
// reference: same bytes, and the printed sha256 is the manifest digest.
func TestPush(t *testing.T) {
	addr := ocitest.Registry(t)
	dir := t.TempDir()
	mods := map[string][]byte{"meshplug": []byte("\x00asm bundle"), "auth": []byte("\x00asm auth"), "fault": []byte("\x00asm fault")}
	for f, b := range mods {
		require.NoError(t, os.WriteFile(filepath.Join(dir, f+".wasm"), b, 0o644))
	}
	code, out, errs := runCLI(t, "", "push", "--wasm-dir", dir, "--repository", addr+"/mp", "--tag", "v1", "--plain-http")
	require.Equal(t, 0, code, errs)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 3, out)
	assert.True(t, strings.HasPrefix(lines[0], "meshplug "), "the bundle first: %s", out)
	for _, l := range lines {
		var f, url, sum string
		_, err := fmt.Sscanf(l, "%s %s sha256=%s", &f, &url, &sum)
		require.NoError(t, err, l)
		assert.Equal(t, "oci://"+addr+"/mp/"+f+":v1", url)
		repo, err := remote.NewRepository(addr + "/mp/" + f)
		require.NoError(t, err)
		repo.PlainHTTP = true
		got, desc, err := wasmoci.Pull(context.Background(), repo, "v1")
		require.NoError(t, err)
		want, have := sha256.Sum256(mods[f]), sha256.Sum256(got)
		assert.Equal(t, hex.EncodeToString(want[:]), hex.EncodeToString(have[:]), f)
		assert.Equal(t, desc.Digest.Encoded(), sum, f)
	}

	code, _, errs = runCLI(t, "", "push", "--wasm-dir", t.TempDir(), "--repository", addr+"/mp")
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "no filter modules")
}

func TestControllerFlags(t *testing.T) {
	code, _, errs := runCLI(t, "", "controller", "--wasm-dir", t.TempDir())
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, `at least one of the flags in the group [module-base-url module-oci-repository] is required`)
	code, _, errs = runCLI(t, "", "controller", "--module-base-url", "http://x", "--module-oci-repository", "r.example/mp")
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, `[module-base-url module-oci-repository] were all set`)
	code, _, errs = runCLI(t, "", "controller", "--wasm-dir", "/nonexistent", "--module-base-url", "http://x")
	assert.Equal(t, 1, code)
	in := version.Get()
	assert.Contains(t, errs, fmt.Sprintf(`"msg":"starting meshplug controller","version":%q,"commit":%q`, in.Version, in.Commit), "the version is the first thing logged")
	assert.Contains(t, errs, "no filter modules (meshplug.wasm or <filter>.wasm) in /nonexistent")
}

// TestPushCredentials pushes to a registry that requires authentication, with each
// way of giving credentials, and checks that secrets never reach the output and that
// a refusal quotes the registry.
func TestPushCredentials(t *testing.T) {
	const user, secret = "ci-bot", "s3cret-Pa55-do-not-print"
	addr := ocitest.RegistryWithAuth(t, user, secret)
	wasmDir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(wasmDir, "fault.wasm"), []byte("\x00asm fault"), 0o644))
	base64 := func(s string) string { return b64.StdEncoding.EncodeToString([]byte(s)) }

	// A credential helper as docker runs them: `docker-credential-<name> get` reads the
	// server on stdin and answers JSON.
	bin := t.TempDir()
	helper := "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread server\n" +
		"[ \"$server\" = \"" + addr + "\" ] || { echo 'credentials not found in native keychain'; exit 1; }\n" +
		"printf '{\"ServerURL\":\"%s\",\"Username\":\"" + user + "\",\"Secret\":\"" + secret + "\"}' \"$server\"\n"
	require.NoError(t, os.WriteFile(filepath.Join(bin, "docker-credential-meshtest"), []byte(helper), 0o755))
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))

	push := []string{"push", "--wasm-dir", wasmDir, "--repository", addr + "/mp", "--plain-http"}
	for _, tc := range []struct {
		name   string
		stdin  string
		args   []string
		docker string // $DOCKER_CONFIG/config.json
		file   string // --registry-config
		ok     bool
		err    string
	}{
		{name: "anonymous", err: "the registry requires authentication and no credentials were found for " + addr},
		{name: "username and password on stdin", stdin: secret + "\n", args: []string{"--username", user, "--password-stdin"}, ok: true},
		{name: "password without a trailing newline", stdin: secret, args: []string{"-u", user, "--password-stdin"}, ok: true},
		{name: "wrong password", stdin: "wrong-" + secret + "\n", args: []string{"--username", user, "--password-stdin"}, err: "401"},
		{name: "username without password-stdin", args: []string{"--username", user}, err: "--username needs --password-stdin"},
		{name: "password-stdin without username", stdin: secret, args: []string{"--password-stdin"}, err: "--password-stdin needs --username"},
		{name: "empty stdin", args: []string{"--username", user, "--password-stdin"}, err: "standard input holds no password"},
		{name: "docker config auths", ok: true, docker: `{"auths":{"` + addr + `":{"auth":"` + base64(user+":"+secret) + `"}}}`},
		{name: "docker config with a wrong password", err: "401", docker: `{"auths":{"` + addr + `":{"auth":"` + base64(user+":x"+secret) + `"}}}`},
		{name: "docker config for another registry", err: "no credentials were found for " + addr, docker: `{"auths":{"other.example:5000":{"auth":"` + base64(user+":"+secret) + `"}}}`},
		{name: "registry-config file", ok: true, file: `{"auths":{"` + addr + `":{"username":"` + user + `","password":"` + secret + `"}}}`},
		{name: "credential helper", ok: true, docker: `{"credHelpers":{"` + addr + `":"meshtest"}}`},
		{name: "credential store", ok: true, docker: `{"credsStore":"meshtest"}`},
		{name: "missing credential helper", err: "docker-credential-nosuchhelper", docker: `{"credHelpers":{"` + addr + `":"nosuchhelper"}}`},
		{name: "broken docker config", err: "docker config file", docker: `{"auths":`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			t.Setenv("DOCKER_CONFIG", dir) // never the machine's own
			if tc.docker != "" {
				require.NoError(t, os.WriteFile(filepath.Join(dir, "config.json"), []byte(tc.docker), 0o600))
			}
			args := append(append([]string{}, push...), "--tag", strings.ReplaceAll(tc.name, " ", "-"))
			if tc.file != "" {
				f := filepath.Join(t.TempDir(), "registry.json")
				require.NoError(t, os.WriteFile(f, []byte(tc.file), 0o600))
				args = append(args, "--registry-config", f)
			}
			args = append(args, tc.args...)
			code, out, errs := runCLI(t, tc.stdin, args...)
			assert.NotContains(t, out+errs, secret, "the secret is never printed")
			assert.NotContains(t, out+errs, base64(user+":"+secret))
			if tc.ok {
				require.Equal(t, 0, code, errs)
				assert.Contains(t, out, "fault oci://"+addr+"/mp/fault:")
				return
			}
			assert.Equal(t, 1, code, out)
			assert.Contains(t, errs, tc.err)
			if tc.err == "401" {
				assert.Contains(t, errs, "response status code 401: Unauthorized", "the registry's answer")
			}
		})
	}
}

// TestPushRefused: a registry that refuses the push (read-only) is quoted: the request
// it refused and its answer (status, and the error codes of its body when it sends
// any: see TestPushCredentials).
func TestPushRefused(t *testing.T) {
	addr := ocitest.RegistryReadOnly(t)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "fault.wasm"), []byte("\x00asm fault"), 0o644))
	code, out, errs := runCLI(t, "", "push", "--wasm-dir", dir, "--repository", addr+"/mp", "--plain-http")
	assert.Equal(t, 1, code)
	assert.Empty(t, out)
	assert.Contains(t, errs, addr+"/mp/fault: ")
	assert.Contains(t, errs, `POST "http://`+addr+`/v2/mp/fault/blobs/uploads/": response status code 405: Method Not Allowed`)
}

// TestPushThenRender: the sha256 render writes for an oci:// url is the digest of the
// manifest the registry serves for what push pushed (what Istio's agent compares), for
// tag and digest urls, for the bundle (the default) and per-filter modules; a url
// pinning another image, or with --per-filter-modules an oci:// url naming one image
// for every filter, is refused.
func TestPushThenRender(t *testing.T) {
	addr := ocitest.Registry(t)
	dir := t.TempDir()
	for _, f := range []string{"meshplug", "auth", "ratelimit", "routehint", "fault"} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, f+".wasm"), []byte("\x00asm\x01\x00\x00\x00 "+f), 0o644))
	}
	code, out, errs := runCLI(t, "", "push", "--wasm-dir", dir, "--repository", addr+"/mp", "--tag", "v2", "--plain-http")
	require.Equal(t, 0, code, errs)
	pushed := map[string]string{} // filter -> digest push printed
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var f, url, sum string
		_, err := fmt.Sscanf(l, "%s %s sha256=%s", &f, &url, &sum)
		require.NoError(t, err, l)
		pushed[f] = sum
	}
	require.Len(t, pushed, 5)

	served := func(f string) string { // the manifest digest the registry serves for the tag
		repo, err := remote.NewRepository(addr + "/mp/" + f)
		require.NoError(t, err)
		repo.PlainHTTP = true
		desc, err := repo.Resolve(context.Background(), "v2")
		require.NoError(t, err)
		return desc.Digest.Encoded()
	}
	fileSum := func(f string) string {
		b, err := os.ReadFile(filepath.Join(dir, f+".wasm"))
		require.NoError(t, err)
		s := sha256.Sum256(b)
		return hex.EncodeToString(s[:])
	}
	for f, sum := range pushed {
		assert.Equal(t, served(f), sum, f)
	}
	for _, format := range []string{"istio", "envoyfilter"} {
		for _, url := range []string{"oci://" + addr + "/mp/{filter}:v2", "oci://" + addr + "/mp/{filter}"} {
			code, out, errs := runCLI(t, "", "render", "--format", format, "--wasm-dir", dir, "--module-url", url, "--per-filter-modules", example)
			require.Equal(t, 0, code, errs)
			for f, sum := range pushed {
				if f == "meshplug" {
					assert.NotContains(t, out, sum, "%s %s --per-filter-modules: not the bundle", format, url)
					continue
				}
				assert.Contains(t, out, sum, "%s %s: the manifest digest of %s", format, url, f)
				assert.NotContains(t, out, fileSum(f), "%s %s: the module's own sha256 of %s", format, url, f)
			}
		}
		// The bundle (default): one image, named by {filter} or outright.
		for _, url := range []string{"oci://" + addr + "/mp/{filter}:v2", "oci://" + addr + "/mp/meshplug:v2"} {
			code, out, errs := runCLI(t, "", "render", "--format", format, "--wasm-dir", dir, "--module-url", url, example)
			require.Equal(t, 0, code, errs)
			assert.Contains(t, out, pushed["meshplug"], "%s %s: the manifest digest of the bundle", format, url)
			assert.NotContains(t, out, fileSum("meshplug"), "%s %s: the bundle's own sha256", format, url)
			for _, f := range []string{"auth", "ratelimit", "routehint", "fault"} {
				assert.NotContains(t, out, pushed[f], "%s %s: the bundle, not %s's image", format, url, f)
			}
		}
	}
	// Pinned by the digest push printed: accepted; pinned to another filter's image: refused.
	code, out, errs = runCLI(t, "", "render", "--wasm-dir", dir, "--module-url", "oci://"+addr+"/mp/{filter}@sha256:"+pushed["auth"], "--per-filter-modules", "testdata/auth-only.yaml")
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, "sha256: "+pushed["auth"])
	code, out, errs = runCLI(t, "", "render", "--wasm-dir", dir, "--module-url", "oci://"+addr+"/mp/meshplug@sha256:"+pushed["meshplug"], example)
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, "sha256: "+pushed["meshplug"])
	for name, c := range map[string]struct {
		url, want string
		perFilter bool
	}{
		"pinned to another image":         {"oci://" + addr + "/mp/{filter}@sha256:" + pushed["auth"], "pins image sha256:" + pushed["auth"], true},
		"bundle pinned to a filter image": {"oci://" + addr + "/mp/meshplug@sha256:" + pushed["auth"], "pins image sha256:" + pushed["auth"], false},
		"one image for all filters":       {"oci://" + addr + "/mp/meshplug:v2", "put {filter} in it", true},
	} {
		args := []string{"render", "--wasm-dir", dir, "--module-url", c.url, example}
		if c.perFilter {
			args = append(args, "--per-filter-modules")
		}
		code, out, errs := runCLI(t, "", args...)
		assert.Equal(t, 1, code, name)
		assert.Empty(t, out, name)
		assert.Contains(t, errs, c.want, name)
	}
	// https:// urls keep the module's own sha256.
	code, out, errs = runCLI(t, "", "render", "--wasm-dir", dir, "--module-url", "https://m.example/wasm/", example)
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, "sha256: "+fileSum("meshplug"))
	code, out, errs = runCLI(t, "", "render", "--wasm-dir", dir, "--module-url", "https://m.example/wasm/", "--per-filter-modules", example)
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, "sha256: "+fileSum("auth"))
}
