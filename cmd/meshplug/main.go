// Command meshplug is the one binary users run. It only wires the repository's
// packages together: each subcommand is one file that registers itself with
// addCommand in an init function.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/meshplug/meshplug/internal/version"
)

// commands are the subcommands' constructors, registered by their files.
var commands []func() *cobra.Command

// addCommand registers a subcommand; call it from the subcommand file's init.
func addCommand(c func() *cobra.Command) { commands = append(commands, c) }

// errReported is returned by a command that has already printed its errors; main
// only sets the exit status.
var errReported = errors.New("errors reported")

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "meshplug",
		Short:         "Render, validate and run meshplug's Envoy Wasm filters",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version.Get().String(),
	}
	root.SetVersionTemplate("{{.Version}}\n")
	for _, c := range commands {
		root.AddCommand(c())
	}
	return root
}

// run executes the command line args and returns the exit status.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRoot()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.Execute(); err != nil {
		if !errors.Is(err, errReported) {
			fmt.Fprintln(stderr, "meshplug:", err)
		}
		return 1
	}
	return 0
}

func main() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) }
