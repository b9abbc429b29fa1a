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

echo "== unit tests"
go test -count=1 $(go list ./... | grep -v /e2e)

echo "== fuzz (bounded)"
go test -run '^$' -fuzz '^FuzzRunArgv$' -fuzztime 20s ./remote
go test -run '^$' -fuzz '^FuzzCommands$' -fuzztime 20s ./plan
go test -run '^$' -fuzz '^FuzzParse$' -fuzztime 20s ./plan
go test -run '^$' -fuzz '^FuzzSSHConfig$' -fuzztime 20s ./remote

echo "== end-to-end (real sshd, Docker, Compose v2, Caddy, vegeta load)"
# One package at a time (-p 1): the machine has 2 cores and the stacks share Docker.
go test -count=1 -p 1 -v -timeout 45m ./e2e
