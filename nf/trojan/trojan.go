// Package trojan is the trojan detector of the NF state-management literature (OpenNF,
// SIGCOMM 2014; StreamNF/CHC, NSDI 2019): it alerts on a host that opens an SSH connection,
// then downloads an HTML, a ZIP and an EXE file over HTTP or FTP, then starts IRC activity,
// all within a window of packet time. See README.md.
package trojan

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/packet"
)

// Config is the detector's configuration.
type Config struct {
	Window           snf.Duration   `json:"window" doc:"the whole sequence, from the SSH connection to the start of IRC, must fit in this much packet time; also the idle expiry of a host's state"`
	DownloadsInOrder bool           `json:"downloads_in_order" doc:"require the downloads in the order HTML, ZIP, EXE (false: any order among themselves, all after the SSH and before the IRC)"`
	Inside           []netip.Prefix `json:"inside" doc:"hosts watched, as the initiators of connections; empty: every host"`
	SSHPorts         []uint16       `json:"ssh_ports" doc:"TCP server ports taken for SSH (an SSH- banner on any port counts too)"`
	IRCPorts         []uint16       `json:"irc_ports" doc:"TCP server ports taken for IRC (NICK, USER or JOIN commands on any port count too)"`
	FTPPorts         []uint16       `json:"ftp_ports" doc:"TCP server ports of FTP control connections (a 220 banner followed by USER on any port counts too)"`
	MaxHosts         int            `json:"max_hosts" doc:"bound on the hosts tracked at once (hosts with an SSH connection in the window); the least recently active is evicted beyond it"`
}

// DefaultConfig watches every host with a 10-minute window and the standard ports.
func DefaultConfig() *Config {
	return &Config{
		Window:   snf.Duration(10 * time.Minute),
		SSHPorts: []uint16{22},
		IRCPorts: []uint16{6667, 6697},
		FTPPorts: []uint16{21},
		MaxHosts: 1 << 16,
	}
}

// Validate checks the config.
func (c *Config) Validate() error {
	if c.Window <= 0 {
		return errors.New("window: must be > 0")
	}
	for i, p := range c.Inside {
		if !p.IsValid() {
			return fmt.Errorf("inside[%d]: not a prefix", i)
		}
	}
	for _, ports := range []struct {
		name string
		v    []uint16
	}{{"ssh_ports", c.SSHPorts}, {"irc_ports", c.IRCPorts}, {"ftp_ports", c.FTPPorts}} {
		if len(ports.v) > maxPorts {
			return fmt.Errorf("%s: at most %d ports, have %d", ports.name, maxPorts, len(ports.v))
		}
		for i, p := range ports.v {
			if p == 0 {
				return fmt.Errorf("%s[%d]: port 0", ports.name, i)
			}
		}
	}
	if c.MaxHosts < 1 || c.MaxHosts > 1<<24 {
		return fmt.Errorf("max_hosts: want 1 to %d, have %d", 1<<24, c.MaxHosts)
	}
	return nil
}

const maxPorts = 64

func init() {
	snf.Register("trojan", "alerts on a host that opens SSH, downloads HTML, ZIP and EXE files (HTTP/FTP), then starts IRC, within a window",
		DefaultConfig, New)
}

// Download kinds, as bits.
const (
	kindHTML uint8 = 1 << iota
	kindZIP
	kindEXE
	kindAll = kindHTML | kindZIP | kindEXE
)

var kindNames = [3]string{"html", "zip", "exe"}

// attempt is one possible trojan sequence of a host: started by an SSH connection.
type attempt struct {
	on   bool
	ssh  int64    // time of the SSH connection
	got  uint8    // download kinds seen after it
	when [3]int64 // time of the first download of each kind after it
}

// host is the per-host (scoped) state: up to two overlapping attempts, the oldest first.
// The second is the first SSH connection after the first attempt's; it takes over when the
// first leaves the window.
type host struct {
	a [2]attempt
}

const attemptSize = 1 + 8 + 1 + 3*8

func (h *host) AppendBinary(b []byte) ([]byte, error) {
	for i := range h.a {
		a := &h.a[i]
		b = append(b, boolByte(a.on))
		b = binary.BigEndian.AppendUint64(b, uint64(a.ssh))
		b = append(b, a.got)
		for _, w := range a.when {
			b = binary.BigEndian.AppendUint64(b, uint64(w))
		}
	}
	return b, nil
}

func (h *host) UnmarshalBinary(b []byte) error {
	if len(b) != 2*attemptSize {
		return fmt.Errorf("trojan: host state: %d bytes, want %d", len(b), 2*attemptSize)
	}
	for i := range h.a {
		a := &h.a[i]
		a.on = b[0] != 0
		a.ssh = int64(binary.BigEndian.Uint64(b[1:]))
		a.got = b[9]
		for k := range a.when {
			a.when[k] = int64(binary.BigEndian.Uint64(b[10+8*k:]))
		}
		b = b[attemptSize:]
	}
	return nil
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

// Trojan is one detector instance.
type Trojan struct {
	cfg     Config
	window  int64
	inside  []netip.Prefix
	ssh     portSet
	irc     portSet
	ftp     portSet
	hosts   *snf.Scoped[netip.Addr, host, *host]
	conns   *snf.FlowState[conn, *conn]
	parsers *snf.FlowState[parser, *parser]

	mSSH, mIRC, mHTTP, mFTP, mData    *snf.Metric
	mDown                             [3]*snf.Metric
	mStarted, mExpired, mAlerts, mGap *snf.Metric
	mMalformed, mNonTCP               *snf.Metric
}

type portSet []uint16

func (s portSet) has(p uint16) bool {
	for _, q := range s {
		if q == p {
			return true
		}
	}
	return false
}

// New builds a detector from a validated config.
func New(env *snf.Env, cfg *Config) (snf.NF, error) {
	hosts, err := snf.NewScoped[netip.Addr, host](env, "hosts", snf.ScopeOptions{
		By: snf.ByInitiator, MaxKeys: cfg.MaxHosts, Idle: cfg.Window.D(),
	})
	if err != nil {
		return nil, err
	}
	t := &Trojan{
		cfg:     *cfg,
		window:  int64(cfg.Window),
		inside:  cfg.Inside,
		ssh:     cfg.SSHPorts,
		irc:     cfg.IRCPorts,
		ftp:     cfg.FTPPorts,
		hosts:   hosts,
		conns:   snf.NewFlowState[conn](env, "conn"),
		parsers: snf.NewFlowState[parser](env, "parser"),

		mSSH:       env.Metric("ssh", "SSH connections opened by watched hosts"),
		mIRC:       env.Metric("irc", "IRC connections started by watched hosts"),
		mHTTP:      env.Metric("http_responses", "HTTP responses parsed"),
		mFTP:       env.Metric("ftp_retr", "FTP RETR commands seen"),
		mData:      env.Metric("raw_downloads", "connections whose server sent a ZIP or EXE file before the client sent anything (FTP data)"),
		mStarted:   env.Metric("sequences_started", "SSH connections that started a host's sequence"),
		mExpired:   env.Metric("sequences_expired", "sequences that left the window incomplete"),
		mAlerts:    env.Metric("alerts", "trojan alerts"),
		mGap:       env.Metric("stream_gaps", "HTTP/FTP streams that lost bytes (capture loss or cut frames) and resynchronised"),
		mMalformed: env.Metric("malformed", "malformed IP packets, passed"),
		mNonTCP:    env.Metric("not_tcp", "packets that are not TCP with a header (UDP, ICMP, fragments), passed"),
	}
	for i, k := range kindNames {
		t.mDown[i] = env.Metric("downloads_"+k, k+" downloads by watched hosts")
	}
	return t, nil
}

// Process implements snf.NF. The detector only watches: every packet is forwarded.
func (t *Trojan) Process(ctx *snf.Context, p *packet.Packet) snf.Verdict {
	if !p.IP() {
		t.mMalformed.Inc()
		return snf.Forward
	}
	if p.Proto != packet.ProtoTCP || p.Flags&packet.HasL4 == 0 {
		t.mNonTCP.Inc()
		return snf.Forward
	}
	if len(t.inside) > 0 && !t.watched(initiator(ctx)) {
		return snf.Forward
	}
	c := t.conns.GetOrCreate(ctx)
	if c == nil {
		return snf.Forward
	}
	dir := 0
	if ctx.Dir() != snf.Orig {
		dir = 1
	}
	if c.kind == connNew {
		t.classifyByPort(c, ctx.FlowKey().DstPort)
	}
	if dir == 1 && !c.has(cfAnswered) {
		c.flags |= cfAnswered
		switch c.kind {
		case connSSH:
			t.sshEvent(ctx, c)
		case connIRC:
			t.ircEvent(ctx, c)
		}
	}
	payload := p.Payload()
	if len(payload) == 0 {
		return snf.Forward
	}
	switch c.kind {
	case connUnknown:
		t.inspect(ctx, c, p, dir, payload)
	case connHTTP, connFTP:
		t.parse(ctx, c, p, dir, payload)
	}
	return snf.Forward
}

func (t *Trojan) watched(a netip.Addr) bool {
	for _, p := range t.inside {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// initiator returns the address that opened the packet's flow: the host the state is kept for.
func initiator(ctx *snf.Context) netip.Addr { return ctx.FlowKey().SrcAddr() }

// sshEvent records an SSH connection of the initiator: it starts a sequence.
func (t *Trojan) sshEvent(ctx *snf.Context, c *conn) {
	if c.has(cfEvent) {
		return
	}
	c.flags |= cfEvent
	t.mSSH.Inc()
	now := ctx.Now()
	h := t.hosts.GetOrCreate(ctx, initiator(ctx))
	t.expire(h, now)
	for i := range h.a {
		if !h.a[i].on {
			h.a[i] = attempt{on: true, ssh: now}
			t.mStarted.Inc()
			return
		}
	}
	// Two sequences already run: a third start is covered by them until the oldest leaves
	// the window (see Limits in README.md).
}

// download records downloads of the given kinds by the initiator.
func (t *Trojan) download(ctx *snf.Context, kinds uint8) {
	for i := range kindNames {
		if kinds&(1<<i) != 0 {
			t.mDown[i].Inc()
		}
	}
	h := t.hosts.Get(ctx, initiator(ctx))
	if h == nil {
		return
	}
	now := ctx.Now()
	t.expire(h, now)
	for i := range h.a {
		a := &h.a[i]
		if !a.on {
			continue
		}
		for k := range kindNames {
			bit := uint8(1) << k
			if kinds&bit == 0 || a.got&bit != 0 {
				continue
			}
			if t.cfg.DownloadsInOrder && a.got != bit-1 {
				continue // the kinds before this one are not all there yet
			}
			a.got |= bit
			a.when[k] = now
		}
	}
}

// ircEvent records the start of IRC activity by the initiator: the end of a sequence.
func (t *Trojan) ircEvent(ctx *snf.Context, c *conn) {
	if c.has(cfEvent) {
		return
	}
	c.flags |= cfEvent
	t.mIRC.Inc()
	key := initiator(ctx)
	h := t.hosts.Get(ctx, key)
	if h == nil {
		return
	}
	now := ctx.Now()
	t.expire(h, now)
	for i := range h.a {
		a := &h.a[i]
		if !a.on || a.got != kindAll {
			continue
		}
		t.mAlerts.Inc()
		ctx.Alert("trojan",
			"host", key.String(),
			"ssh_at", stamp(a.ssh),
			"html_at", stamp(a.when[0]),
			"zip_at", stamp(a.when[1]),
			"exe_at", stamp(a.when[2]),
			"irc_at", stamp(now),
			"elapsed", time.Duration(now-a.ssh).String())
		t.hosts.Delete(ctx, key)
		return
	}
}

func stamp(ns int64) string { return time.Unix(0, ns).UTC().Format(time.RFC3339Nano) }

// expire drops the attempts whose SSH connection is more than a window old.
func (t *Trojan) expire(h *host, now int64) {
	for h.a[0].on && now-h.a[0].ssh > t.window {
		h.a[0], h.a[1] = h.a[1], attempt{}
		t.mExpired.Inc()
	}
}
