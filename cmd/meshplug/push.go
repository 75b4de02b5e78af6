package main

import (
	"fmt"
	"sort"

	"github.com/spf13/cobra"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/meshplug/meshplug/api/v1alpha1"
	"github.com/meshplug/meshplug/controller"
	"github.com/meshplug/meshplug/internal/wasmoci"
)

func init() { addCommand(newPushCmd) }

func newPushCmd() *cobra.Command {
	var wasmDir, repository, tag string
	var plainHTTP bool
	cmd := &cobra.Command{
		Use:   "push",
		Short: "Push the filters' .wasm modules to an OCI registry as Istio Wasm images",
		Long: `push packs each <--wasm-dir>/<filter>.wasm as an OCI image Istio's agent pulls (the
compat variant of the Wasm image spec: one tar+gzip layer holding plugin.wasm) and
pushes it to <--repository>/<filter>:<--tag>. It prints, per filter, the oci:// url
and the sha256 a WasmPlugin needs for it: the image manifest's digest. Registry
credentials are not supported yet (anonymous push).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
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
				if err := wasmoci.Push(cmd.Context(), repo, img, tag); err != nil {
					return fmt.Errorf("%s: %w", ref, err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s oci://%s:%s sha256=%s\n", f, ref, tag, img.Manifest.Digest.Encoded())
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&wasmDir, "wasm-dir", "build", "directory holding the filters' <filter>.wasm (make build)")
	fl.StringVar(&repository, "repository", "", "registry and repository prefix, e.g. ghcr.io/acme/meshplug (required)")
	fl.StringVar(&tag, "tag", "latest", "image tag")
	fl.BoolVar(&plainHTTP, "plain-http", false, "talk HTTP instead of HTTPS to the registry (a local registry)")
	_ = cmd.MarkFlagRequired("repository")
	return cmd
}
