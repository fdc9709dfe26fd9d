// Command tbrun runs a capture through a chain that may use the tokenbucket example NF as
// well as the library's NFs. `snf run` cannot: a chain can only name NFs linked into the
// binary that runs it, and cmd/snf links the library (nf/all) only.
//
//	go run ./examples/tokenbucket/cmd/tbrun --in capture.pcap --out out.pcap
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/engine"
	_ "github.com/snf-dev/snf/examples/tokenbucket" // registers "tokenbucket"
	_ "github.com/snf-dev/snf/nf/all"               // registers the library's NFs
	"github.com/snf-dev/snf/port/pcapfile"
)

func main() {
	chainFile := flag.String("chain", "examples/tokenbucket/chain.yaml", "chain file")
	in := flag.String("in", "", "input capture (pcap or pcapng, Ethernet)")
	out := flag.String("out", "", "output capture of the packets that leave the chain (optional)")
	flag.Parse()
	if err := run(*chainFile, *in, *out, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "tbrun:", err)
		os.Exit(1)
	}
}

// run is main without the process: it prints a summary to stdout and alerts, as JSON
// lines, to alertsTo.
func run(chainFile, in, out string, stdout, alertsTo io.Writer) (err error) {
	if in == "" {
		return errors.New("--in is required")
	}
	data, err := os.ReadFile(chainFile)
	if err != nil {
		return err
	}
	spec, err := snf.ParseChain(data, chainFile)
	if err != nil {
		return err
	}
	chain, err := snf.NewChain(spec, snf.ChainOptions{Alerts: snf.NewJSONAlerts(alertsTo)})
	if err != nil {
		return err
	}
	defer chain.Close()

	r, err := pcapfile.Open(in)
	if err != nil {
		return err
	}
	defer r.Close()
	cfg := engine.Config{Chain: chain, In: r}
	if out != "" {
		w, cerr := pcapfile.Create(out, pcapfile.FormatFromName(out), r.LinkType(), 0)
		if cerr != nil {
			return cerr
		}
		defer func() { err = errors.Join(err, w.Close()) }() // Close flushes the output
		cfg.Out = w
	}
	sum, err := engine.Run(context.Background(), cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d packets in, %d out, %d dropped\n", sum.Packets, sum.Chain.Out, sum.Chain.Dropped)
	for _, nf := range chain.Report() {
		fmt.Fprintf(stdout, "%s: in %d, dropped %d", nf.Name, nf.Stats.In, nf.Stats.Dropped)
		for _, m := range nf.Metrics {
			fmt.Fprintf(stdout, ", %s %d", m.Name, m.Value)
		}
		fmt.Fprintln(stdout)
	}
	return sum.InputErr // a capture cut short: every packet before the cut was processed
}
