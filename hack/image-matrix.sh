#!/usr/bin/env bash
# The image builder matrix: images built offline here by real tools (Docker classic and
# BuildKit, buildah, podman, umoci, crane, ko, and skopeo's conversions of them) are pushed
# to the local registry, pulled through a private ferrocri and run as a container whose output is
# checked; then the root file system ferrocri unpacked is compared with the one containerd 1.6
# (Debian's package, its own private instance) unpacks from the same image.
#   hack/image-matrix.sh [ROW-REGEX]     only the rows whose image name matches
# Prints a table (builder, image, build, pull, run, same tree as containerd) and exits
# non-zero if any row fails; logs of a failing run stay in the printed work folder.
# Env: FERROCRI_BIN (default target/debug/ferrocri), FERROCRI_REGISTRY_ADDR (default
# 127.0.0.1:5000; images go to <registry>/matrix/<row>:1), MATRIX_KEEP=1 keeps the work folder.
# Installs what it needs (apt packages, crane and ko from the Go module proxy, the
# busybox-static .deb) into a cache on first use; later runs only build.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
export PATH=$HOME/.cargo/bin:/usr/local/go/bin:$PATH

bin=${FERROCRI_BIN:-$repo/target/debug/ferrocri}
REGISTRY=${FERROCRI_REGISTRY_ADDR:-127.0.0.1:5000}
ONLY=${1:-.}
TOOLS=/var/cache/ferrocri-tools
CRANE_VERSION=v0.22.1
CRANE=$TOOLS/crane-$CRANE_VERSION/crane
KO_VERSION=v0.18.1
KO=$TOOLS/ko-$KO_VERSION/ko
APT_PKGS=(docker.io buildah podman umoci skopeo containerd jq)
# The Debian docker.io CLI; another `docker` earlier on PATH may be a different client.
DOCKER_CLI=/usr/bin/docker
CMD_JSON='["/bin/sh","-c","cat /matrix-marker; id"]'
MTIME=@1704067200 # 2024-01-01, for every staged file

log() { echo "[image-matrix] $*" >&2; }
[ -x "$bin" ] || {
	echo "image-matrix.sh: $bin not built (cargo build)" >&2
	exit 1
}

# --- tools (cached) -------------------------------------------------------------------
t_setup=$SECONDS
missing=()
for p in "${APT_PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep '^install ok installed$' >/dev/null || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
	log "apt-get install ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q >/dev/null
	# No init system here starts the packaged services; the script runs its own instances.
	apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
go_tool() { # go_tool <binary path> <module path@version>
	[ -x "$1" ] && return 0
	log "building $2"
	(cd / && GOBIN=$(dirname "$1") CGO_ENABLED=0 GOFLAGS="-trimpath -buildvcs=false" go install -ldflags "-s -w" "$2")
}
go_tool "$CRANE" "github.com/google/go-containerregistry/cmd/crane@$CRANE_VERSION"
go_tool "$KO" "github.com/google/ko@$KO_VERSION"
# Debian's static busybox, downloaded and unpacked but never installed on the host; the
# cached .deb keeps later runs on the same bytes.
mkdir -p "$TOOLS/debs"
deb=$(find "$TOOLS/debs" -maxdepth 1 -name 'busybox-static_*.deb' | sort | tail -n 1)
if [ -z "$deb" ]; then
	dl() { (cd "$TOOLS/debs" && apt-get download -q -o APT::Sandbox::User=root busybox-static >/dev/null); }
	dl || { apt-get update -q >/dev/null && dl; }
	deb=$(find "$TOOLS/debs" -maxdepth 1 -name 'busybox-static_*.deb' | sort | tail -n 1)
fi
FERROCRI_REGISTRY_ADDR=$REGISTRY hack/registry.sh start >/dev/null
log "tools ready in $((SECONDS - t_setup))s"

work=$(mktemp -d /tmp/ferrocri-matrix.XXXXXX)
mkdir -p "$work/logs"
pids=()

# --- the staged root file system --------------------------------------------------------
# Symlinks (relative and absolute), a hard link, a sticky directory, a setuid file, a file
# owned by a non-root user and one with a user xattr: what builders then carry over (or not)
# is what the image holds, and the containerd comparison checks ferrocri reads it the same.
stage=$work/stage
dpkg -x "$deb" "$work/busybox-static"
mkdir -p "$stage"/{bin,etc,tmp,opt/matrix,var/empty}
cp "$work/busybox-static/bin/busybox" "$stage/bin/busybox"
ln -s busybox "$stage/bin/sh"
ln -s /bin/busybox "$stage/bin/cat"
ln "$stage/bin/busybox" "$stage/bin/id"
printf 'root:x:0:0:root:/root:/bin/sh\nmatrix:x:1000:1000:matrix:/tmp:/bin/sh\nnobody:x:65534:65534:nobody:/var/empty:/bin/false\n' >"$stage/etc/passwd"
printf 'root:x:0:\nmatrix:x:1000:\nnogroup:x:65534:\n' >"$stage/etc/group"
chmod 1777 "$stage/tmp"
printf 'setuid\n' >"$stage/opt/matrix/setuid"
chmod 4755 "$stage/opt/matrix/setuid"
printf 'owned by 1000\n' >"$stage/opt/matrix/owned"
chown 1000:1000 "$stage/opt/matrix/owned"
printf 'has an xattr\n' >"$stage/opt/matrix/xattr"
python3 -c 'import os, sys; os.setxattr(sys.argv[1], "user.matrix", b"builder-matrix")' "$stage/opt/matrix/xattr"
find "$stage" -exec touch -h -d "$MTIME" {} +

# A build context per row: the stage, its marker file and a Dockerfile.
context() { # context <row> -> prints the folder
	local ctx=$work/ctx/$1
	mkdir -p "$ctx"
	cp -a "$stage" "$ctx/rootfs"
	printf 'matrix %s\n' "$1" >"$ctx/rootfs/matrix-marker"
	touch -h -d "$MTIME" "$ctx/rootfs/matrix-marker"
	printf 'FROM scratch\nCOPY rootfs/ /\nCMD %s\n' "$CMD_JSON" >"$ctx/Dockerfile"
	echo "$ctx"
}

# --- rows -------------------------------------------------------------------------------
# Each row: image name (also the repository matrix/<name>), who built it, the marker its
# output must show, the uid `id` must print, and a command when the image has none.
declare -A BUILDER MARKER UID_OF COMMAND BUILD BUILD_ERR
ROWS=()
row() { # row <name> <builder text> <marker row> <uid> [command json]
	ROWS+=("$1")
	BUILDER[$1]=$2
	MARKER[$1]="matrix $3"
	UID_OF[$1]=$4
	COMMAND[$1]=${5:-}
}
ref() { echo "$REGISTRY/matrix/$1:1"; }
want() { [[ "$1" =~ $ONLY ]]; }
# A row is built when it is wanted or a wanted row is made from it.
declare -A SOURCE=([crane-mutate]=crane-append [crane-flatten]=crane-mutate)
needed() {
	local r
	want "$1" && return 0
	for r in "${!SOURCE[@]}"; do
		[ "${SOURCE[$r]}" = "$1" ] && needed "$r" && return 0
	done
	return 1
}

# build <row> <function> [args]: runs one build step, logs to logs/<row>.build.
build() {
	local name=$1
	shift
	if ! needed "$name"; then
		BUILD[$name]=skip
		return 0
	fi
	local t0=$EPOCHREALTIME
	if "$@" >"$work/logs/$name.build" 2>&1; then
		BUILD[$name]="ok $(elapsed "$t0")"
	else
		BUILD[$name]="FAIL"
		BUILD_ERR[$name]=$(grep -v '^[[:space:]]*$' "$work/logs/$name.build" | tail -n 3)
	fi
}
elapsed() { # elapsed <start $EPOCHREALTIME> -> "1.2s"
	local us=$((${EPOCHREALTIME/./} - ${1/./}))
	printf '%d.%ds' $((us / 1000000)) $((us / 100000 % 10))
}

# Docker's own builder: a private dockerd, touching nothing of the host's.
docker_cli() { DOCKER_HOST=unix://$work/docker.sock DOCKER_CONFIG=$work/docker-cli "$DOCKER_CLI" "$@"; }
start_dockerd() {
	mkdir -p "$work/docker-cli"
	echo '{}' >"$work/docker.json"
	dockerd --config-file "$work/docker.json" --data-root "$work/docker" --exec-root "$work/docker-exec" \
		--pidfile "$work/docker.pid" -H "unix://$work/docker.sock" --bridge=none --iptables=false \
		--ip-forward=false --ip-masq=false --log-level=warn >"$work/logs/dockerd" 2>&1 &
	dockerd_pid=$!
	pids+=("$dockerd_pid")
	for _ in $(seq 150); do
		docker_cli version >/dev/null 2>&1 && return 0
		kill -0 "$dockerd_pid" 2>/dev/null || break
		sleep 0.2
	done
	log "dockerd did not start: $(tail -n 5 "$work/logs/dockerd")"
	return 1
}
stop_pid() { # stop_pid <pid>: TERM, wait up to 20 s, then KILL
	local pid=$1
	kill -TERM "$pid" 2>/dev/null || return 0
	for _ in $(seq 100); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.2
	done
	kill -KILL "$pid" 2>/dev/null || true
}
docker_build() { # docker_build <row> <DOCKER_BUILDKIT value>
	local ctx
	ctx=$(context "$1")
	DOCKER_BUILDKIT=$2 docker_cli build -t "$(ref "$1")" "$ctx"
	docker_cli push "$(ref "$1")"
}

# buildah and podman: vfs storage in the work folder.
store=(--root "$work/containers/root" --runroot "$work/containers/run" --storage-driver vfs)
podman=(podman "${store[@]}" --cgroup-manager cgroupfs --events-backend file)
buildah_from() {
	local ctx c
	ctx=$(context "$1")
	c=$(buildah "${store[@]}" from scratch)
	buildah "${store[@]}" copy "$c" "$ctx/rootfs/" /
	buildah "${store[@]}" config --cmd "$CMD_JSON" "$c"
	buildah "${store[@]}" commit "$c" "$(ref "$1")"
	buildah "${store[@]}" push --tls-verify=false "$(ref "$1")"
}
buildah_bud() {
	local ctx
	ctx=$(context "$1")
	buildah "${store[@]}" bud -t "$(ref "$1")" "$ctx"
	buildah "${store[@]}" push --tls-verify=false "$(ref "$1")"
}
podman_build() {
	local ctx
	ctx=$(context "$1")
	"${podman[@]}" build -t "$(ref "$1")" "$ctx"
	"${podman[@]}" push --tls-verify=false "$(ref "$1")"
}

# umoci: the stage through unpack/repack (root entry "."), a folder inserted at "/" (root
# entry "/"), a whiteout and an opaque folder, the marker by insert (a tar that ends right after the file's data, without
# padding or end-of-archive blocks), then skopeo to the registry.
umoci_build() {
	local ctx layout=$work/umoci/layout bundle=$work/umoci/bundle hist=(--history.created 2024-01-01T00:00:00Z)
	ctx=$(context "$1")
	mkdir -p "$work/umoci"
	umoci init --layout "$layout"
	umoci new --image "$layout:1"
	umoci unpack --image "$layout:1" "$bundle"
	cp -a "$ctx/rootfs/." "$bundle/rootfs/"
	rm "$bundle/rootfs/matrix-marker"
	touch -d "$MTIME" "$bundle/rootfs"
	umoci repack "${hist[@]}" --image "$layout:1" "$bundle"
	# A folder inserted at "/": that layer's first entry is the root, named "/".
	mkdir -p "$work/umoci/insert/opt/umoci"
	echo inserted >"$work/umoci/insert/opt/umoci/inserted"
	find "$work/umoci/insert" -exec touch -h -d "$MTIME" {} +
	umoci insert "${hist[@]}" --image "$layout:1" "$work/umoci/insert" /
	# A whiteout, and an opaque folder that hides what the layer before put there.
	umoci insert "${hist[@]}" --image "$layout:1" --whiteout /opt/matrix/owned
	mkdir -p "$work/umoci/opaque"
	echo replaced >"$work/umoci/opaque/replaced"
	find "$work/umoci/opaque" -exec touch -h -d "$MTIME" {} +
	umoci insert "${hist[@]}" --image "$layout:1" --opaque "$work/umoci/opaque" /opt/umoci
	umoci insert "${hist[@]}" --image "$layout:1" "$ctx/rootfs/matrix-marker" /matrix-marker
	umoci config "${hist[@]}" --image "$layout:1" --created 2024-01-01T00:00:00Z \
		--config.cmd /bin/sh --config.cmd -c --config.cmd 'cat /matrix-marker; id'
	skopeo copy --insecure-policy --dest-tls-verify=false "oci:$layout:1" "docker://$(ref "$1")"
}

# crane: a tarball from GNU tar (names "./bin/..."), appended onto an empty image; then its
# config mutated (entrypoint, env, user) and the result flattened into one layer.
crane_append() {
	local ctx
	ctx=$(context "$1")
	tar -C "$ctx/rootfs" --sort=name --numeric-owner --xattrs -cf - . | gzip -n >"$work/crane-layer.tar.gz"
	"$CRANE" append --insecure -f "$work/crane-layer.tar.gz" -t "$(ref "$1")"
}
crane_mutate() {
	"$CRANE" mutate --insecure "$(ref crane-append)" --entrypoint /bin/sh,-c \
		--cmd 'cat /matrix-marker; id' --env MATRIX=1 --user 1000:1000 -t "$(ref "$1")"
}
crane_flatten() { "$CRANE" flatten --insecure "$(ref crane-mutate)" -t "$(ref "$1")"; }

# ko: a tiny Go program (it prints its kodata marker, then runs the base image's `id`) on
# the Docker-built image as base, pushed as <registry>/matrix/ko:1.
ko_build() {
	local src=$work/ko-src
	mkdir -p "$src/kodata"
	printf 'module matrix.test/ko\n\ngo 1.21\n' >"$src/go.mod"
	printf 'matrix ko\n' >"$src/kodata/matrix-marker"
	cat >"$src/main.go" <<'GO'
package main

import (
	"os"
	"path/filepath"
	"syscall"
)

func main() {
	marker, err := os.ReadFile(filepath.Join(os.Getenv("KO_DATA_PATH"), "matrix-marker"))
	if err != nil {
		panic(err)
	}
	os.Stdout.Write(marker)
	panic(syscall.Exec("/bin/id", []string{"id"}, os.Environ()))
}
GO
	(cd "$src" && GOFLAGS=-mod=mod GOTOOLCHAIN=local KO_DOCKER_REPO="$REGISTRY/matrix/ko" \
		KO_DEFAULTBASEIMAGE="$(ref docker-classic)" \
		"$KO" build --bare --tags 1 --platform linux/amd64 --insecure-registry .)
}

# skopeo conversions of a built image, registry to registry or through files.
skopeo_copy() { skopeo copy --insecure-policy --src-tls-verify=false --dest-tls-verify=false "$@"; }
convert() { # convert <row> <source row> <kind>
	local src dst
	src="docker://$(ref "$2")"
	dst="docker://$(ref "$1")"
	case "$3" in
	oci) skopeo_copy --format oci "$src" "$dst" ;;
	v2s2) skopeo_copy --format v2s2 "$src" "$dst" ;;
	zstd) skopeo_copy --format oci --dest-compress-format zstd "$src" "$dst" ;;
	plain) skopeo_copy --dest-decompress "$src" "$dst" ;;
	archive)
		# docker-archive, then an OCI layout, then the registry.
		rm -rf "$work/conv/$1"
		mkdir -p "$work/conv/$1"
		skopeo_copy "$src" "docker-archive:$work/conv/$1/image.tar:matrix/$1:1"
		skopeo_copy "docker-archive:$work/conv/$1/image.tar" "oci:$work/conv/$1/oci:1"
		skopeo_copy "oci:$work/conv/$1/oci:1" "$dst"
		;;
	esac
}

row docker-classic "docker 20.10 build (classic)" docker-classic 0
row docker-buildkit "docker 20.10 build (BuildKit, no attestations)" docker-buildkit 0
row buildah-from "buildah 1.28 from scratch+copy+commit" buildah-from 0
row buildah-bud "buildah 1.28 bud" buildah-bud 0
row podman-build "podman 4.3 build (vfs)" podman-build 0
row umoci "umoci 0.4.7 repack+insert, skopeo" umoci 0
row crane-append "crane $CRANE_VERSION append (GNU tar ./ names)" crane-append 0 "$CMD_JSON"
row crane-mutate "crane $CRANE_VERSION mutate (entrypoint, env, user)" crane-append 1000
row crane-flatten "crane $CRANE_VERSION flatten" crane-append 1000
row ko "ko $KO_VERSION build (base: docker-classic)" ko 0
SOURCE[ko]=docker-classic
BASES=(docker-classic docker-buildkit buildah-from buildah-bud podman-build umoci)
declare -A CONVERSION=(
	[oci]="skopeo 1.9 --format oci"
	[v2s2]="skopeo 1.9 --format v2s2"
	[zstd]="skopeo 1.9 --dest-compress-format zstd"
	[plain]="skopeo 1.9 --dest-decompress"
	[archive]="skopeo 1.9 docker-archive -> oci"
)
KINDS=(oci v2s2 zstd plain archive)
for b in "${BASES[@]}"; do
	for k in "${KINDS[@]}"; do
		row "$b-$k" "${CONVERSION[$k]}" "$b" 0
		SOURCE[$b-$k]=$b
	done
done

cleanup() {
	local status=$?
	trap - EXIT
	[ -n "${ferrocri_pid:-}" ] && {
		crictl -c "$work/crictl.yaml" rmp -fa >/dev/null 2>&1 || true
		stop_pid "$ferrocri_pid"
	}
	for m in $(grep -o " $work/[^ ]*" /proc/self/mountinfo | sort -r | uniq); do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
	done
	for p in "${pids[@]}"; do stop_pid "$p"; done
	wait 2>/dev/null || true
	if grep -q " $work/" /proc/self/mountinfo; then
		log "mounts left under $work"
		status=1
	fi
	if pgrep -f "$work" >/dev/null; then
		log "processes left: $(pgrep -af "$work" | tr '\n' ';')"
		status=1
	fi
	if [ "$status" = 0 ] && [ -z "${MATRIX_KEEP:-}" ]; then
		rm -rf "$work"
	else
		rm -rf "$work/docker" "$work/containers" "$work/containerd/root" "$work/ferrocri/root" 2>/dev/null || true
		log "logs kept in $work/logs"
	fi
	exit "$status"
}
trap cleanup EXIT

# --- build ------------------------------------------------------------------------------
t_build=$SECONDS
if needed docker-classic || needed docker-buildkit; then start_dockerd; fi
build docker-classic docker_build docker-classic 0
build docker-buildkit docker_build docker-buildkit 1
if [ -n "${dockerd_pid:-}" ]; then stop_pid "$dockerd_pid"; fi
build buildah-from buildah_from buildah-from
build buildah-bud buildah_bud buildah-bud
build podman-build podman_build podman-build
build umoci umoci_build umoci
build crane-append crane_append crane-append
build crane-mutate crane_mutate crane-mutate
build crane-flatten crane_flatten crane-flatten
build ko ko_build
for b in "${BASES[@]}"; do
	for k in "${KINDS[@]}"; do
		if [[ "${BUILD[$b]}" == ok* ]]; then
			build "$b-$k" convert "$b-$k" "$b" "$k"
		elif needed "$b-$k"; then
			BUILD[$b-$k]="FAIL"
			BUILD_ERR[$b-$k]="source image $b did not build"
		else
			BUILD[$b-$k]=skip
		fi
	done
done
log "built in $((SECONDS - t_build))s"

# --- the daemons: ferrocri and the containerd reference ---------------------------------
mkdir -p "$work/ferrocri" "$work/containerd"
sock=$work/ferrocri/ferrocri.sock
cat >"$work/ferrocri/config.toml" <<CONF
root_dir = "$work/ferrocri/root"
state_dir = "$work/ferrocri/state"
socket = "$sock"
[cni]
conf_dir = "$repo/hack/cni"
bin_dirs = ["/usr/lib/cni", "/opt/cni/bin"]
CONF
"$bin" --config "$work/ferrocri/config.toml" 2>"$work/logs/ferrocri" &
ferrocri_pid=$!
printf 'runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 60\n' "$sock" "$sock" >"$work/crictl.yaml"
crictl=(crictl -c "$work/crictl.yaml")

csock=$work/containerd/containerd.sock
cat >"$work/containerd/config.toml" <<CONF
version = 2
root = "$work/containerd/root"
state = "$work/containerd/state"
# Only its image store, content store and overlayfs snapshotter are used.
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$csock"
[ttrpc]
  address = "$csock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$work/containerd/opt"
CONF
containerd --config "$work/containerd/config.toml" >"$work/logs/containerd" 2>&1 &
pids+=($!)
ctr=(ctr -a "$csock" -n matrix)

for _ in $(seq 100); do
	"${crictl[@]}" version >/dev/null 2>&1 && "${ctr[@]}" version >/dev/null 2>&1 && break
	sleep 0.1
done
"${crictl[@]}" version >/dev/null || {
	log "ferrocri did not start: $(tail -n 5 "$work/logs/ferrocri")"
	exit 1
}
"${ctr[@]}" version >/dev/null || {
	log "containerd did not start: $(tail -n 5 "$work/logs/containerd")"
	exit 1
}
cat >"$work/pod.json" <<JSON
{"metadata": {"name": "matrix", "namespace": "default", "uid": "matrix-uid"}, "log_directory": "$work/podlogs", "linux": {}}
JSON
pod=$("${crictl[@]}" runp "$work/pod.json")

# --- per row: pull, run, compare -------------------------------------------------------
declare -A PULL RUN SAME ERR CHAIN TIME
# The gist of a failure: a gRPC error's description, else the last lines of the log.
gist() {
	if grep -q 'desc = ' "$1"; then
		grep -m1 -o 'desc = .*' "$1" | sed -e 's/^desc = //' -e 's/" image=.*$//' -e 's/\\"/"/g' | cut -c1-400
	else
		grep -v '^[[:space:]]*$' "$1" | tail -n 2 | tr '\n' ' ' | cut -c1-300
	fi
}

run_row() {
	local name=$1 image t0 c out cfg
	image=$(ref "$name")
	t0=$EPOCHREALTIME
	if ! "${crictl[@]}" pull "$image" >"$work/logs/$name.pull" 2>&1; then
		PULL[$name]=FAIL
		ERR[$name]="pull: $(gist "$work/logs/$name.pull")"
		return
	fi
	PULL[$name]="ok $(elapsed "$t0")"
	t0=$EPOCHREALTIME
	cfg=$work/$name.container.json
	jq -n --arg name "$name" --arg image "$image" --argjson cmd "${COMMAND[$name]:-null}" \
		'{metadata: {name: $name}, image: {image: $image}, log_path: ($name + ".log"), linux: {}}
		 + (if $cmd then {command: $cmd} else {} end)' >"$cfg"
	if ! c=$("${crictl[@]}" create "$pod" "$cfg" "$work/pod.json" 2>"$work/logs/$name.run") ||
		! "${crictl[@]}" start "$c" >>"$work/logs/$name.run" 2>&1; then
		RUN[$name]=FAIL
		ERR[$name]="run: $(gist "$work/logs/$name.run")"
		return
	fi
	for _ in $(seq 100); do
		[ "$("${crictl[@]}" inspect "$c" | jq -r .status.state)" = CONTAINER_EXITED ] && break
		sleep 0.1
	done
	out=$("${crictl[@]}" logs "$c" 2>&1 || true)
	"${crictl[@]}" rm -f "$c" >/dev/null 2>&1 || true
	if [[ "$out" == *"${MARKER[$name]}"* && "$out" == *"uid=${UID_OF[$name]}("* ]]; then
		RUN[$name]="ok $(elapsed "$t0")"
	else
		RUN[$name]=FAIL
		ERR[$name]="run: wanted '${MARKER[$name]}' and uid=${UID_OF[$name]}, got: $(tr '\n' ' ' <<<"$out" | cut -c1-200)"
	fi
}

# The same image unpacked by containerd and by ferrocri, both mounted read-only, walked.
compare_row() {
	local name=$1 image mnt_c mnt_f lowers=() l opts
	image=$(ref "$name")
	mnt_c=$work/mnt/$name.containerd
	mnt_f=$work/mnt/$name.ferrocri
	mkdir -p "$mnt_c" "$mnt_f"
	if ! "${ctr[@]}" images pull --plain-http "$image" >"$work/logs/$name.containerd" 2>&1 ||
		! "${ctr[@]}" images mount "$image" "$mnt_c" >>"$work/logs/$name.containerd" 2>&1; then
		SAME[$name]="FAIL"
		ERR[$name]="${ERR[$name]:-}containerd: $(gist "$work/logs/$name.containerd")"
		return
	fi
	for l in ${CHAIN[$name]}; do
		lowers+=("$work/ferrocri/root/layers/sha256/$l")
	done
	# overlayfs wants two lower layers at least when it has no upper one.
	if [ "${#lowers[@]}" = 1 ]; then
		opts=(--bind -o ro "${lowers[0]}")
	else
		opts=(-t overlay overlay -o "ro,lowerdir=$(IFS=: && echo "${lowers[*]}")")
	fi
	if ! mount "${opts[@]}" "$mnt_f" 2>"$work/logs/$name.mount"; then
		"${ctr[@]}" images unmount "$mnt_c" >/dev/null 2>&1 || umount "$mnt_c"
		SAME[$name]="FAIL"
		ERR[$name]="${ERR[$name]:-}mounting ferrocri's layers: $(gist "$work/logs/$name.mount")"
		return
	fi
	python3 hack/tree-manifest.py "$mnt_c" >"$work/logs/$name.tree.containerd"
	python3 hack/tree-manifest.py "$mnt_f" >"$work/logs/$name.tree.ferrocri"
	umount "$mnt_f"
	"${ctr[@]}" images unmount "$mnt_c" >/dev/null 2>&1 || umount "$mnt_c"
	if diff -u "$work/logs/$name.tree.containerd" "$work/logs/$name.tree.ferrocri" >"$work/logs/$name.tree.diff"; then
		SAME[$name]=ok
	else
		SAME[$name]="FAIL"
		ERR[$name]="tree differs from containerd's ($(grep -c '^[-+][^-+]' "$work/logs/$name.tree.diff") lines):
$(grep '^[-+][^-+]' "$work/logs/$name.tree.diff" | sed -n 1,8p)"
	fi
}

# Rows share layers (a conversion has its source's diff IDs): each row's image is removed from
# both daemons and their garbage collection awaited, so the next pull fetches and unpacks
# its own blobs instead of finding the layers already there.
forget_row() {
	local name=$1
	"${ctr[@]}" images rm --sync "$(ref "$name")" >/dev/null 2>&1 || true
	# After a failed pull there is no image to remove (and no GC to wait for).
	"${crictl[@]}" rmi "$(ref "$name")" >/dev/null 2>&1 || return 0
	for _ in $(seq 100); do
		layers_left "$name" || return 0
		sleep 0.1
	done
	log "ferrocri kept the layers of $name after RemoveImage"
}
layers_left() {
	local l
	for l in ${CHAIN[$1]}; do
		[ -e "$work/ferrocri/root/layers/sha256/$l" ] && return 0
	done
	return 1
}

t_check=$SECONDS
for name in "${ROWS[@]}"; do
	want "$name" || continue
	PULL[$name]=- RUN[$name]=- SAME[$name]=- TIME[$name]=-
	[[ "${BUILD[$name]}" == ok* ]] || continue
	t_row=$EPOCHREALTIME
	CHAIN[$name]=$(python3 hack/image-chain-ids.py "$REGISTRY" "matrix/$name:1")
	run_row "$name"
	if [[ "${PULL[$name]}" == ok* ]]; then
		compare_row "$name"
	elif "${ctr[@]}" images pull --plain-http "$(ref "$name")" >"$work/logs/$name.containerd" 2>&1; then
		SAME[$name]="- (containerd pulls it)"
	else
		SAME[$name]="- (containerd fails too)"
	fi
	forget_row "$name"
	TIME[$name]=$(elapsed "$t_row")
done
log "pulled, ran and compared in $((SECONDS - t_check))s"

# --- the table --------------------------------------------------------------------------
failed=0 passed=0
table=$work/table
{
	printf '%-52s %-34s %-6s %-8s %-8s %-6s %s\n' BUILDER IMAGE BUILD PULL RUN TIME SAME-AS-CONTAINERD
	for name in "${ROWS[@]}"; do
		want "$name" || continue
		printf '%-52s %-34s %-6s %-8s %-8s %-6s %s\n' "${BUILDER[$name]}" "matrix/$name:1" \
			"${BUILD[$name]%% *}" "${PULL[$name]}" "${RUN[$name]}" "${TIME[$name]}" "${SAME[$name]}"
	done
} >"$table"
cat "$table"
for name in "${ROWS[@]}"; do
	want "$name" || continue
	if [[ "${BUILD[$name]}" == ok* && "${PULL[$name]}" == ok* && "${RUN[$name]}" == ok* && "${SAME[$name]}" == ok ]]; then
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
	fi
done
for name in "${ROWS[@]}"; do
	want "$name" || continue
	[ -n "${BUILD_ERR[$name]:-}${ERR[$name]:-}" ] || continue
	echo "--- $name: ${BUILD_ERR[$name]:+build: ${BUILD_ERR[$name]}}${ERR[$name]:-}"
done
echo "image matrix: $passed passed, $failed failed"
[ "$failed" = 0 ]
