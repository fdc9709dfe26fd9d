//go:build unix

package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// TestSecondSignalKills: after a first SIGINT or SIGTERM cancels the run's context, the
// process stops catching them: a second one ends it at once (the default action), even when
// the command is slow to stop. The test runs its own binary as a command that ignores the
// cancellation.
func TestSecondSignalKills(t *testing.T) {
	if os.Getenv("SNF_SIGNAL_HELPER") == "1" {
		ctx, _ := signalContext()
		fmt.Println("ready")
		<-ctx.Done()
		fmt.Println("cancelled")
		time.Sleep(2 * time.Minute) // a command slow to stop
		os.Exit(0)
	}
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestSecondSignalKills$")
			cmd.Env = append(os.Environ(), "SNF_SIGNAL_HELPER=1")
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			lines := make(chan string, 4)
			go func() {
				sc := bufio.NewScanner(out)
				for sc.Scan() {
					lines <- sc.Text()
				}
				close(lines)
			}()
			waitLine := func(want string) {
				t.Helper()
				select {
				case l, ok := <-lines:
					if !ok || l != want {
						cmd.Process.Kill()
						cmd.Wait()
						t.Fatalf("helper said %q (open %v), want %q", l, ok, want)
					}
				case <-time.After(30 * time.Second):
					cmd.Process.Kill()
					cmd.Wait()
					t.Fatalf("helper did not say %q", want)
				}
			}
			waitLine("ready")
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			waitLine("cancelled")
			done := make(chan error, 1)
			go func() {
				for range lines { // (drain: Wait closes the pipe)
				}
				done <- cmd.Wait()
			}()
			// The second signal, again until the process ends (the first may come before
			// the process stopped catching them).
			tk := time.NewTicker(200 * time.Millisecond)
			defer tk.Stop()
			deadline := time.After(20 * time.Second)
			for {
				select {
				case err := <-done:
					var ee *exec.ExitError
					if !errors.As(err, &ee) {
						t.Fatalf("helper ended with %v, want killed by %v", err, sig)
					}
					ws, ok := ee.Sys().(syscall.WaitStatus)
					if !ok || !ws.Signaled() || ws.Signal() != sig {
						t.Fatalf("helper ended with %v, want killed by %v", err, sig)
					}
					return
				case <-tk.C:
					_ = cmd.Process.Signal(sig)
				case <-deadline:
					cmd.Process.Kill()
					<-done
					t.Fatalf("a second %v did not end the process within 20 s: it is still caught", sig)
				}
			}
		})
	}
}
