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
		if len(rest) > 0 && rest[0] != "help" {
			return runMain(ctx, []string{rest[0], "--help"}, stdout, stderr)
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

// newFlags returns a flag set whose usage prints the command's help text.
func newFlags(name, help string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	// A bad flag is one line (the flag package's message); --help prints the help.
	fs.Usage = func() {}
	fullHelp.Store(fs, func(w io.Writer) {
		fmt.Fprint(w, help)
		fmt.Fprintln(w, "\nFlags:")
		fs.PrintDefaults()
	})
	return fs
}

// fullHelp holds each flag set's help printer (newFlags registers it, parseErr takes it).
var fullHelp sync.Map // *flag.FlagSet → func(io.Writer)

// parseErr turns an error of fs.Parse into exit status 2 (the flag package printed the
// message), or prints fs's help for --help.
func parseErr(fs *flag.FlagSet, err error) error {
	h, _ := fullHelp.LoadAndDelete(fs)
	if errors.Is(err, flag.ErrHelp) {
		if h != nil {
			h.(func(io.Writer))(fs.Output())
		}
		return err
	}
	return &exitError{code: 2}
}

// parseFlags parses args, turning flag errors into exit status 2 (usage already printed).
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return parseErr(fs, err)
	}
	fullHelp.Delete(fs)
	if fs.NArg() > 0 {
		return &exitError{code: 2, msg: fmt.Sprintf("%s: unexpected argument %q (see 'snf %s --help')", fs.Name(), fs.Arg(0), fs.Name())}
	}
	return nil
}
