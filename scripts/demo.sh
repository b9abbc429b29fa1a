#!/usr/bin/env bash
# The demo: sets up the sandbox, then pushes the example stack blue -> green ->
# blue and rolls back, while a load generator counts failed requests.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "set-up (first time: installs Docker, builds Compose v2 and Caddy, some minutes)"
scripts/sandbox.sh down && scripts/sandbox.sh up  # start from an empty host
go build -o .sandbox/taledeploy ./cmd/taledeploy
go build -o .sandbox/loadgen ./scripts/loadgen
td=.sandbox/taledeploy

say "first push: blue"
$td push demo
curl -s http://127.0.0.1:8088/

stop=$(mktemp -u)
say "load: 100 req/s on http://127.0.0.1:8088/ (keep-alive and fresh connections, 1 in 50 takes 2 s)"
.sandbox/loadgen -url http://127.0.0.1:8088/ -rate 100 -stop-file "$stop" &
load=$!
sleep 2

say "change the platform code and push: green"
PLATFORM_LDFLAGS="-X main.build=2" scripts/build-services.sh
$td push demo
curl -s http://127.0.0.1:8088/

say "push again: blue"
PLATFORM_LDFLAGS="-X main.build=3" scripts/build-services.sh
$td push demo
curl -s http://127.0.0.1:8088/

say "rollback: green again, from its kept containers"
$td rollback demo
curl -s http://127.0.0.1:8088/
sleep 3

touch "$stop"
say "load result"
wait "$load" && rc=0 || rc=$?
rm -f "$stop"
scripts/build-services.sh
say "status"
$td status demo
exit $rc
