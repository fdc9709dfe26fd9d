package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/snf-dev/snf"
)

const nfsHelp = `Usage: snf nfs [NAME]

Lists the NFs snf knows. With a NAME, shows that NF's config fields (the keys of its
"config:" mapping in a chain file) with their types and defaults, and the state it keeps
with each state's access pattern.
`

func cmdNFs(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("nfs", nfsHelp, stdout, stderr)
	var name string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if name == "" {
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		for _, n := range snf.Names() {
			f, _ := snf.Lookup(n)
			fmt.Fprintf(tw, "%s\t%s\n", n, f.Summary)
		}
		tw.Flush()
		fmt.Fprintln(stdout, "\n'snf nfs NAME' shows an NF's config fields and state.")
		return nil
	}
	f, err := snf.Lookup(name)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: %s\n\nconfig fields:\n", f.Name, f.Summary)
	for _, fl := range f.Fields() {
		fmt.Fprintf(stdout, "  %s (%s)\n", fl.Name, fl.Type)
		if fl.Doc != "" {
			fmt.Fprintf(stdout, "      %s\n", fl.Doc)
		}
		if !strings.Contains(fl.Name, "[]") {
			fmt.Fprintf(stdout, "      default: %s\n", fl.Default)
		}
	}
	spec, err := snf.ChainFromNames(name)
	if err != nil {
		return err
	}
	chain, err := snf.NewChain(spec, snf.ChainOptions{})
	if err != nil {
		return err
	}
	defer chain.Close()
	r := chain.Report()[0]
	fmt.Fprintln(stdout, "\nstate:")
	for _, s := range r.FlowState {
		fmt.Fprintf(stdout, "  %s\tper flow (moves with the flow)\n", s)
	}
	for _, s := range r.Shared {
		fmt.Fprintf(stdout, "  %s\tshared, %s\n", s.Name, s.Access)
	}
	fmt.Fprintln(stdout, "\nmetrics:")
	for _, m := range r.Metrics {
		fmt.Fprintf(stdout, "  %s.%s\t%s\n", r.Name, m.Name, m.Help)
	}
	return nil
}
