// Command snf runs chains of stateful network functions over packets.
//
//	snf run  --nfs nat,firewall --in capture.pcap --out out.pcap
//	snf sim  --compare
//	snf nfs  [NAME]
//
// Run `snf help` or `snf COMMAND --help` for the flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
)

const usage = `snf runs chains of stateful network functions (NFs) over packets.

Usage:
  snf run [flags]      process a capture (or generated traffic) through a chain of NFs
  snf sim [flags]      simulate the elastic runtime in virtual time; compare policies
  snf nfs [NAME]       list the NFs, their config fields and defaults, and the state they keep
  snf trace stats|compose|gen   describe captures; merge, shift and re-address them;
                       generate realistic traffic
  snf help [COMMAND]   show help

Examples:
  snf run                                         # generated traffic through nat,firewall
  snf run --nfs nat,firewall --in in.pcap --out out.pcap
  snf run --chain chain.yaml --in in.pcapng --speed 1   # replay at capture pace
  snf run --policy snf --in in.pcap --speed 4           # on elastic compute units
  snf sim --compare                               # every policy, simulated, one table
  snf nfs nat
  snf trace stats in.pcap

Run 'snf COMMAND --help' for a command's flags.
`

// exitError carries an exit status with a one-line message.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func main() {
	ctx, stop := signalContext() // a second signal ends the process at once
	code := runMain(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// runMain is main without the process: it returns the exit status.
func runMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "run":
		err = cmdRun(ctx, rest, stdout, stderr)
	case "sim":
		err = cmdSim(ctx, rest, stdout, stderr)
	case "nfs":
		err = cmdNFs(rest, stdout, stderr)
	case "trace":
		err = cmdTrace(ctx, rest, stdout, stderr)
	case "help", "-h", "-help", "--help":
		if len(rest) > 0 && !isHelpWord(rest[0]) {
			// 'snf help COMMAND' is 'snf COMMAND --help' (and 'snf help trace gen' is
			// 'snf trace gen --help'). COMMAND is not a help word, so this recurses once.
			sub := []string{rest[0]}
			if rest[0] == "trace" && len(rest) > 1 && !isHelpWord(rest[1]) {
				sub = append(sub, rest[1])
			}
			return runMain(ctx, append(sub, "--help"), stdout, stderr)
		}
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "snf: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	if err == nil {
		return 0
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.msg != "" {
			fmt.Fprintln(stderr, "snf:", ee.msg)
		}
		return ee.code
	}
	fmt.Fprintln(stderr, "snf:", strings.ReplaceAll(err.Error(), "\n", "; "))
	return 1
}

// isHelpWord reports whether arg asks for help ('snf help', 'snf --help', …).
func isHelpWord(arg string) bool {
	switch arg {
	case "help", "-h", "-help", "--help":
		return true
	}
	return false
}

// newFlags returns a flag set whose --help prints the command's help text on stdout (help
// asked for is output: 'snf run --help | less'); a bad flag is one line on stderr.
func newFlags(name, help string, stdout, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	// A bad flag is one line (the flag package's message); --help prints the help.
	fs.Usage = func() {}
	fullHelp.Store(fs, func() {
		fmt.Fprint(stdout, help)
		n := 0
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n == 0 {
			return
		}
		fmt.Fprintln(stdout, "\nFlags:")
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		fs.SetOutput(stderr)
	})
	return fs
}

// fullHelp holds each flag set's help printer (newFlags registers it, parseErr takes it).
var fullHelp sync.Map // *flag.FlagSet → func()

// parseErr turns an error of fs.Parse into exit status 2 (the flag package printed the
// message), or prints fs's help for --help.
func parseErr(fs *flag.FlagSet, err error) error {
	h, _ := fullHelp.LoadAndDelete(fs)
	if errors.Is(err, flag.ErrHelp) {
		if h != nil {
			h.(func())()
		}
		return err
	}
	return &exitError{code: 2}
}

// parseArgs parses args, flags then operands (fs.Args), turning flag errors into exit
// status 2 (usage already printed).
func parseArgs(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return parseErr(fs, err)
	}
	fullHelp.Delete(fs)
	return nil
}

// parseFlags parses args, turning flag errors into exit status 2 (usage already printed).
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return &exitError{code: 2, msg: fmt.Sprintf("%s: unexpected argument %q (see 'snf %s --help')", fs.Name(), fs.Arg(0), fs.Name())}
	}
	return nil
}

// namedPath is a file a command reads or writes, with what the user typed to name it (a
// flag, or an operand).
type namedPath struct{ what, path string }

// checkOutputs refuses, before anything is opened for writing, an output that is the same
// file as an input (creating it would truncate the input) or as another output. Empty paths
// are skipped.
func checkOutputs(cmd string, outs, ins []namedPath) error {
	for i, o := range outs {
		if o.path == "" {
			continue
		}
		for _, x := range append(slices.Clone(outs[:i]), ins...) {
			if x.path != "" && sameFile(o.path, x.path) {
				return &exitError{2, fmt.Sprintf("%s: %s and %s name the same file (%s): refusing to overwrite it", cmd, x.what, o.what, o.path)}
			}
		}
	}
	return nil
}

// sameFile reports whether paths a and b name one regular file (os.SameFile: also through
// links), or, when one does not exist yet, whether they are the same path once cleaned. A
// device or pipe is not truncated by a writer: --out /dev/null --alerts /dev/null is fine.
func sameFile(a, b string) bool {
	sa, errA := os.Stat(a)
	sb, errB := os.Stat(b)
	if errA == nil && errB == nil {
		return os.SameFile(sa, sb) && sa.Mode().IsRegular()
	}
	abs := func(p string) string {
		if q, err := filepath.Abs(p); err == nil {
			return q
		}
		return filepath.Clean(p)
	}
	return abs(a) == abs(b)
}
