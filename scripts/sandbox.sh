#!/usr/bin/env bash
# Local sandbox for taledeploy: a "VPS" on this machine.
#
#   scripts/sandbox.sh up     install what is missing, start dockerd and one sshd
#                             per sandbox host (127.0.0.1, .2, .3, port 2222) and
#                             one for a jump host (127.0.0.4:2222, for ProxyJump),
#                             write .sandbox/ (key, known_hosts per host)
#   scripts/sandbox.sh down   remove the demo stack (containers, networks, volumes)
#                             and stop that sshd
#   scripts/sandbox.sh tools  only install/build Docker, Compose v2, Caddy, busybox
#                             and the PostgreSQL base image
#   scripts/sandbox.sh wan RTT [RATE]  put RTT (e.g. 100ms) of round trip, and RATE bytes/s
#                             each way, between this machine and every sandbox host: a
#                             relay in user space takes each host's port 2222 and its sshd
#                             moves to 2223 (the kernel here has no netem); kept by `up`
#   scripts/sandbox.sh wan off  hosts on loopback again
#
# Slow builds (Compose, Caddy, the PostgreSQL root filesystem) are cached under $TALEDEPLOY_CACHE
# (default /var/cache/taledeploy) and in the Docker image store, so a second run
# skips them. Everything is idempotent.
set -euo pipefail

COMPOSE_VERSION=v2.40.3
CADDY_VERSION=v2.11.9
CADDY_IMAGE=taledeploy/caddy:${CADDY_VERSION#v}
PG_MAJOR=15
PG_IMAGE=taledeploy/postgres:$PG_MAJOR-bookworm

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${TALEDEPLOY_CACHE:-/var/cache/taledeploy}
sandbox=$root/.sandbox
plugin=/usr/local/lib/docker/cli-plugins/docker-compose

log() { echo "sandbox: $*" >&2; }

need_root() {
	if [ "$(id -u)" != 0 ]; then
		log "run as root (it installs packages and starts dockerd and sshd)"
		exit 1
	fi
}

apt_install() {
	local missing=()
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# go_tool builds one Go command at a pinned version into $2 through a throwaway module.
go_tool() {
	local pkg=$1 out=$2 version=$3 ldflags=${4:-}
	[ -x "$out" ] && return 0
	command -v go >/dev/null || { log "go is needed to build $pkg"; exit 1; }
	log "building $pkg@$version (first time only, several minutes)"
	local tmp
	tmp=$(mktemp -d)
	(
		cd "$tmp"
		go mod init tmp >/dev/null 2>&1
		GOFLAGS=-mod=mod go get -tool "$pkg@$version" >/dev/null
		CGO_ENABLED=0 go build -trimpath -ldflags="-s -w $ldflags" -o "$out.tmp" "$pkg"
	)
	mv "$out.tmp" "$out"
	rm -rf "$tmp"
}

start_dockerd() {
	if docker info >/dev/null 2>&1; then return 0; fi
	log "starting dockerd"
	mkdir -p /var/log
	nohup dockerd >/var/log/taledeploy-dockerd.log 2>&1 &
	for _ in $(seq 1 60); do
		docker info >/dev/null 2>&1 && return 0
		sleep 0.5
	done
	log "dockerd did not start; see /var/log/taledeploy-dockerd.log"
	exit 1
}

tools() {
	need_root
	apt_install docker.io openssh-server busybox-static ca-certificates zsh debootstrap
	mkdir -p "$cache" "$(dirname "$plugin")"
	go_tool github.com/docker/compose/v2/cmd "$cache/docker-compose-$COMPOSE_VERSION" "$COMPOSE_VERSION" \
		"-X github.com/docker/compose/v2/internal.Version=$COMPOSE_VERSION"
	install -m 0755 "$cache/docker-compose-$COMPOSE_VERSION" "$plugin"
	go_tool github.com/caddyserver/caddy/v2/cmd/caddy "$cache/caddy-$CADDY_VERSION" "$CADDY_VERSION"
	start_dockerd
	if ! docker image inspect "$CADDY_IMAGE" >/dev/null 2>&1; then
		log "building image $CADDY_IMAGE"
		local ctx
		ctx=$(mktemp -d)
		cp "$cache/caddy-$CADDY_VERSION" "$ctx/caddy"
		cat >"$ctx/Dockerfile" <<-'EOF'
			FROM scratch
			COPY caddy /usr/bin/caddy
			ENV XDG_CONFIG_HOME=/config XDG_DATA_HOME=/data
			ENTRYPOINT ["/usr/bin/caddy"]
			CMD ["run", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"]
		EOF
		DOCKER_BUILDKIT=0 docker build -q -t "$CADDY_IMAGE" "$ctx" >/dev/null
		rm -rf "$ctx"
	fi
	postgres_image
}

# debian_mirror prints the Debian archive this machine's apt uses, so the image
# comes from the same place as the host's packages ($DEBIAN_MIRROR wins).
debian_mirror() {
	if [ -n "${DEBIAN_MIRROR:-}" ]; then
		echo "$DEBIAN_MIRROR"
		return
	fi
	local uri
	uri=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
		awk '/^URIs:/ {for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) {print $i; exit}}')
	[ -n "$uri" ] || uri=$(awk '$1 == "deb" && $2 ~ /\/debian\/?$/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null)
	[ -n "$uri" ] || { log "no Debian archive in the apt sources; set DEBIAN_MIRROR"; exit 1; }
	echo "$uri"
}

# postgres_image imports $PG_IMAGE: a Debian 12 root filesystem (debootstrap,
# minbase) with Debian's PostgreSQL $PG_MAJOR and nothing else, made without any
# container registry. The rootfs tarball is kept in $cache, so a lost image is
# re-imported in seconds; an existing image is kept as is.
postgres_image() {
	docker image inspect "$PG_IMAGE" >/dev/null 2>&1 && return 0
	local tarball=$cache/postgres-$PG_MAJOR-bookworm-rootfs.tar.gz
	if [ ! -s "$tarball" ]; then
		log "building the PostgreSQL $PG_MAJOR root filesystem with debootstrap (first time only, a few minutes)"
		local rootfs
		rootfs=$(mktemp -d "$cache/rootfs.XXXXXX")
		# The package's post-install makes no cluster: the entrypoint does, on the volume.
		mkdir -p "$rootfs/etc/postgresql-common/createcluster.d"
		echo "create_main_cluster = false" >"$rootfs/etc/postgresql-common/createcluster.d/taledeploy.conf"
		if ! debootstrap --variant=minbase --include="postgresql-$PG_MAJOR" \
			bookworm "$rootfs" "$(debian_mirror)" >"$cache/debootstrap.log" 2>&1; then
			log "debootstrap failed; see $cache/debootstrap.log"
			# It may leave /proc or /sys mounted there: never delete across file systems.
			rm -rf --one-file-system "$rootfs"
			exit 1
		fi
		# No cluster from the package, no apt caches or lists, no docs, man pages,
		# message translations or locale sources (the server runs in C.UTF-8).
		rm -rf "$rootfs/etc/postgresql/$PG_MAJOR/main" "$rootfs/var/lib/postgresql/$PG_MAJOR/main"
		chroot "$rootfs" apt-get clean
		rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
			"$rootfs"/var/cache/debconf/*-old "$rootfs"/var/log/* \
			"$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
			"$rootfs"/usr/share/locale/* "$rootfs"/usr/share/i18n/*
		tar -C "$rootfs" --numeric-owner -czf "$tarball.tmp" .
		mv "$tarball.tmp" "$tarball"
		rm -rf --one-file-system "$rootfs"
	fi
	log "importing image $PG_IMAGE"
	docker import -c 'ENV PATH=/usr/lib/postgresql/'"$PG_MAJOR"'/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
		-c 'ENV LANG=C.UTF-8' -c 'CMD ["postgres"]' \
		"$tarball" "$PG_IMAGE" >/dev/null
}

# start_sshd NAME ADDR PORT [LOGLEVEL [PUBLIC]] starts one OpenSSH sshd for a sandbox host, with its own
# host key and authorized key, and copies the client key and the host's
# known_hosts line into .sandbox/. The sshd and its keys live in $cache/sandbox,
# shared by every checkout on the machine (a CI clone and the main one), so
# whichever checkout started it, every checkout's known_hosts matches it.
start_sshd() {
	local name=$1 addr=$2 port=$3 loglevel=${4:-ERROR} public=${5:-$3} state=$cache/sandbox dir=$cache/sandbox/$1
	mkdir -p "$dir" "$sandbox/$name"
	chmod 700 "$state" "$dir" "$sandbox" "$sandbox/$name"
	[ -f "$dir/host_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C "$name-host" -f "$dir/host_ed25519"
	[ -f "$state/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C taledeploy-sandbox -f "$state/id_ed25519"
	install -m 600 "$state/id_ed25519" "$sandbox/id_ed25519"
	install -m 644 "$state/id_ed25519.pub" "$sandbox/id_ed25519.pub"
	install -m 600 "$state/id_ed25519.pub" "$dir/authorized_keys"
	cat >"$dir/sshd_config.new" <<-EOF
		ListenAddress $addr:$port
		HostKey $dir/host_ed25519
		AuthorizedKeysFile $dir/authorized_keys
		PidFile $dir/sshd.pid
		PermitRootLogin prohibit-password
		PasswordAuthentication no
		KbdInteractiveAuthentication no
		UsePAM no
		StrictModes no
		AllowTcpForwarding yes
		AllowStreamLocalForwarding yes
		MaxSessions 64
		MaxStartups 64:30:128
		Subsystem sftp internal-sftp
		LogLevel $loglevel
	EOF
	local hostkey
	hostkey=$(cut -d' ' -f1,2 "$dir/host_ed25519.pub")
	echo "[$addr]:$public $hostkey" >"$sandbox/$name/known_hosts"
	if [ -f "$dir/sshd.pid" ] && kill -0 "$(cat "$dir/sshd.pid")" 2>/dev/null && cmp -s "$dir/sshd_config" "$dir/sshd_config.new"; then
		rm -f "$dir/sshd_config.new"
		return 0
	fi
	mv "$dir/sshd_config.new" "$dir/sshd_config"
	# An older sandbox sshd (another checkout's, or an older layout) may hold the port.
	pkill -f "sshd -f .*/(\.sandbox|sandbox)/$name/sshd_config" 2>/dev/null && sleep 0.3 || true
	mkdir -p /run/sshd
	/usr/sbin/sshd -f "$dir/sshd_config" -E "$dir/sshd.log"
	for _ in $(seq 1 40); do
		[ -f "$dir/sshd.pid" ] && return 0
		sleep 0.1
	done
	log "sshd for $name did not start; see $dir/sshd.log"
	exit 1
}

# start_host NAME ADDR [LOGLEVEL] serves a sandbox host on ADDR:2222: its sshd
# itself, or, with `wan` on, a relay that delays every byte in front of its
# sshd on ADDR:2223.
start_host() {
	local name=$1 addr=$2 loglevel=${3:-ERROR} dir=$cache/sandbox/$1
	stop_relay "$name"
	if [ ! -f "$cache/sandbox/wan" ]; then
		start_sshd "$name" "$addr" 2222 "$loglevel"
		return 0
	fi
	local rtt rate
	read -r rtt rate <"$cache/sandbox/wan"
	start_sshd "$name" "$addr" 2223 "$loglevel" 2222
	(cd "$root" && go build -o "$cache/wanrelay" ./scripts/wanrelay)
	nohup "$cache/wanrelay" -listen "$addr:2222" -to "$addr:2223" -delay "$((rtt / 2))ms" -rate "${rate:-0}" \
		>"$dir/relay.log" 2>&1 &
	echo $! >"$dir/relay.pid"
	for _ in $(seq 1 40); do
		(exec 3<>"/dev/tcp/$addr/2222") 2>/dev/null && return 0
		sleep 0.1
	done
	log "the relay for $name did not start; see $dir/relay.log"
	exit 1
}

stop_relay() {
	local dir=$cache/sandbox/$1
	if [ -f "$dir/relay.pid" ]; then
		kill "$(cat "$dir/relay.pid")" 2>/dev/null || true
		rm -f "$dir/relay.pid"
	fi
}

start_hosts() {
	# Three "VPS" hosts for fleet tests, one sshd each on its own loopback address.
	start_host host1 127.0.0.1
	start_host host2 127.0.0.2
	start_host host3 127.0.0.3
	# A jump host (ProxyJump) in front of them; at DEBUG1 its log names every
	# forwarding, so a test can tell a connection went through it.
	start_host jump 127.0.0.4 DEBUG1
}

stop_sshd() {
	local dir=$cache/sandbox/$1
	if [ -f "$dir/sshd.pid" ]; then
		kill "$(cat "$dir/sshd.pid")" 2>/dev/null || true
		rm -f "$dir/sshd.pid"
	fi
}

# remove_project deletes every container, network and volume of compose projects
# whose name starts with $1 (the demo's, or a test's).
remove_project() {
	local prefix=$1
	local ids
	ids=$(docker ps -a --filter "label=com.docker.compose.project" --format '{{.ID}} {{.Label "com.docker.compose.project"}}' |
		awk -v p="$prefix" '$2 == p || index($2, p "-") == 1 {print $1}')
	[ -n "$ids" ] && docker rm -f $ids >/dev/null
	for n in "$prefix" "$prefix-blue" "$prefix-green" "${prefix}_default"; do
		docker network rm "$n" >/dev/null 2>&1 || true
	done
	docker volume ls -q --filter "label=com.docker.compose.project=$prefix" | xargs -r docker volume rm >/dev/null
	return 0
}

case "${1:-}" in
tools)
	tools
	;;
up)
	tools
	"$root/scripts/build-services.sh"
	start_hosts
	[ -f "$cache/sandbox/wan" ] && log "wan: $(cat "$cache/sandbox/wan") (round trip in ms, bytes/s) to every host"
	log "ready: ssh root@127.0.0.1 -p 2222 -i .sandbox/id_ed25519; try: go run ./cmd/taledeploy push demo"
	;;
wan)
	need_root
	case "${2:-}" in
	off) rm -f "$cache/sandbox/wan" ;;
	*ms)
		rtt=${2%ms}
		case "$rtt:${3:-0}" in
		:* | *[!0-9:]*)
			echo "usage: scripts/sandbox.sh wan RTTms [BYTES_PER_SECOND] | wan off" >&2
			exit 2
			;;
		esac
		mkdir -p "$cache/sandbox"
		echo "$rtt ${3:-0}" >"$cache/sandbox/wan"
		;;
	*)
		echo "usage: scripts/sandbox.sh wan RTTms [BYTES_PER_SECOND] | wan off" >&2
		exit 2
		;;
	esac
	start_hosts
	log "wan: ${2} to every sandbox host"
	;;
down)
	if docker info >/dev/null 2>&1; then
		remove_project tale-demo
	fi
	rm -rf /var/lib/taledeploy-demo
	for h in host1 host2 host3 jump; do
		stop_relay "$h"
		stop_sshd "$h"
	done
	log "down"
	;;
*)
	echo "usage: scripts/sandbox.sh up|down|tools|wan RTTms [RATE]|wan off" >&2
	exit 2
	;;
esac
