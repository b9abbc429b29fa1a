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
# The site is https://localhost, with a certificate of Caddy's own CA.
# The sandbox host's own engine, reached from here through its socket in the
# state folder .sandbox/hosts names.
host1=$(awk '$1 == "host1" {print $2, $3}' .sandbox/hosts)
addr=${host1%% *}
DOCKER_HOST=unix://${host1#* }/docker.sock docker cp tale-demo-proxy:/data/caddy/pki/authorities/local/root.crt .sandbox/caddy-root.crt
get() { curl -s --cacert .sandbox/caddy-root.crt --resolve "localhost:8443:$addr" https://localhost:8443/; }
get
curl -s -o /dev/null -w 'http://localhost:8088/ answers %{http_code}, to %{redirect_url}\n' --resolve "localhost:8088:$addr" http://localhost:8088/

stop=$(mktemp -u)
say "load: 100 req/s on https://localhost:8443/ at $addr (keep-alive and fresh TLS connections, 1 in 50 takes 2 s)"
.sandbox/loadgen -url "https://$addr:8443/" -servername localhost -cacert .sandbox/caddy-root.crt -rate 100 -stop-file "$stop" &
load=$!
sleep 2

say "change the platform code and push: green"
PLATFORM_LDFLAGS="-X main.build=2" scripts/build-services.sh
$td push demo
get

say "push again: blue"
PLATFORM_LDFLAGS="-X main.build=3" scripts/build-services.sh
$td push demo
get

say "rollback: green again, from its kept containers"
$td rollback demo
get
sleep 3

touch "$stop"
say "load result"
wait "$load" && rc=0 || rc=$?
rm -f "$stop"
scripts/build-services.sh
say "status"
$td status demo
exit $rc
