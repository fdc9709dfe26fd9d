package snf

import (
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"sync"
	"time"

	"github.com/snf-dev/snf/packet"
)

// Alert is one event an NF reports: a detected scan, a matched signature, a rate exceeded.
// Every NF's alerts share this schema; as JSON (one object per line):
//
//	{"time":"2013-05-02T20:20:33.491822Z","clock":17,"nf":"portscan","rule":"scanner",
//	 "flow":{"proto":"tcp","src":"10.0.0.6:4000","dst":"10.0.0.1:22"},"details":{"likelihood":142.1}}
type Alert struct {
	Time    int64      // the packet's timestamp (Unix ns)
	Clock   uint64     // the packet's logical clock
	NF      string     // the NF instance
	Rule    string     // the rule or reason
	Flow    packet.Key // the packet's 5-tuple as the NF saw it (zero for none)
	Details map[string]any
}

type alertJSON struct {
	Time    string         `json:"time"`
	Clock   uint64         `json:"clock"`
	NF      string         `json:"nf"`
	Rule    string         `json:"rule"`
	Flow    *flowJSON      `json:"flow,omitempty"`
	Details map[string]any `json:"details,omitempty"`
}

type flowJSON struct {
	Proto string `json:"proto"`
	Src   string `json:"src"`
	Dst   string `json:"dst"`
}

// MarshalJSON writes the alert schema above.
func (a *Alert) MarshalJSON() ([]byte, error) {
	j := alertJSON{Time: time.Unix(0, a.Time).UTC().Format(time.RFC3339Nano), Clock: a.Clock, NF: a.NF, Rule: a.Rule, Details: a.Details}
	if a.Flow != (packet.Key{}) {
		k := a.Flow
		j.Flow = &flowJSON{Proto: packet.ProtoName(k.Proto),
			Src: addrPort(k.SrcAddr(), k.SrcPort).String(), Dst: addrPort(k.DstAddr(), k.DstPort).String()}
	}
	return json.Marshal(j)
}

// AlertSink receives alerts. A chain calls it from the goroutine that runs the chain; a sink
// shared by several chains must be safe for concurrent use (JSONAlerts is).
type AlertSink interface {
	Alert(a *Alert)
}

// JSONAlerts writes alerts as JSON lines to w.
type JSONAlerts struct {
	mu  sync.Mutex
	enc *json.Encoder
	err error
	n   uint64
}

// NewJSONAlerts returns a sink writing JSON lines to w.
func NewJSONAlerts(w io.Writer) *JSONAlerts { return &JSONAlerts{enc: json.NewEncoder(w)} }

// Alert implements AlertSink.
func (j *JSONAlerts) Alert(a *Alert) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.n++
	if j.err == nil {
		j.err = j.enc.Encode(a)
	}
}

// Err returns the first write error, if any.
func (j *JSONAlerts) Err() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.err
}

// Count returns the number of alerts received.
func (j *JSONAlerts) Count() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.n
}

// Alert reports an event about the current packet. details are key-value pairs, as in
// log/slog ("likelihood", 142.1, "port", 22). Alerts are rare events: this allocates.
func (c *Context) Alert(rule string, details ...any) {
	a := &Alert{Time: c.now, Clock: c.clock, NF: c.chain.nfs[c.nf].name, Rule: rule}
	switch {
	case c.p != nil && c.p.IP():
		a.Flow = c.p.Key
	case c.flow >= 0: // a FlowEnd hook: the flow that ends
		a.Flow = c.FlowKey()
	}
	if len(details) > 0 {
		a.Details = make(map[string]any, len(details)/2)
		for i := 0; i+1 < len(details); i += 2 {
			a.Details[fmt.Sprint(details[i])] = details[i+1]
		}
		if len(details)%2 == 1 {
			a.Details["!BADKEY"] = details[len(details)-1]
		}
	}
	c.chain.nfs[c.nf].stats.Alerts++
	c.chain.stats.Alerts++
	if c.chain.alerts != nil {
		c.chain.alerts.Alert(a)
	}
}

// Reporter is implemented by NFs that have a report for the end of a run (a monitor's top
// flows). Chain.WriteReports calls it.
type Reporter interface {
	Report(w io.Writer) error
}

// WriteReports writes the report of every NF that has one, each under a heading.
func (c *Chain) WriteReports(w io.Writer) error {
	for _, n := range c.nfs {
		if r, ok := n.nf.(Reporter); ok {
			if _, err := fmt.Fprintf(w, "\n%s report:\n", n.name); err != nil {
				return err
			}
			if err := r.Report(w); err != nil {
				return fmt.Errorf("%s: report: %w", n.name, err)
			}
		}
	}
	return nil
}

func addrPort(a netip.Addr, port uint16) netip.AddrPort { return netip.AddrPortFrom(a, port) }
