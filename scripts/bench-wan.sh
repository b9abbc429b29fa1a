#!/usr/bin/env bash
# Runs the end-to-end benchmarks with the sandbox hosts at several SSH round
# trips (scripts/sandbox.sh wan), one line per benchmark and round trip:
#
#   scripts/bench-wan.sh [RTT_MS ...]     default: 0 50 100 200
#   BENCH='^BenchmarkFleetPush$' BENCHTIME=2x scripts/bench-wan.sh 0 100
#
# The sandbox must be up (scripts/sandbox.sh up); the hosts are on their
# bridge again (wan off) when it ends.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
[ $# -gt 0 ] || set -- 0 50 100 200
trap 'scripts/sandbox.sh wan off >/dev/null 2>&1' EXIT
for rtt in "$@"; do
	if [ "$rtt" = 0 ]; then
		scripts/sandbox.sh wan off 2>/dev/null
	else
		scripts/sandbox.sh wan "${rtt}ms" 2>/dev/null
	fi
	# A failed benchmark prints its lines and the next round trip still runs.
	go test -count=1 -run '^$' -bench "${BENCH:-^Benchmark(Push|Rollback|Status)$}" -benchtime "${BENCHTIME:-3x}" \
		-timeout 60m ./e2e 2>&1 | awk -v rtt="$rtt" '/^Benchmark|FAIL|_test.go/ {print "rtt " rtt " ms  " $0}' || true
done
