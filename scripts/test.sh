#!/usr/bin/env bash
# Sets up everything the tests need (scripts/sandbox.sh up: Docker, Compose v2,
# Caddy, an OpenSSH sshd) and runs the whole test suite: static checks, unit tests,
# bounded fuzz runs, then each end-to-end package on its own.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
STATICCHECK_VERSION=v0.8.2

echo "== set-up"
scripts/sandbox.sh up

echo "== static checks"
unformatted=$(gofmt -l $(git ls-files '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change: $unformatted" >&2
	exit 1
fi
go vet ./...
go run "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION" ./...

echo "== release archives for every platform users run it on"
# A laptop or CI runner may be Linux, macOS or Windows: the one command that
# makes the archives must work.
dist=$(mktemp -d)
scripts/release.sh ci "$dist"
rm -rf "$dist"
# The shipped binary carries no test hook (the e2e tests build with -tags killhook).
bin=$(mktemp)
go build -o "$bin" ./cmd/taledeploy
if grep -q TALEDEPLOY_KILL_AFTER "$bin"; then
	echo "the release binary holds the test hook TALEDEPLOY_KILL_AFTER" >&2
	exit 1
fi
rm -f "$bin"

echo "== unit tests"
# Under the race detector: fleet commands run one goroutine per host.
go test -race -count=1 $(go list ./... | grep -v /e2e)

# Release binaries are built without cgo: their migration checker is the
# WebAssembly parser, tested here on every rule.
CGO_ENABLED=0 go test -count=1 ./migcheck

echo "== fuzz (bounded)"
# Budgets in executions, not seconds: Go 1.26's fuzz coordinator can fail a
# time-bounded run with "context deadline exceeded" when a worker is busy at
# the deadline (golang/go#75804, fixed in 1.27); a count has no deadline.
go test -run '^$' -fuzz '^FuzzRunArgv$' -fuzztime 10000x ./remote
go test -run '^$' -fuzz '^FuzzCommands$' -fuzztime 100x ./plan
go test -run '^$' -fuzz '^FuzzParse$' -fuzztime 30000x ./internal/stack
go test -run '^$' -fuzz '^FuzzEnvFile$' -fuzztime 30000x ./internal/stack
go test -run '^$' -fuzz '^FuzzSSHConfig$' -fuzztime 30000x ./remote

echo "== end-to-end (real sshd, Docker, Compose v2, Caddy, vegeta load)"
# One test at a time (-p 1): the machine has 2 cores. The push, fault and fleet
# tests run with the hosts at a VPS's distance (100 ms round trip on every SSH
# connection, scripts/sandbox.sh wan), the others on the sandbox's bridge.
far='^(TestPushRollbackUnderLoad|TestInterruptedPush|TestRefusedPushes|TestFleet|TestFleetFaults)$'
scripts/sandbox.sh wan 100ms
trap 'scripts/sandbox.sh wan off' EXIT
go test -count=1 -p 1 -v -timeout 60m -run "$far" ./e2e
scripts/sandbox.sh wan off
trap - EXIT
go test -count=1 -p 1 -v -timeout 30m -skip "$far" ./e2e

echo "== end-to-end on the current Docker Engine (host3: API 1.5x, containerd image store)"
# The fleet tests above already span both engines (host1 and host2 run
# Debian's 20.10), at 100 ms; the one-host push, fault, HTTPS and image tests
# run again on host3, on the bridge (the round trip is the tool's, not the
# engine's). TestInterruptedPush does not: it is the longest, and its kills
# are of taledeploy, not of the engine.
current='^(TestPushRollbackUnderLoad|TestRefusedPushes|TestShipImages|TestPullImages|TestHostBuild)$'
TALEDEPLOY_E2E_HOST=host3 go test -count=1 -p 1 -v -timeout 30m -run "$current" ./e2e
