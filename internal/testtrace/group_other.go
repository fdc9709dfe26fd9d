//go:build !unix

package testtrace

import "os/exec"

// ownGroup: no process groups here; killGroup kills the process alone.
func ownGroup(*exec.Cmd) {}

func killGroup(cmd *exec.Cmd) { _ = cmd.Process.Kill() }

func groupAlive(int) bool { return false }
