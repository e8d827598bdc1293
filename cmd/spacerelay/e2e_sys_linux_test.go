package main

import (
	"os/exec"
	"syscall"
)

// setDeathSignal has the kernel kill the relay if this test binary dies
// without running its cleanups (a test timeout, a crash).
func setDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
