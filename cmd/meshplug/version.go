package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/meshplug/meshplug/internal/version"
)

func init() { addCommand(newVersionCmd) }

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print meshplug's version and the commit it was built from",
		Long: `version prints the release version, the git commit ("-dirty" when built from a tree
with uncommitted changes), the Go toolchain and the platform. --version on the root
command prints the same line.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintln(cmd.OutOrStdout(), version.Get())
			return nil
		},
	}
}
