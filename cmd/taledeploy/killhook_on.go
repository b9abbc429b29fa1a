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
		// STEP kills once the step ends; STEP/progress at its first progress
		// event, in the middle of a transfer.
		if step != "" && (e.Step == step && e.Status != "running" && e.Status != "progress" ||
			e.Step+"/"+e.Status == step) {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
		}
	}
}
