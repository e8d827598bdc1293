//go:build !linux

package main

import "os/exec"

// setDeathSignal does nothing here: only Linux has Pdeathsig. The cleanups
// still stop the relay when a test ends normally.
func setDeathSignal(cmd *exec.Cmd) {}
