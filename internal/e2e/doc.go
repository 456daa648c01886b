// Package e2e is SIGANTENG's end-to-end suite: the real program, started
// through cli.Run on free ports (or as separate processes), against a real
// Redis, fake providers, a real nginx, curl and headless Chromium. Its files
// are grouped by concern: the basic flows (e2e_test.go), tasks' lifecycle
// (cancel, events, webhooks, speech, vision), security (security, attacks),
// faults and crashes, scale-out (sentinel, cluster, separate processes),
// deployment (nginx, deploy files), the load tool and benchmarks, and the
// README's own examples.
package e2e
