package main

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/meshplug/meshplug/internal/scaffold"
)

func init() { addCommand(newNewCmd) }

func newNewCmd() *cobra.Command {
	newCmd := &cobra.Command{Use: "new", Short: "Generate project files"}
	var dir string
	filter := &cobra.Command{
		Use:   "filter NAME",
		Short: "Generate a filter folder: main, config, tests through the .wasm, README",
		Long: "Generate a filter folder (default filters/NAME, relative to the module root you run it in):\n" +
			"main.go, a pure decision, a config package (Spec, Compile, Parse), tests that run natively\n" +
			"and through the compiled .wasm, and a README. It passes `go test` as generated.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d := dir
			if d == "" {
				d = filepath.Join("filters", args[0])
			}
			if err := scaffold.Generate(d, args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: run go test -count=1 ./%s/...\n", d, filepath.ToSlash(d))
			return nil
		},
	}
	filter.Flags().StringVar(&dir, "dir", "", "folder to write (default filters/NAME)")
	newCmd.AddCommand(filter)
	return newCmd
}
