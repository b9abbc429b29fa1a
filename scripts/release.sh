#!/usr/bin/env bash
# Builds the release archives: taledeploy for linux, darwin and windows on
# amd64 and arm64, each with README and LICENSE-free docs, as
#   dist/taledeploy_VERSION_OS_ARCH.tar.gz   (.zip for windows)
# and prints each archive's size.
#   scripts/release.sh [VERSION] [OUTDIR]   VERSION defaults to git describe
# The binaries are built without cgo, so they need no C toolchain for the
# target; their migration checker runs Postgres's parser as WebAssembly.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
version=${1:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
out=${2:-$root/dist}
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for target in linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64; do
	os=${target%/*} arch=${target#*/}
	name=taledeploy_${version}_${os}_${arch}
	mkdir -p "$work/$name"
	exe=taledeploy
	[ "$os" = windows ] && exe=taledeploy.exe
	GOOS=$os GOARCH=$arch CGO_ENABLED=0 go build -trimpath -buildvcs=true \
		-ldflags "-s -w -X main.version=$version" -o "$work/$name/$exe" ./cmd/taledeploy
	cp README.md "$work/$name/"
	cp -r docs "$work/$name/"
	if [ "$os" = windows ]; then
		(cd "$work" && rm -f "$out/$name.zip" && python3 -c 'import shutil,sys; shutil.make_archive(sys.argv[1], "zip", ".", sys.argv[2])' "$out/$name" "$name")
		ls -l "$out/$name.zip" | awk '{printf "release: %s %.1f MiB\n", $9, $5/1048576}'
	else
		tar -C "$work" -czf "$out/$name.tar.gz" "$name"
		ls -l "$out/$name.tar.gz" | awk '{printf "release: %s %.1f MiB\n", $9, $5/1048576}'
	fi
done
