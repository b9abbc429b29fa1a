//go:build killhook

package main

import (
	"os"
	"syscall"

	"taledeploy/plan"
)

// killHook makes the process SIGKILL itself right after the step named by
// TALEDEPLOY_KILL_AFTER ends: the end-to-end tests prove with it that a deploy
// killed at any step boundary converges. Only test builds have it.
func killHook(report func(plan.Event)) func(plan.Event) {
	step := os.Getenv("TALEDEPLOY_KILL_AFTER")
	return func(e plan.Event) {
		report(e)
		if step != "" && e.Step == step && e.Status != "running" {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
		}
	}
}
