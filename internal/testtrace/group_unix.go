//go:build unix

package testtrace

import (
	"os/exec"
	"syscall"
)

// ownGroup makes cmd's process lead a process group of its own (killGroup).
func ownGroup(cmd *exec.Cmd) { cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} }

// killGroup kills cmd's process and every process of its group (its children).
func killGroup(cmd *exec.Cmd) { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }

// groupAlive reports whether a process of the group pid leads is still alive.
func groupAlive(pid int) bool { return syscall.Kill(-pid, 0) == nil }
