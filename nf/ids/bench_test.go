package ids_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/internal/testtrace"
	"github.com/snf-dev/snf/nf/ids"
	"github.com/snf-dev/snf/packet"
)

// extraRules are 50 signatures of the kind a small IDS rule set holds (web attacks, shells,
// tools, cleartext credentials, binaries): with the defaults, 53 rules and 70 contents.
var extraRules = []string{
	`{id: etc-passwd, proto: tcp, dst_ports: "80,8080", content: ["/etc/passwd"]}`,
	`{id: dir-traversal, proto: tcp, dst_ports: "80,8080", content: ["../../../"]}`,
	`{id: sqli-union, proto: tcp, dst_ports: "80,8080", nocase: true, content: ["union", "select "]}`,
	`{id: sqli-or, proto: tcp, dst_ports: "80,8080", nocase: true, content: ["' or '1'='1"]}`,
	`{id: xss-script, proto: tcp, nocase: true, content: ["<script>alert("]}`,
	`{id: xss-onerror, proto: tcp, nocase: true, content: ["onerror=alert("]}`,
	`{id: cmd-exe, proto: tcp, nocase: true, content: ["cmd.exe /c"]}`,
	`{id: powershell-enc, proto: tcp, nocase: true, content: ["powershell", " -enc "]}`,
	`{id: bin-sh, proto: tcp, content: ["/bin/sh -i"]}`,
	`{id: bash-revshell, proto: tcp, content: ["bash -i >& /dev/tcp/"]}`,
	`{id: nc-exec, proto: tcp, content: ["nc -e /bin/"]}`,
	`{id: wget-pipe, proto: tcp, content: ["wget http", "|7c| sh"]}`,
	`{id: curl-pipe, proto: tcp, content: ["curl ", "|7c| bash"]}`,
	`{id: php-eval, proto: tcp, content: ["eval(base64_decode("]}`,
	`{id: php-system, proto: tcp, content: ["<?php", "system($_"]}`,
	`{id: xp-cmdshell, proto: tcp, dst_ports: 1433, nocase: true, content: ["xp_cmdshell"]}`,
	`{id: wp-login-brute, proto: tcp, dst_ports: 80, content: ["POST /wp-login.php", "pwd="]}`,
	`{id: phpmyadmin-scan, proto: tcp, dst_ports: 80, nocase: true, content: ["GET /phpmyadmin/"]}`,
	`{id: sqlmap-ua, proto: tcp, nocase: true, content: ["user-agent: sqlmap"]}`,
	`{id: nikto-ua, proto: tcp, content: ["Nikto"]}`,
	`{id: masscan-ua, proto: tcp, content: ["masscan/"]}`,
	`{id: zgrab-ua, proto: tcp, content: ["zgrab/"]}`,
	`{id: shellshock, proto: tcp, content: ["() { :;};"]}`,
	`{id: struts-ognl, proto: tcp, content: ["%{(#_memberAccess"]}`,
	`{id: spring4shell, proto: tcp, content: ["class.module.classLoader"]}`,
	`{id: proc-environ, proto: tcp, content: ["/proc/self/environ"]}`,
	`{id: htaccess, proto: tcp, dst_ports: 80, content: ["GET /.htaccess"]}`,
	`{id: git-config, proto: tcp, dst_ports: 80, content: ["GET /.git/config"]}`,
	`{id: env-file, proto: tcp, dst_ports: 80, content: ["GET /.env "]}`,
	`{id: mimikatz, proto: tcp, nocase: true, content: ["sekurlsa::logonpasswords"]}`,
	`{id: meterpreter, proto: tcp, content: ["|6d 65 74 65 72 70 72 65 74 65 72|"]}`,
	`{id: certutil, proto: tcp, nocase: true, content: ["certutil", "-urlcache"]}`,
	`{id: regsvr32, proto: tcp, nocase: true, content: ["regsvr32", "/i:http"]}`,
	`{id: elf-binary, proto: tcp, content: ["|7f 45 4c 46 02 01 01|"]}`,
	`{id: nop-sled, proto: any, content: ["|90 90 90 90 90 90 90 90 90 90 90 90 90 90 90 90|"]}`,
	`{id: rsa-private-key, proto: tcp, content: ["-----BEGIN RSA PRIVATE KEY-----"]}`,
	`{id: ssh-key-upload, proto: tcp, content: ["authorized_keys", "ssh-rsa AAAA"]}`,
	`{id: smtp-auth-plain, proto: tcp, dst_ports: "25,587", content: ["AUTH PLAIN "]}`,
	`{id: pop3-pass, proto: tcp, dst_ports: 110, content: ["PASS "]}`,
	`{id: imap-login, proto: tcp, dst_ports: 143, nocase: true, content: [" login "]}`,
	`{id: telnet-root, proto: tcp, dst_ports: 23, content: ["root|0d 0a|"]}`,
	`{id: ftp-site-exec, proto: tcp, dst_ports: 21, nocase: true, content: ["SITE EXEC"]}`,
	`{id: irc-bot, proto: tcp, dst_ports: "6660-6669", content: ["PRIVMSG #", "!download "]}`,
	`{id: dns-txt-exfil, proto: udp, dst_ports: 53, content: ["|00 10 00 01|", "base64"]}`,
	`{id: snmp-public, proto: udp, dst_ports: 161, content: ["|04 06|public"]}`,
	`{id: tftp-get-config, proto: udp, dst_ports: 69, content: ["|00 01|", "running-config"]}`,
	`{id: memcached-stats, proto: udp, dst_ports: 11211, content: ["stats"]}`,
	`{id: ssdp-amplify, proto: udp, dst_ports: 1900, content: ["M-SEARCH * HTTP/1.1", "ssdp:all"]}`,
	`{id: ntp-monlist, proto: udp, dst_ports: 123, content: ["|17 00 03 2a|"]}`,
	`{id: eicar, proto: any, content: ["X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR"]}`,
}

// BenchmarkIDS runs the packets of a real capture (web browsing, 4631 packets, 3.4 MB of
// payload), held in memory, through an IDS chain in batches of 64, and reports ns/pkt, ns per
// payload byte (of every packet, scanned or not), allocations per batch, and hits/pkt: the
// share of packets in which some content occurs (the only packets whose search allocates). "none" is the
// empty chain over the same packets: the chain's own cost (flow lookup), to subtract.
func BenchmarkIDS(b *testing.B) {
	pkts := testtrace.Packets(b, "pcapplusplus_example.pcap")
	if len(extraRules) != 50 {
		b.Fatalf("%d extra rules", len(extraRules))
	}
	var all strings.Builder
	for _, r := range ids.DefaultConfig().Rules {
		js, err := json.Marshal(r) // JSON is YAML
		if err != nil {
			b.Fatal(err)
		}
		fmt.Fprintf(&all, "        - %s\n", js)
	}
	for _, r := range extraRules {
		all.WriteString("        - " + r + "\n")
	}
	for _, bc := range []struct{ name, yaml string }{
		{"none", ""},
		{"default", chainYAML("")},
		{"default+50", chainYAML(all.String())},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var c *snf.Chain
			if bc.yaml == "" {
				c = testtrace.ChainOf(b, "none", snf.ChainOptions{})
			} else {
				c = testtrace.Chain(b, bc.yaml, snf.ChainOptions{})
			}
			out := make([]*packet.Packet, 0, 2*64)
			var clock uint64
			var bytes, npkts int
			n := 0
			pass := func() {
				if n+64 > len(pkts) {
					n = 0
				}
				batch := pkts[n : n+64]
				for j := range batch {
					clock++
					batch[j].Clock, batch[j].Time = clock, int64(clock)*1000
					bytes += len(batch[j].Payload())
				}
				n += 64
				npkts += 64
				out = c.Process(batch, out[:0])
			}
			for range len(pkts)/64 + 1 { // warm up: flows created, buffers grown
				pass()
			}
			bytes, npkts = 0, 0
			hits0 := contentHits(c)
			testtrace.BenchBatches(b, 0, pass)
			ns := float64(b.Elapsed().Nanoseconds())
			b.ReportMetric(ns/float64(bytes), "ns/byte")
			b.ReportMetric(float64(contentHits(c)-hits0)/float64(npkts), "hits/pkt")
		})
	}
}

func contentHits(c *snf.Chain) uint64 {
	if c.Len() == 0 {
		return 0
	}
	return testtrace.Metric(c, 0, "content_hits")
}
