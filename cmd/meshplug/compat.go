package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/meshplug/meshplug/internal/wasmcompat"
)

func init() { addCommand(newCompatCmd) }

func newCompatCmd() *cobra.Command {
	var out, rawDir string
	var inPlace bool
	var shims []string
	for _, s := range wasmcompat.Shims() {
		shims = append(shims, "  "+s[0]+": "+s[1])
	}
	cmd := &cobra.Command{
		Use:   "compat IN.wasm -o OUT.wasm | compat -i [--raw-dir DIR] FILE.wasm...",
		Short: "Rewrite a Go (wasip1) proxy-wasm module to run on every Envoy since 1.33",
		Long: `compat rewrites a proxy-wasm module built with the official Go toolchain
(GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared) so that it does not depend on the
WASI calls older Envoy hosts lack or answer fatally. These imports become functions
inside the module that answer as proxy-wasm-cpp-host #533 (Envoy 1.39+) does:

` + strings.Join(shims, "\n") + `

Function indices are renumbered everywhere and the result is validated with wazero. A
module rewritten before is left as it is. A module that is not a Go wasip1 module, or that
imports one of these calls with another signature, is refused. See docs/compatibility.md
for the Envoy and Istio releases each form runs on.

With -i every FILE is rewritten in place; --raw-dir keeps a copy of each untouched
module there (make build keeps them in build/raw/).`,
		RunE: func(cmd *cobra.Command, args []string) error {
			w := cmd.OutOrStdout()
			switch {
			case inPlace && out != "":
				return errors.New("use either -o or -i")
			case inPlace:
				if len(args) == 0 {
					return errors.New("-i needs at least one FILE.wasm")
				}
				for _, f := range args {
					if err := compatFile(w, f, f, rawDir); err != nil {
						return err
					}
				}
				return nil
			case out == "":
				return errors.New("name the output with -o OUT.wasm (or rewrite in place with -i)")
			case len(args) != 1:
				return fmt.Errorf("-o takes exactly one input module, got %d", len(args))
			case rawDir != "":
				return errors.New("--raw-dir goes with -i")
			}
			return compatFile(w, args[0], out, "")
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "where to write the rewritten module")
	cmd.Flags().BoolVarP(&inPlace, "in-place", "i", false, "rewrite each FILE in place")
	cmd.Flags().StringVar(&rawDir, "raw-dir", "", "with -i: copy each module there before rewriting it")
	return cmd
}

// compatFile rewrites in to out (written whole or not at all); with rawDir, the
// untouched module is copied there first.
func compatFile(w io.Writer, in, out, rawDir string) error {
	wasm, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	rewritten, res, err := wasmcompat.Rewrite(wasm)
	if err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	if res.Already {
		fmt.Fprintf(w, "%s: already rewritten (%s)\n", in, strings.Join(alreadyReplaced(wasm), ", "))
		if in == out {
			return nil
		}
	} else if rawDir != "" {
		if err := os.MkdirAll(rawDir, 0o755); err != nil {
			return err
		}
		if err := writeFileAtomic(filepath.Join(rawDir, filepath.Base(in)), wasm); err != nil {
			return err
		}
	}
	if err := writeFileAtomic(out, rewritten); err != nil {
		return err
	}
	if !res.Already {
		fmt.Fprintf(w, "%s: %d → %d bytes, replaced %s\n", out, len(wasm), len(rewritten), strings.Join(res.Replaced, ", "))
	}
	if len(res.NeedsNewerHost) > 0 {
		fmt.Fprintf(w, "%s: warning: still imports %s from %s, which Envoy provides only since 1.39 (proxy-wasm-cpp-host #533): it will not load on older Envoy\n",
			out, strings.Join(res.NeedsNewerHost, ", "), wasmcompat.WASIModule)
	}
	return nil
}

// alreadyReplaced reads the marker section of a rewritten module.
func alreadyReplaced(wasm []byte) []string {
	names, err := wasmcompat.Replaced(wasm)
	if err != nil || len(names) == 0 {
		return []string{"nothing replaced"}
	}
	return names
}

func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}
