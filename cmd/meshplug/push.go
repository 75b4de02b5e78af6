package main

import (
	"errors"
	"fmt"
	"sort"

	"github.com/spf13/cobra"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/retry"

	"github.com/meshplug/meshplug/api/v1alpha1"
	"github.com/meshplug/meshplug/controller"
	"github.com/meshplug/meshplug/internal/regauth"
	"github.com/meshplug/meshplug/internal/version"
	"github.com/meshplug/meshplug/internal/wasmoci"
)

func init() { addCommand(newPushCmd) }

func newPushCmd() *cobra.Command {
	var wasmDir, repository, tag string
	var plainHTTP, passwordStdin bool
	var ro regauth.Options
	cmd := &cobra.Command{
		Use:   "push",
		Short: "Push the filters' .wasm modules to an OCI registry as Istio Wasm images",
		Long: `push packs the bundle <--wasm-dir>/meshplug.wasm (every filter in one module, the
one WasmPlugins use by default) and each <filter>.wasm found there as an OCI image
Istio's agent pulls (the compat variant of the Wasm image spec: one tar+gzip layer
holding plugin.wasm) and pushes it to <--repository>/<meshplug or filter>:<--tag>. It
prints, per module, the oci:// url and the sha256 a WasmPlugin needs for it: the image
manifest's digest.

Credentials: --username with --password-stdin (the password is the first line of
standard input), else the docker config file (--registry-config, default
$DOCKER_CONFIG/config.json or ~/.docker/config.json): its "auths" entries and its
credential helpers ("credHelpers", "credsStore": docker-credential-<name> on PATH), as
docker login writes them. Without any, the push is anonymous. Secrets are never
printed; a registry that refuses the push is quoted (status and its error message).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if passwordStdin {
				if ro.Username == "" {
					return fmt.Errorf("--password-stdin needs --username")
				}
				p, err := regauth.ReadPassword(cmd.InOrStdin())
				if err != nil {
					return err
				}
				ro.Password = p
			}
			store, err := regauth.Store(ro)
			if err != nil {
				return err
			}
			client := &auth.Client{Client: retry.DefaultClient, Cache: auth.NewCache(), Credential: regauth.CredentialFunc(store)}
			client.SetUserAgent("meshplug/" + version.Get().Version)
			mods, err := controller.LoadModules(wasmDir)
			if err != nil {
				return err
			}
			var filters []string
			for _, s := range v1alpha1.Sections {
				if _, ok := mods.Get(s.Filter); ok {
					filters = append(filters, s.Filter)
				}
			}
			sort.Strings(filters)
			if _, ok := mods.Get(controller.Bundle); ok {
				filters = append([]string{controller.Bundle}, filters...)
			}
			for _, f := range filters {
				m, _ := mods.Get(f)
				img, err := wasmoci.Pack(m.Data)
				if err != nil {
					return err
				}
				ref := repository + "/" + f
				repo, err := remote.NewRepository(ref)
				if err != nil {
					return err
				}
				repo.PlainHTTP = plainHTTP
				repo.Client = client
				if err := wasmoci.Push(cmd.Context(), repo, img, tag); err != nil {
					if errors.Is(err, auth.ErrBasicCredentialNotFound) {
						return fmt.Errorf("%s: the registry requires authentication and no credentials were found for %s "+
							"(give --username and --password-stdin, or docker login / a credential helper in the docker config)", ref, repo.Reference.Registry)
					}
					return fmt.Errorf("%s: %w", ref, err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s oci://%s:%s sha256=%s\n", f, ref, tag, img.Manifest.Digest.Encoded())
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&wasmDir, "wasm-dir", "build", "directory holding the bundle meshplug.wasm and the filters' <filter>.wasm (make build)")
	fl.StringVar(&repository, "repository", "", "registry and repository prefix, e.g. ghcr.io/acme/meshplug (required)")
	fl.StringVar(&tag, "tag", "latest", "image tag")
	fl.BoolVar(&plainHTTP, "plain-http", false, "talk HTTP instead of HTTPS to the registry (a local registry)")
	fl.StringVarP(&ro.Username, "username", "u", "", "registry user name; the password is read with --password-stdin")
	fl.BoolVar(&passwordStdin, "password-stdin", false, "read the registry password (or token) from the first line of standard input")
	fl.StringVar(&ro.ConfigPath, "registry-config", "", "docker config file holding credentials (default $DOCKER_CONFIG/config.json or ~/.docker/config.json)")
	_ = cmd.MarkFlagRequired("repository")
	return cmd
}
