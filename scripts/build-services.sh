#!/usr/bin/env bash
# Builds the example stack's static binaries into services/*/bin/, where their
# Dockerfiles (FROM scratch) pick them up: no container registry is needed.
#   scripts/build-services.sh [DIR]   DIR is a copy of the repository (default: this one)
#   PLATFORM_LDFLAGS='-X main.build=2' changes the platform build (used by tests).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root}
# Debian's busybox-static puts a static busybox here; the images have no libc.
busybox=/bin/busybox
if ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q "install ok installed"; then
	echo "build-services: install busybox-static (scripts/sandbox.sh up does)" >&2
	exit 1
fi
for svc in platform rag crawler store; do
	mkdir -p "$out/services/$svc/bin"
	cp "$busybox" "$out/services/$svc/bin/busybox"
	[ "$svc" = store ] && continue # busybox's httpd only
	flags="" src=$svc
	[ "$svc" = platform ] && flags=${PLATFORM_LDFLAGS:-}
	[ "$svc" = crawler ] && src=rag # one stand-in for both, named by its binary
	(cd "$root" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w $flags" -o "$out/services/$svc/bin/$svc" "./services/$src")
done
