package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"github.com/snf-dev/snf/port/pcapfile"
	"github.com/snf-dev/snf/trace"
)

const traceHelp = `Usage:
  snf trace stats [--gap DURATION] CAPTURE...
  snf trace compose --out FILE INPUT...
  snf trace gen --out FILE [flags]     (see 'snf trace gen --help')

stats prints what a capture holds: packets, bytes, TCP/UDP flows (both directions together),
flowlets at the given gap (a new flowlet when a flow's packet comes more than the gap after its
previous one), SYNs, source addresses, duration and rates.

compose merges captures into one, by timestamp, after moving each in time and re-addressing
it. An INPUT is a capture file followed by comma-separated options:
  shift=DURATION     add DURATION to every timestamp (may be negative: shift=-1s)
  start=TIME         move the capture so its first packet is at TIME (RFC 3339)
  map=OLD=NEW        replace address OLD by NEW as source and destination (repeatable);
                     checksums are updated
The output is pcapng if its name ends in .pcapng, else pcap.

Examples:
  snf trace stats --gap 1ms capture.pcap
  snf trace compose --out victim.pcap \
      ssh.pcap,map=192.168.1.10=10.0.0.5 \
      http.pcap,shift=10s,map=141.142.228.5=10.0.0.5
`

func cmdTrace(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 { // a usage error: the help on stderr
		fmt.Fprint(stderr, traceHelp)
		return &exitError{code: 2}
	}
	if isHelpWord(args[0]) {
		fmt.Fprint(stdout, traceHelp)
		return nil
	}
	switch args[0] {
	case "stats":
		return traceStats(ctx, args[1:], stdout, stderr)
	case "compose":
		return traceCompose(ctx, args[1:], stdout, stderr)
	case "gen":
		return traceGen(ctx, args[1:], stdout, stderr)
	}
	return &exitError{2, fmt.Sprintf("trace: unknown subcommand %q (stats, compose or gen; see 'snf trace --help')", args[0])}
}

func traceStats(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("trace stats", traceHelp, stdout, stderr)
	gap := fs.Duration("gap", 500*time.Microsecond, "flowlet gap")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return &exitError{2, "trace stats: give one or more captures"}
	}
	if *gap <= 0 {
		return &exitError{2, "trace stats: --gap must be > 0"}
	}
	for i, path := range fs.Args() {
		r, err := pcapfile.Open(path)
		if err != nil {
			return err
		}
		st, err := trace.Stats(ctxReader{r, ctx}, *gap)
		r.Close()
		if cancelled(ctx, err) {
			return &exitError{130, fmt.Sprintf("trace stats: interrupted in %s after %d packets", path, st.Packets)}
		}
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		fmt.Fprintf(stdout, "%s\n", path)
		if ferr := st.Format(stdout); ferr != nil {
			return ferr
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func traceCompose(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("trace compose", traceHelp, stdout, stderr)
	out := fs.String("out", "", "output capture (required)")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if *out == "" {
		return &exitError{2, "trace compose: --out is required"}
	}
	if fs.NArg() == 0 {
		return &exitError{2, "trace compose: give one or more inputs"}
	}
	var inputs []trace.ComposeInput
	var readers []*pcapfile.Reader
	defer func() {
		for _, r := range readers {
			r.Close()
		}
	}()
	var link uint32 = pcapfile.LinkTypeEthernet
	var paths []namedPath
	for _, spec := range fs.Args() {
		in, path, err := parseInput(spec)
		if err != nil {
			return &exitError{2, "trace compose: " + err.Error()}
		}
		inputs = append(inputs, in)
		paths = append(paths, namedPath{"the input " + path, path})
	}
	// Every input checked before any is opened, the output created after.
	if err := checkOutputs("trace compose", []namedPath{{"--out", *out}}, paths); err != nil {
		return err
	}
	for i, p := range paths {
		r, err := pcapfile.Open(p.path)
		if err != nil {
			return err
		}
		readers = append(readers, r)
		inputs[i].Reader = ctxReader{r, ctx}
	}
	w, err := pcapfile.Create(*out, pcapfile.FormatFromName(*out), link, 0)
	if err != nil {
		return err
	}
	n, err := trace.Compose(inputs, w)
	if cerr := w.Close(); (err == nil || cancelled(ctx, err)) && cerr != nil {
		err = fmt.Errorf("write %s: %w", *out, cerr)
	}
	if cancelled(ctx, err) {
		return interruptedWriting("trace compose", *out, int64(n))
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: %d packets from %d inputs\n", *out, n, len(inputs))
	return nil
}

// parseInput reads "FILE,shift=D,start=T,map=A=B,…".
func parseInput(spec string) (trace.ComposeInput, string, error) {
	parts := strings.Split(spec, ",")
	in := trace.ComposeInput{}
	for _, opt := range parts[1:] {
		k, v, ok := strings.Cut(opt, "=")
		if !ok {
			return in, "", fmt.Errorf("%s: option %q: want shift=, start= or map=", parts[0], opt)
		}
		switch k {
		case "shift":
			d, err := time.ParseDuration(v)
			if err != nil {
				return in, "", fmt.Errorf("%s: shift=%s: not a duration (e.g. 1.5s, -200ms)", parts[0], v)
			}
			in.Shift = d
		case "start":
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return in, "", fmt.Errorf("%s: start=%s: not an RFC 3339 time (e.g. 2024-01-02T15:04:05Z)", parts[0], v)
			}
			in.Start = t
		case "map":
			a, b, ok := strings.Cut(v, "=")
			from, err1 := netip.ParseAddr(a)
			to, err2 := netip.ParseAddr(b)
			if !ok || err1 != nil || err2 != nil {
				return in, "", fmt.Errorf("%s: map=%s: want map=OLD=NEW with two addresses", parts[0], v)
			}
			if from.Is4() != to.Is4() {
				return in, "", fmt.Errorf("%s: map=%s: both addresses must be IPv4 or both IPv6", parts[0], v)
			}
			if in.Rewrite == nil {
				in.Rewrite = map[netip.Addr]netip.Addr{}
			}
			in.Rewrite[from] = to
		default:
			return in, "", fmt.Errorf("%s: unknown option %q (shift, start, map)", parts[0], k)
		}
	}
	return in, parts[0], nil
}
