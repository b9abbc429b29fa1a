#!/usr/bin/env bash
# Local sandbox for taledeploy: "VPS" hosts on this machine.
#
#   scripts/sandbox.sh up     install what is missing and start the sandbox hosts:
#                             host1, host2 and host3 (10.231.0.1, .2, .3) are separate
#                             machines, each with its own network namespace, disk
#                             (/var/lib), dockerd and sshd on port 2222; jump
#                             (10.231.0.4:2222, for ProxyJump) has only an sshd. Writes
#                             .sandbox/ (key, known_hosts per host, and hosts: name,
#                             address and state folder, whose docker.sock reaches the
#                             host's engine from here)
#   scripts/sandbox.sh down   stop the hosts and delete their disks (containers,
#                             volumes, images, deployed folders)
#   scripts/sandbox.sh tools  only install/build Docker, Compose v2, Caddy, busybox
#                             and the PostgreSQL base image (in this machine's engine)
#   scripts/sandbox.sh wan RTT [RATE]  put RTT (e.g. 100ms) of round trip, and RATE bytes/s
#                             each way, between this machine and every sandbox host's
#                             sshd: a relay in user space in the host takes its port 2222
#                             (the kernel here has no netem); kept by `up`
#   scripts/sandbox.sh wan off  no delay again
#   scripts/sandbox.sh fault HOST docker-stop|docker-start|disk-fill [LEAVE]|disk-free|cut|mend
#                             stop or start HOST's dockerd, fill its disk or free it,
#                             cut its link or mend it (for the fault tests)
#
# This machine's own dockerd is the image cache and the laptop's engine: the
# images the hosts need are built there once and loaded into each host.
# Slow builds (Compose, Caddy, the PostgreSQL root filesystem) are cached under $TALEDEPLOY_CACHE
# (default /var/cache/taledeploy) and in the Docker image store, so a second run
# skips them. Everything is idempotent.
set -euo pipefail

COMPOSE_VERSION=v2.40.3
CADDY_VERSION=v2.11.9
CADDY_IMAGE=taledeploy/caddy:${CADDY_VERSION#v}
# The current Engine line (containerd image store, API 1.5x) runs on host3,
# with the runc it needs (Debian's 1.1 cannot start its containers).
ENGINE_VERSION=v2.0.0-beta.24
RUNC_VERSION=v1.5.3
current_host=host3
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

# go_tool builds one Go command at a pinned version into $2 through a throwaway
# module, with ldflags $4, build tags $5 and CGO_ENABLED=${6:-0}.
go_tool() {
	local pkg=$1 out=$2 version=$3 ldflags=${4:-} tags=${5:-} cgo=${6:-0}
	[ -x "$out" ] && return 0
	command -v go >/dev/null || { log "go is needed to build $pkg"; exit 1; }
	log "building $pkg@$version (first time only, several minutes)"
	local tmp
	tmp=$(mktemp -d)
	(
		cd "$tmp"
		go mod init tmp >/dev/null 2>&1
		GOFLAGS=-mod=mod go get -tool "$pkg@$version" >get.log 2>&1 || { cat get.log >&2; exit 1; }
		CGO_ENABLED=$cgo go build -trimpath -tags "$tags" -ldflags="-s -w $ldflags" -o "$out.tmp" "$pkg"
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
	apt_install docker.io openssh-server busybox-static ca-certificates zsh debootstrap iproute2 e2fsprogs iptables
	mkdir -p "$cache" "$(dirname "$plugin")"
	go_tool github.com/docker/compose/v2/cmd "$cache/docker-compose-$COMPOSE_VERSION" "$COMPOSE_VERSION" \
		"-X github.com/docker/compose/v2/internal.Version=$COMPOSE_VERSION"
	install -m 0755 "$cache/docker-compose-$COMPOSE_VERSION" "$plugin"
	go_tool github.com/caddyserver/caddy/v2/cmd/caddy "$cache/caddy-$CADDY_VERSION" "$CADDY_VERSION"
	current_engine
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

# current_engine builds, once, the current Docker Engine and the runc it needs.
current_engine() {
	apt_install libseccomp-dev gcc pkg-config containerd
	go_tool github.com/moby/moby/v2/cmd/dockerd "$cache/dockerd-$ENGINE_VERSION" "$ENGINE_VERSION" \
		"-X github.com/moby/moby/v2/dockerversion.Version=${ENGINE_VERSION#v}" \
		"exclude_graphdriver_btrfs exclude_graphdriver_devicemapper"
	# It refuses an older docker-proxy (Debian's) for published ports.
	go_tool github.com/moby/moby/v2/cmd/docker-proxy "$cache/docker-proxy-$ENGINE_VERSION" "$ENGINE_VERSION"
	go_tool github.com/opencontainers/runc "$cache/runc-$RUNC_VERSION" "$RUNC_VERSION" \
		"-X main.version=${RUNC_VERSION#v}" seccomp 1
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

# start_sshd NAME ADDR PORT [LOGLEVEL [PUBLIC_PORT [PUBLIC_ADDR]]] starts one OpenSSH sshd, in sandbox host NAME's namespaces, with its own
# host key and authorized key, and copies the client key and the host's
# known_hosts line into .sandbox/. The sshd and its keys live in $cache/sandbox,
# shared by every checkout on the machine (a CI clone and the main one), so
# whichever checkout started it, every checkout's known_hosts matches it.
start_sshd() {
	local name=$1 addr=$2 port=$3 loglevel=${4:-ERROR} public=${5:-$3} public_addr=${6:-$2} state=$cache/sandbox dir=$cache/sandbox/$1
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
	echo "[$public_addr]:$public $hostkey" >"$sandbox/$name/known_hosts"
	if [ -f "$dir/sshd.pid" ] && kill -0 "$(cat "$dir/sshd.pid")" 2>/dev/null && cmp -s "$dir/sshd_config" "$dir/sshd_config.new"; then
		rm -f "$dir/sshd_config.new"
		return 0
	fi
	mv "$dir/sshd_config.new" "$dir/sshd_config"
	# An older sandbox sshd (another checkout's, or an older layout) may hold the port.
	pkill -f "sshd -f .*/(\.sandbox|sandbox)/$name/sshd_config" 2>/dev/null && sleep 0.3 || true
	in_host "$name" /usr/sbin/sshd -f "$dir/sshd_config" -E "$dir/sshd.log"
	for _ in $(seq 1 40); do
		[ -f "$dir/sshd.pid" ] && return 0
		sleep 0.1
	done
	log "sshd for $name did not start; see $dir/sshd.log"
	exit 1
}

# Sandbox hosts are separate machines on this one: each has its own network
# namespace (an address on the bridge $bridge, nothing routed beyond it), its
# own mount namespace with its own /run and its own disk on /var/lib (a sparse
# ext4 image, so a host can fill up alone), and, but for the jump host, its own
# dockerd (own containerd, data root, bridge and iptables). Its sshd runs in
# that namespace, so a session sees the host's own /var/run/docker.sock.
bridge=tdbr0
subnet=10.231.0
machines="host1:$subnet.1 host2:$subnet.2 host3:$subnet.3 jump:$subnet.4"
disk_size=6G

ensure_bridge() {
	if ! ip link show "$bridge" >/dev/null 2>&1; then
		ip link add "$bridge" type bridge
		ip addr add "$subnet.254/24" dev "$bridge"
	fi
	ip link set "$bridge" up
	# Docker's FORWARD policy is DROP, and bridged frames cross iptables here:
	# let the hosts reach each other (the jump host forwards to the others).
	iptables -C FORWARD -i "$bridge" -o "$bridge" -j ACCEPT 2>/dev/null ||
		iptables -I FORWARD 1 -i "$bridge" -o "$bridge" -j ACCEPT
}

# holder_pid NAME prints the pid of the process that holds NAME's namespaces.
holder_pid() {
	local f=$cache/sandbox/$1/holder.pid pid
	[ -f "$f" ] && pid=$(cat "$f") && kill -0 "$pid" 2>/dev/null || return 1
	# A holder that died may have left its pid to another process: it is
	# the holder only if it is in the host's network namespace.
	[ "$(stat -L -c %i "/proc/$pid/ns/net" 2>/dev/null)" = "$(stat -L -c %i "/run/netns/td-$1" 2>/dev/null)" ] || return 1
	echo "$pid"
}

# in_host NAME CMD... runs CMD in host NAME's network and mount namespaces.
in_host() {
	local pid
	pid=$(holder_pid "$1") || { log "host $1 is not up (scripts/sandbox.sh up)"; exit 1; }
	shift
	nsenter -t "$pid" -m -n -- "$@"
}

# start_machine NAME ADDR makes host NAME's namespaces, held by a sleeping
# process, unless they exist.
start_machine() {
	local name=$1 addr=$2 dir=$cache/sandbox/$1 ns=td-$1 veth=tdv-$1
	mkdir -p "$dir"
	holder_pid "$name" >/dev/null && return 0
	ip netns del "$ns" 2>/dev/null || true
	ip link del "$veth" 2>/dev/null || true
	ip netns add "$ns"
	ip link add "$veth" type veth peer name eth0 netns "$ns"
	ip link set "$veth" master "$bridge" up
	ip -n "$ns" addr add "$addr/24" dev eth0
	ip -n "$ns" link set eth0 up
	ip -n "$ns" link set lo up
	if [ ! -f "$dir/disk.img" ]; then
		truncate -s "$disk_size" "$dir/disk.img.tmp"
		mkfs.ext4 -q -F -m 0 "$dir/disk.img.tmp"
		mv "$dir/disk.img.tmp" "$dir/disk.img"
	fi
	mkdir -p "$dir/etc-docker" "$dir/cg"
	rm -f "$dir/ready"
	# A fresh sysfs shows this namespace's interfaces (dockerd reads them); the
	# cgroup tree is carried over from this machine's.
	nohup unshare --mount --uts --propagation private nsenter --net="/run/netns/$ns" sh -euc '
		d=$1
		hostname "$2"
		mount --rbind /sys/fs/cgroup "$d/cg"
		mount -t sysfs sysfs /sys
		mount --rbind "$d/cg" /sys/fs/cgroup
		umount -l "$d/cg"
		mount -t tmpfs -o mode=755 tmpfs /run
		mkdir -p /run/sshd
		mount -o loop "$d/disk.img" /var/lib
		# Direct I/O: a buffered loop device flushes every page written to
		# the disk on each fsync inside it, so Postgres commits stalled for
		# seconds while dockerd unpacked layers (2.1 s against 0.4 s here).
		losetup --direct-io=on "$(findmnt -no SOURCE /var/lib)" || true
		mount --bind "$d/etc-docker" /etc/docker
		touch "$d/ready"
		exec sleep infinity
	' holder "$dir" "$name" >"$dir/holder.log" 2>&1 &
	echo $! >"$dir/holder.pid"
	for _ in $(seq 1 50); do
		[ -f "$dir/ready" ] && return 0
		sleep 0.1
	done
	log "host $name's namespaces were not made; see $dir/holder.log"
	exit 1
}

# plain_bashrc NAME gives host NAME's root the .bashrc a VPS has (Debian's,
# which does nothing for a command run over SSH). The hosts share this
# machine's /root, and its .bashrc (pyenv here: about 100 processes) made
# every remote command take 0.1 s more than on a VPS.
plain_bashrc() {
	[ -f /root/.bashrc ] || return 0
	if [ -f /etc/skel/.bashrc ]; then
		cp /etc/skel/.bashrc "$cache/sandbox/bashrc"
	else
		: >"$cache/sandbox/bashrc"
	fi
	in_host "$1" sh -c 'findmnt -n /root/.bashrc >/dev/null || mount --bind "$1" /root/.bashrc' sh "$cache/sandbox/bashrc"
}

# host_docker NAME runs the docker CLI against host NAME's engine.
host_docker() {
	local name=$1
	shift
	DOCKER_HOST=unix://$cache/sandbox/$name/docker.sock docker "$@"
}

# start_host_dockerd NAME starts host NAME's own dockerd, with the defaults a
# VPS has (its /var/lib/docker and /var/run/docker.sock are the host's own),
# and a second socket in $cache for this machine's tests and this script.
start_host_dockerd() {
	local name=$1 dir=$cache/sandbox/$1 bin=dockerd want="" opts=""
	if [ "$name" = "$current_host" ]; then
		# The current Engine on a data root of its own: a fresh one gets the
		# containerd image store, as on a new install (Debian's engine left
		# overlay2 data in /var/lib/docker, which would keep it on that).
		bin=$cache/dockerd-$ENGINE_VERSION want=${ENGINE_VERSION#v}
		opts="--data-root /var/lib/docker-current --userland-proxy-path $cache/docker-proxy-$ENGINE_VERSION --add-runtime runc-current=$cache/runc-$RUNC_VERSION --default-runtime runc-current"
	fi
	local running
	if running=$(host_docker "$name" info --format '{{.ServerVersion}}' 2>/dev/null); then
		if [ -z "$want" ] && [ "$running" != "${ENGINE_VERSION#v}" ] || [ "$running" = "$want" ]; then
			return 0
		fi
		stop_host_dockerd "$name"
	fi
	log "starting $name's dockerd${want:+ $want}"
	rm -f "$dir/docker.sock"
	# shellcheck disable=SC2086 # opts is a list of flags
	in_host "$name" sh -c 'd=$1 bin=$2; shift 2; exec nohup "$bin" -H unix:///var/run/docker.sock -H "unix://$d/docker.sock" "$@" >"$d/dockerd.log" 2>&1 </dev/null &
		echo $! >"$d/dockerd.pid"' dockerd "$dir" "$bin" $opts
	for _ in $(seq 1 120); do
		host_docker "$name" info >/dev/null 2>&1 && return 0
		sleep 0.5
	done
	log "$name's dockerd did not start; see $dir/dockerd.log"
	exit 1
}

stop_host_dockerd() {
	local dir=$cache/sandbox/$1 pid
	[ -f "$dir/dockerd.pid" ] || return 0
	pid=$(cat "$dir/dockerd.pid")
	kill "$pid" 2>/dev/null || true
	for _ in $(seq 1 100); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.2
	done
	# One that hangs must not run beside the next (the engine may change).
	kill -KILL "$pid" 2>/dev/null || true
	rm -f "$dir/dockerd.pid"
}

# load_images NAME copies the images every stack here uses (Caddy, PostgreSQL)
# from this machine's engine, the cache, into host NAME's, when it lacks them.
load_images() {
	local name=$1 img want
	for img in "$CADDY_IMAGE" "$PG_IMAGE"; do
		# By layers and config: an image's ID differs on the containerd
		# store (host3), where it is the manifest's digest.
		want=$(docker image inspect -f '{{.RootFS.Layers}} {{.Created}}' "$img")
		[ "$(host_docker "$name" image inspect -f '{{.RootFS.Layers}} {{.Created}}' "$img" 2>/dev/null)" = "$want" ] && continue
		log "loading $img into $name"
		docker save "$img" | host_docker "$name" load -q >/dev/null
	done
}

# start_host NAME ADDR [LOGLEVEL] serves a sandbox host on ADDR:2222: its sshd
# itself, or, with `wan` on, a relay that delays every byte in front of its
# sshd on 127.0.0.1:2223 (both in the host's namespaces).
start_host() {
	local name=$1 addr=$2 loglevel=${3:-ERROR} dir=$cache/sandbox/$1
	start_machine "$name" "$addr"
	plain_bashrc "$name"
	if [ "$name" != jump ]; then
		start_host_dockerd "$name"
		load_images "$name"
	fi
	stop_relay "$name"
	if [ ! -f "$cache/sandbox/wan" ]; then
		start_sshd "$name" "$addr" 2222 "$loglevel"
		return 0
	fi
	local rtt rate
	read -r rtt rate <"$cache/sandbox/wan"
	start_sshd "$name" 127.0.0.1 2223 "$loglevel" 2222 "$addr"
	(cd "$root" && go build -o "$cache/wanrelay" ./scripts/wanrelay)
	in_host "$name" sh -c 'exec nohup "$1" -listen "$2:2222" -to 127.0.0.1:2223 -delay "$3ms" -rate "$4" >"$5/relay.log" 2>&1 </dev/null &
		echo $! >"$5/relay.pid"' relay "$cache/wanrelay" "$addr" "$((rtt / 2))" "${rate:-0}" "$dir"
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
	ensure_bridge
	local m
	mkdir -p "$sandbox"
	chmod 700 "$sandbox"
	: >"$sandbox/hosts.new"
	# Three "VPS" hosts for fleet tests, and a jump host (ProxyJump) in front of
	# them; at DEBUG1 its log names every forwarding, so a test can tell a
	# connection went through it.
	for m in $machines; do
		start_host "${m%%:*}" "${m#*:}" "$([ "${m%%:*}" = jump ] && echo DEBUG1 || echo ERROR)"
		echo "${m%%:*} ${m#*:} $cache/sandbox/${m%%:*}" >>"$sandbox/hosts.new"
	done
	mv "$sandbox/hosts.new" "$sandbox/hosts"
}

stop_machine() {
	local name=$1 dir=$cache/sandbox/$1 pid
	stop_relay "$name"
	stop_sshd "$name"
	stop_host_dockerd "$name"
	if pid=$(holder_pid "$name"); then
		kill "$pid" 2>/dev/null || true
		for _ in $(seq 1 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
	fi
	rm -f "$dir/holder.pid" "$dir/ready" "$dir/docker.sock"
	ip netns del "td-$name" 2>/dev/null || true
	ip link del "tdv-$name" 2>/dev/null || true
}

stop_sshd() {
	local dir=$cache/sandbox/$1
	if [ -f "$dir/sshd.pid" ]; then
		kill "$(cat "$dir/sshd.pid")" 2>/dev/null || true
		rm -f "$dir/sshd.pid"
	fi
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
	log "ready: ssh root@$subnet.1 -p 2222 -i .sandbox/id_ed25519; try: go run ./cmd/taledeploy push demo"
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
fault)
	need_root
	name=${2:-}
	case "$name" in host1 | host2 | host3 | jump) ;; *) set -- usage ;; esac
	case "${3:-}" in
	docker-stop) stop_host_dockerd "$name" ;;
	docker-start) start_host_dockerd "$name" ;;
	disk-fill)
		# No reserved blocks on the hosts' disks: this leaves ${4:-0} bytes free.
		in_host "$name" sh -c 'fallocate -l "$(($(df -B1 --output=avail /var/lib | tail -1) - $1))" /var/lib/sandbox-filler' \
			fill "${4:-0}"
		;;
	disk-free) in_host "$name" rm -f /var/lib/sandbox-filler ;;
	cut) ip link set "tdv-$name" down ;;
	mend) ip link set "tdv-$name" up ;;
	*)
		echo "usage: scripts/sandbox.sh fault host1|host2|host3|jump docker-stop|docker-start|disk-fill [LEAVE_BYTES]|disk-free|cut|mend" >&2
		exit 2
		;;
	esac
	;;
down)
	for m in $machines; do
		stop_machine "${m%%:*}"
		rm -f "$cache/sandbox/${m%%:*}/disk.img"
	done
	ip link del "$bridge" 2>/dev/null || true
	iptables -D FORWARD -i "$bridge" -o "$bridge" -j ACCEPT 2>/dev/null || true
	rm -f "$sandbox/hosts"
	log "down"
	;;
*)
	echo "usage: scripts/sandbox.sh up|down|tools|wan RTTms [RATE]|wan off|fault HOST WHAT" >&2
	exit 2
	;;
esac
