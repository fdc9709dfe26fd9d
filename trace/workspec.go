package trace

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// WorkloadHelp documents the syntax ParseWorkload reads.
const WorkloadHelp = `A workload spec is DIST followed by comma-separated KEY=VALUE options (all optional):
  dist=NAME        flow sizes: websearch (default), datamining, fb_hadoop, alistorage,
                   internet_edge_agh2015
  profile=SPEC     load profile over time (constant, ramp, diurnal, bursts; see below)
  load=F           fraction of the link the flows fill at profile 1 (0.5)
  link=RATE        link bit rate: 10Gbps, 400Mbps, 1e9 (10Gbps)
  duration=D       how long flows arrive (10s)
  packets=N        stop after N packets (0: no limit)
  seed=N           random seed (1)
  scan=F           fraction of flows that are a lone SYN (0.05)
  udp=F            fraction of data flows that are UDP (0.1)
  reverse=F        ACKs or replies per data packet, 0 to 4 (0.5)
  small=F          fraction of data packets of at most 200 bytes (0.2)
  mtu=N            IP MTU, 576 to 1500 (1500)
  burst=N          mean data packets per ON burst (16)
  gap=SPEC         OFF gaps: lognormal:median=1ms,sigma=1 (default), intraflow, none
  flowrate=RATE    a flow's bit rate within a burst (the link rate)
  rtt=D            round-trip time (100us)
  warmup=D         run this long before the trace starts, to start in steady state (0)
  clients=N        client hosts (10000); servers=N server hosts (100)
The commas of a profile's or gap's own options need no quoting: an option whose key is not
one of the above continues the profile or gap before it.
Example: websearch,load=0.3,profile=diurnal:min=0.2,max=1+bursts:x=3,duration=20s`

// workloadKeys are ParseWorkload's keys; profile and gap option names must differ from them.
var workloadKeys = []string{"dist", "profile", "load", "link", "duration", "packets", "seed",
	"scan", "udp", "reverse", "small", "mtu", "burst", "gap", "flowrate", "rtt", "warmup", "clients", "servers"}

// specKeys names WorkloadConfig's fields as a spec's keys (FieldError).
var specKeys = map[string]string{"Load": "load", "Link": "link", "Duration": "duration", "Packets": "packets",
	"ScanFrac": "scan", "UDPFrac": "udp", "Reverse": "reverse", "SmallFrac": "small", "MTU": "mtu", "Burst": "burst",
	"FlowRate": "flowrate", "Warmup": "warmup", "RTT": "rtt", "Clients": "clients", "Servers": "servers"}

// ParseWorkload reads a workload spec (see WorkloadHelp) over DefaultWorkloadConfig (an
// empty spec is the defaults) and returns the configuration, validated, or a one-line error. It is the way to name generated
// traffic in a single string, e.g. as the input of a run.
func ParseWorkload(spec string) (WorkloadConfig, error) {
	c := DefaultWorkloadConfig()
	if spec == "" {
		return c, nil
	}
	var keys, vals []string
	for i, tok := range strings.Split(spec, ",") {
		k, v, ok := strings.Cut(tok, "=")
		switch {
		case ok && slices.Contains(workloadKeys, k):
			if slices.Contains(keys, k) {
				return c, fmt.Errorf("workload %q: %s given twice", spec, k)
			}
			keys, vals = append(keys, k), append(vals, v)
		case i == 0 && !ok && tok != "":
			keys, vals = append(keys, "dist"), append(vals, tok)
		case len(keys) > 0 && (keys[len(keys)-1] == "profile" || keys[len(keys)-1] == "gap"):
			vals[len(vals)-1] += "," + tok
		default:
			return c, fmt.Errorf("workload %q: unknown option %q (want DIST,KEY=VALUE,…: %s)", spec, tok, strings.Join(workloadKeys, ", "))
		}
	}
	for i, k := range keys {
		if err := c.set(k, vals[i]); err != nil {
			return c, fmt.Errorf("workload %q: %s=%q: %v", spec, k, vals[i], err)
		}
	}
	if err := c.Validate(); err != nil {
		// In the spec's words: its key, not the config's field.
		var fe *FieldError
		var ae *ArrivalError
		switch {
		case errors.As(err, &fe) && specKeys[fe.Field] != "":
			return c, fmt.Errorf("workload %q: %s=%s: want %s", spec, specKeys[fe.Field], fe.Value, fe.Want)
		case errors.As(err, &ae):
			return c, fmt.Errorf("workload %q: %.3g flows/s arrive at the profile's peak, more than %g: lower load= or link=", spec, ae.Rate, float64(MaxArrivalRate))
		}
		return c, fmt.Errorf("workload %q: %v", spec, strings.TrimPrefix(err.Error(), "trace: bad workload: "))
	}
	return c, nil
}

// set sets one option of a workload spec.
func (c *WorkloadConfig) set(k, v string) error {
	var err error
	switch k {
	case "dist":
		c.Dist = v
	case "profile":
		c.Profile = v
	case "gap":
		c.Gap = v
	case "link":
		c.Link, err = ParseBitRate(v)
	case "flowrate":
		c.FlowRate, err = ParseBitRate(v)
	case "duration", "rtt", "warmup":
		d, perr := time.ParseDuration(v)
		if perr != nil {
			return fmt.Errorf("not a duration (e.g. 10s, 100us)")
		}
		*map[string]*time.Duration{"duration": &c.Duration, "rtt": &c.RTT, "warmup": &c.Warmup}[k] = d
	case "packets", "mtu", "clients", "servers":
		n, perr := strconv.Atoi(v)
		if perr != nil {
			return fmt.Errorf("not an integer")
		}
		*map[string]*int{"packets": &c.Packets, "mtu": &c.MTU, "clients": &c.Clients, "servers": &c.Servers}[k] = n
	case "seed":
		if c.Seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			return fmt.Errorf("not an unsigned integer")
		}
	default: // load, scan, udp, reverse, small, burst
		x, perr := strconv.ParseFloat(v, 64)
		if perr != nil {
			return fmt.Errorf("not a number")
		}
		*map[string]*float64{"load": &c.Load, "scan": &c.ScanFrac, "udp": &c.UDPFrac,
			"reverse": &c.Reverse, "small": &c.SmallFrac, "burst": &c.Burst}[k] = x
	}
	return err
}

// ParseBitRate reads a bit rate: a number with an optional decimal prefix (k, M, G, T) and
// unit (bps, b/s, bit/s), e.g. 10Gbps, 400M, 2.5e9. It returns bits per second.
func ParseBitRate(s string) (float64, error) {
	t := s
	for _, u := range []string{"bit/s", "b/s", "bps"} {
		if strings.HasSuffix(t, u) {
			t = strings.TrimSuffix(t, u)
			break
		}
	}
	mult := 1.0
	if n := len(t); n > 0 {
		if i := strings.IndexByte("kKMGT", t[n-1]); i >= 0 {
			mult = []float64{1e3, 1e3, 1e6, 1e9, 1e12}[i]
			t = t[:n-1]
		}
	}
	x, err := strconv.ParseFloat(t, 64)
	if err != nil || math.IsNaN(x) || math.IsInf(x, 0) || x < 0 {
		return 0, fmt.Errorf("bit rate %q: want a number with an optional unit, e.g. 10Gbps, 400Mbps, 1e9", s)
	}
	return x * mult, nil
}
