package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/port/pcapfile"
	"github.com/snf-dev/snf/trace"
)

const traceGenHelp = `Usage:
  snf trace gen --out FILE [flags]

gen writes realistic link traffic to a capture: flows arrive as a Poisson process at
  rate = load × link × profile(t) / (8 × mean flow size)
(plus --scan-frac of lone SYNs), their sizes drawn from a published flow-size distribution;
each flow sends its bytes in ON bursts separated by OFF gaps (its flowlets), with ACKs or
replies in the other direction, between many clients and a set of servers. Packets are in
time order, headers and checksums valid; the same flags and seed give the same bytes. The
trace starts with no flow active, so with long flows the load builds up over their lifetime:
--warmup D runs the workload for D before the trace starts to begin in steady state. The
output is pcapng if its name ends in .pcapng, else pcap.

Distributions (--dist): websearch (DCTCP), datamining (VL2), fb_hadoop (Facebook Hadoop),
alistorage (Alibaba storage), internet_edge_agh2015 (university Internet edge).

` + trace.ProfileHelp + `

` + trace.GapHelp + `

Examples:
  snf trace gen --out ws.pcap --dist websearch --duration 2s --load 0.3
  snf trace gen --out day.pcap --dist internet_edge_agh2015 --link 1Gbps \
      --profile diurnal:min=0.2,max=1+bursts:x=3,len=50ms,rate=2 --duration 30s
  snf trace gen --out small.pcap --packets 100000 --scan-frac 0.2 --gap intraflow
`

func traceGen(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("trace gen", traceGenHelp, stdout, stderr)
	def := trace.DefaultWorkloadConfig()
	out := fs.String("out", "", "output capture (required)")
	dist := fs.String("dist", def.Dist, "flow-size distribution")
	profile := fs.String("profile", def.Profile, "load profile over time")
	duration := fs.Duration("duration", def.Duration, "trace duration (flows arrive until then)")
	load := fs.Float64("load", def.Load, "fraction of the link filled at profile 1")
	link := fs.String("link", "10Gbps", "link bit rate")
	seed := fs.Uint64("seed", def.Seed, "random seed")
	scan := fs.Float64("scan-frac", def.ScanFrac, "fraction of flows that are a lone SYN")
	packets := fs.Int("packets", 0, "stop after this many packets (0: no limit)")
	udp := fs.Float64("udp-frac", def.UDPFrac, "fraction of data flows that are UDP")
	reverse := fs.Float64("reverse", def.Reverse, "ACKs or replies per data packet (0 to 4)")
	small := fs.Float64("small-frac", def.SmallFrac, "fraction of data packets of at most 200 bytes")
	mtu := fs.Int("mtu", def.MTU, "IP MTU (576 to 1500)")
	burst := fs.Float64("burst", def.Burst, "mean data packets per ON burst")
	gap := fs.String("gap", def.Gap, "OFF gaps between bursts: lognormal:median=D,sigma=X, intraflow or none")
	flowRate := fs.String("flow-rate", "", "a flow's bit rate within a burst (default: the link rate)")
	rtt := fs.Duration("rtt", def.RTT, "round-trip time")
	warmup := fs.Duration("warmup", 0, "run the workload this long before the trace starts, so that it starts in steady state")
	clients := fs.Int("clients", def.Clients, "client hosts")
	servers := fs.Int("servers", def.Servers, "server hosts")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *out == "" {
		return &exitError{2, "trace gen: --out is required"}
	}
	cfg := def
	cfg.Dist, cfg.Profile, cfg.Duration, cfg.Load, cfg.Seed = *dist, *profile, *duration, *load, *seed
	cfg.ScanFrac, cfg.Packets, cfg.UDPFrac, cfg.Reverse, cfg.SmallFrac = *scan, *packets, *udp, *reverse, *small
	cfg.MTU, cfg.Burst, cfg.Gap, cfg.RTT, cfg.Clients, cfg.Servers = *mtu, *burst, *gap, *rtt, *clients, *servers
	cfg.Warmup = *warmup
	var err error
	if cfg.Link, err = trace.ParseBitRate(*link); err != nil {
		return &exitError{2, "trace gen: --link: " + err.Error()}
	}
	if *flowRate != "" {
		if cfg.FlowRate, err = trace.ParseBitRate(*flowRate); err != nil {
			return &exitError{2, "trace gen: --flow-rate: " + err.Error()}
		}
	}
	w, err := trace.NewWorkload(cfg)
	if err != nil {
		return &exitError{2, "trace gen: " + flagWords(err)}
	}
	defer w.Close()
	pw, err := pcapfile.Create(*out, pcapfile.FormatFromName(*out), w.LinkType(), 0)
	if err != nil {
		return err
	}
	start := time.Now()
	err = copyPackets(ctx, pw, w)
	if cerr := pw.Close(); (err == nil || cancelled(ctx, err)) && cerr != nil {
		err = fmt.Errorf("write %s: %w", *out, cerr)
	}
	if cancelled(ctx, err) {
		return interruptedWriting("trace gen", *out, pw.Count())
	}
	if err != nil {
		return err
	}
	st := w.Stats()
	fmt.Fprintf(stdout, "%s: %d packets, %d flows started (%d scans, %d UDP; warm-up included) of %s in %s; generated in %s\n",
		*out, st.Packets, st.Flows, st.ScanFlows, st.UDPFlows, cfg.Dist, cfg.Duration,
		time.Since(start).Round(time.Millisecond))
	return nil
}

// copyPackets writes every packet of w to pw, until ctx is done (looked at per batch: it
// then returns ctx's error).
func copyPackets(ctx context.Context, pw *pcapfile.Writer, w *trace.Workload) error {
	batch := make([]packet.Packet, 256)
	ptrs := make([]*packet.Packet, len(batch))
	for i := range batch {
		ptrs[i] = &batch[i]
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := w.Read(batch)
		if n > 0 {
			if werr := pw.Write(ptrs[:n]); werr != nil {
				return werr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// genFlags names trace.WorkloadConfig's fields as trace gen's flags (trace.FieldError), for
// errors in the words the user typed.
var genFlags = map[string]string{"Load": "--load", "Link": "--link", "Duration": "--duration", "Packets": "--packets",
	"ScanFrac": "--scan-frac", "UDPFrac": "--udp-frac", "Reverse": "--reverse", "SmallFrac": "--small-frac", "MTU": "--mtu",
	"Burst": "--burst", "FlowRate": "--flow-rate", "Warmup": "--warmup", "RTT": "--rtt", "Clients": "--clients", "Servers": "--servers"}

// flagWords says a workload error in trace gen's flags: "--packets -5: want …", not
// "Packets is -5, want …".
func flagWords(err error) string {
	var fe *trace.FieldError
	var ae *trace.ArrivalError
	switch {
	case errors.As(err, &fe) && genFlags[fe.Field] != "":
		return genFlags[fe.Field] + " " + fe.Value + ": want " + fe.Want
	case errors.As(err, &ae):
		return fmt.Sprintf("%.3g flows/s arrive at the profile's peak, more than %g: lower --load or --link", ae.Rate, float64(trace.MaxArrivalRate))
	}
	return strings.TrimPrefix(err.Error(), "trace: bad workload: ")
}
