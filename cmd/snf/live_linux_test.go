//go:build linux

package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/snf-dev/snf/internal/netnstest"
	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/port/afpacket"
	"github.com/snf-dev/snf/trace"
)

// TestMainHelper is snf itself when SNF_MAIN_ARGS is set (the arguments, separated by
// newlines): the live tests run it as a process in a network namespace (ip netns exec).
func TestMainHelper(t *testing.T) {
	args := os.Getenv("SNF_MAIN_ARGS")
	if args == "" {
		t.Skip("not a test: snf run as a process by the live-interface tests")
	}
	main2(strings.Split(args, "\n"))
}

func main2(args []string) {
	ctx, stop := signalContext()
	code := runMain(ctx, args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// liveSnf starts snf with args in namespace ns, and returns once it said it reads its
// interface; wait waits for its end and returns its exit status, stdout and stderr.
func liveSnf(t *testing.T, ns string, args ...string) (cmd *exec.Cmd, wait func() (int, string, string)) {
	t.Helper()
	cmd = exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run=^TestMainHelper$")
	cmd.Env = append(os.Environ(), "SNF_MAIN_ARGS="+strings.Join(args, "\n"))
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	ready := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(errPipe)
		said := false
		for sc.Scan() {
			stderr.WriteString(sc.Text() + "\n")
			if !said && strings.HasPrefix(sc.Text(), "snf: reading if:") {
				said = true
				close(ready)
			}
		}
	}()
	wait = func() (int, string, string) {
		<-done
		err := cmd.Wait()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return code, stdout.String(), stderr.String()
	}
	select {
	case <-ready:
	case <-done:
		code, o, e := wait()
		t.Fatalf("snf %v ended (%d) before reading:\n%s\n%s", args, code, o, e)
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("snf did not start reading in 30 s")
	}
	return cmd, wait
}

// number reads the number after label in out (a summary line), -1 if absent.
func number(out, pattern string) int {
	m := regexp.MustCompile(pattern).FindStringSubmatch(out)
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// TestRunLiveInterface: snf run reads a live interface, translates and filters its packets
// on an elastic pool whose unit 0 is killed, and sends them back out of it; it ends after
// --count packets, every one read (none dropped by the kernel), and the far end receives
// every packet it wrote, their inside sources translated. Ctrl-C ends such a run normally.
func TestRunLiveInterface(t *testing.T) {
	l := netnstest.New(t)
	g, err := trace.NewGenerator(func() trace.GenConfig {
		c := trace.DefaultGenConfig()
		c.Packets, c.Flows, c.Rate = 8000, 200, 20000
		return c
	}())
	if err != nil {
		t.Fatal(err)
	}
	var pkts []*packet.Packet
	batch := make([]packet.Packet, 64)
	for {
		k, err := g.Read(batch)
		for i := range batch[:k] {
			p := &packet.Packet{}
			p.SetData(append([]byte(nil), batch[i].Data...), 0, len(batch[i].Data))
			pkts = append(pkts, p)
		}
		if err != nil {
			break
		}
	}
	var far *afpacket.Port // the other end: sends the traffic, receives what snf sends back
	netnstest.In(t, l.NsA, func() { far, err = afpacket.Open(l.IfA, afpacket.Options{Frames: 16384}) })
	if err != nil {
		t.Fatal(err)
	}
	defer far.Close()
	sendAll := func(ps []*packet.Packet) {
		for len(ps) > 0 {
			k := min(64, len(ps))
			if err := far.Write(ps[:k]); err != nil {
				t.Fatal(err)
			}
			ps = ps[k:]
		}
	}

	_, wait := liveSnf(t, l.NsB, "run", "--nfs", "nat,firewall", "--in", "if:"+l.IfB, "--out", "if:"+l.IfB,
		"--policy", "static", "--units", "2", "--fail", "unit=0@3000", "--count", strconv.Itoa(len(pkts)), "--capacity", "1000000")
	sendAll(pkts)
	code, out, errs := wait()
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	read := number(out, `interface if:\S+: (\d+) frames read`)
	dropped := number(out, `frames read, (\d+) dropped`)
	sent := number(out, `interface if:\S+: (\d+) frames sent`)
	if read != len(pkts) || dropped != 0 || sent <= 0 {
		t.Fatalf("read %d, dropped %d, sent %d; want %d read, none dropped\n%s", read, dropped, sent, len(pkts), out)
	}
	if number(out, `recovery  (\d+) units failed`) != 1 || number(out, `(\d+) packets replayed`) <= 0 || !strings.Contains(out, "their positions in the input") {
		t.Errorf("want unit 0 replaced from the ring's frames (one failure, packets replayed, positions kept):\n%s", out)
	}
	// The far end got what snf sent, translated: no inside source (10.0.0.0/8) left.
	var got, inside int
	rb := make([]packet.Packet, 64)
	deadline := time.Now().Add(5 * time.Second)
	for got < sent && time.Now().Before(deadline) {
		k, err := far.Read(rb)
		if err != nil {
			t.Fatal(err)
		}
		for i := range rb[:k] {
			got++
			if d := rb[i].Data; len(d) >= 34 && binary.BigEndian.Uint16(d[12:]) == 0x0800 && d[26] == 10 {
				inside++
			}
		}
	}
	if got != sent || inside != 0 {
		t.Errorf("the far end received %d frames (snf sent %d), %d with an inside source", got, sent, inside)
	}

	// Ctrl-C: the run ends as at its input's end, summary printed, exit status 0.
	cmd, wait := liveSnf(t, l.NsB, "run", "--nfs", "firewall", "--in", "if:"+l.IfB)
	sendAll(pkts[:1000])
	time.Sleep(300 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGINT)
	code, out, errs = wait()
	if code != 0 || number(out, `interface if:\S+: (\d+) frames read`) != 1000 {
		t.Errorf("after Ctrl-C: exit %d\n%s\n%s", code, out, errs)
	}
}
