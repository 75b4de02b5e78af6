// Command cmd generates a new filter folder: go run ./internal/scaffold/cmd NAME writes
// filters/NAME (or -dir DIR) with main, config, tests and README, ready for
// `go test -count=1 ./filters/NAME/...`.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/meshplug/meshplug/internal/scaffold"
)

func main() {
	dir := flag.String("dir", "", "folder to write (default filters/NAME)")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: go run ./internal/scaffold/cmd [-dir DIR] NAME")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	name := flag.Arg(0)
	if *dir == "" {
		*dir = filepath.Join("filters", name)
	}
	if err := scaffold.Generate(*dir, name); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("wrote %s: run go test -count=1 ./%s/...\n", *dir, filepath.ToSlash(*dir))
}
