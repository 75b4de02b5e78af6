package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func init() { addCommand(newValidateCmd) }

func newValidateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "validate FILE...",
		Short: "Check TrafficPolicy files as the API server and the filters would",
		Long: `validate decodes every document of the files strictly (unknown and duplicate
fields are errors) and checks it as the CRD's schema does and as each filter's own
configuration parser does. Each problem is printed with its file, line, document and
field path; the exit status is 1 if there is any. "-" reads standard input.

Valid policies may get warnings (exit status 0): path rules that rely on something
the filters cannot check for themselves (TrafficPolicy.PathWarnings: a regex written
for un-normalized spellings, auth's path_params "literal" or "strip", ';' in an auth rule's
path), and sidecar policies whose routeHints read a header auth writes, which they
never see there (TrafficPolicy.DirectionWarnings: routeHints runs outbound, auth
inbound).`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			docs, err := readPolicies(args, cmd.InOrStdin())
			if err != nil {
				return err
			}
			if err := report(cmd.ErrOrStderr(), docs); err != nil {
				return err
			}
			for _, d := range docs {
				for _, w := range d.policy.Warnings() {
					fmt.Fprintf(cmd.ErrOrStderr(), "%s: warning: %s\n", d.at(w.Path), w)
				}
			}
			noun := "policies"
			if len(docs) == 1 {
				noun = "policy"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d %s valid\n", len(docs), noun)
			return nil
		},
	}
}
