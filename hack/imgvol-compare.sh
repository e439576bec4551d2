#!/usr/bin/env bash
# Image volumes (CRI Mount.image) in ferrocri and in containerd 2.4.2 + runc 1.5.3, side by
# side: the same crictl requests (a host-network busybox pod whose container mounts IMAGE at
# /vol and its opt/umoci folder at /sub), then what each container sees: the mountinfo lines
# of its volumes, a write, a binary run from the volume, the sub path's files. A comparison
# to read, not a test: the two differ on purpose in noexec/nosuid/nodev (ARCHITECTURE.md,
# "Image volumes").
#   hack/imgvol-compare.sh        Env: IMAGE (docker.io/matrix/umoci:1, hack/image-matrix.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
export PATH=$HOME/.cargo/bin:/usr/local/go/bin:$PATH
image=${IMAGE:-docker.io/matrix/umoci:1}
busybox=registry.k8s.io/e2e-test-images/busybox:1.29-2
log() { echo "[imgvol-compare $(date +%T)] $*" >&2; }

ctrd=$(hack/build-containerd.sh)
cargo build --locked --quiet --bin ferrocri --bin ferrocri-monitor
bin=${CARGO_TARGET_DIR:-target}/debug
hack/registry.sh start >/dev/null
work=$(mktemp -d /tmp/ferrocri-imgvol.XXXXXX)
mkdir -p "$work/logs" "$work/cni"
touch "$work/crictl.yaml"

cat >"$work/ferrocri.toml" <<CONF
root_dir = "$work/ferrocri/root"
state_dir = "$work/ferrocri/state"
socket = "$work/ferrocri.sock"
[cni]
conf_dir = "$work/cni"
[registry]
config_dir = "$repo/hack/certs.d"
CONF
cat >"$work/containerd.toml" <<CONF
version = 3
root = "$work/containerd/root"
state = "$work/containerd/state"
[plugins.'io.containerd.server.v1.grpc']
  address = "$work/containerd.sock"
[plugins.'io.containerd.server.v1.ttrpc']
  address = "$work/containerd.sock.ttrpc"
[plugins.'io.containerd.nri.v1.nri']
  disable = true
[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "registry.k8s.io/pause:3.9"
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = "$repo/hack/certs.d"
[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    conf_dir = "$work/cni"
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
      BinaryName = "$ctrd/runc"
      SystemdCgroup = false
CONF
cat >"$work/pod.json" <<JSON
{"metadata": {"name": "imgvol", "namespace": "imgvol", "uid": "imgvol-1"},
 "log_directory": "$work/logs",
 "linux": {"cgroup_parent": "/imgvol-compare",
           "security_context": {"namespace_options": {"network": 2}}}}
JSON
cat >"$work/container.json" <<JSON
{"metadata": {"name": "reader"}, "image": {"image": "$busybox"},
 "command": ["sleep", "3600"], "linux": {},
 "mounts": [{"container_path": "/vol", "image": {"image": "$image"}, "readonly": true},
            {"container_path": "/sub", "image": {"image": "$image"}, "readonly": true,
             "image_sub_path": "opt/umoci"}]}
JSON

declare -A pid sock=([ferrocri]=$work/ferrocri.sock [containerd]=$work/containerd.sock)
cleanup() {
	trap - EXIT INT TERM
	for rt in ferrocri containerd; do
		[ -n "${pid[$rt]:-}" ] || continue
		crictl --config "$work/crictl.yaml" --runtime-endpoint "unix://${sock[$rt]}" rmp --force --all >/dev/null 2>&1 || true
		kill -TERM "${pid[$rt]}" 2>/dev/null || true
		wait "${pid[$rt]}" 2>/dev/null || true
	done
	pkill -f "containerd-shim-runc-v2 .*-address $work/" 2>/dev/null || true
	grep " $work/" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
	for c in /sys/fs/cgroup/*/imgvol-compare /sys/fs/cgroup/unified/imgvol-compare; do
		[ -d "$c" ] && find "$c" -depth -type d -exec rmdir {} + 2>/dev/null
	done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$bin/ferrocri" --config "$work/ferrocri.toml" 2>>"$work/ferrocri.log" &
pid[ferrocri]=$!
PATH=$ctrd:$PATH "$ctrd/containerd" --config "$work/containerd.toml" 2>>"$work/containerd.log" &
pid[containerd]=$!

for rt in ferrocri containerd; do
	c=(crictl --config "$work/crictl.yaml" --runtime-endpoint "unix://${sock[$rt]}" --image-endpoint "unix://${sock[$rt]}" --timeout 60s)
	for _ in $(seq 300); do "${c[@]}" version >/dev/null 2>&1 && break; sleep 0.1; done
	"${c[@]}" pull "$busybox" >/dev/null
	"${c[@]}" pull "$image" >/dev/null
	pod=$("${c[@]}" runp "$work/pod.json")
	ctr=$("${c[@]}" create "$pod" "$work/container.json" "$work/pod.json") || {
		log "$rt: CreateContainer failed; its log:"
		tail -n 20 "$work/$rt.log" >&2
		continue
	}
	"${c[@]}" start "$ctr" >/dev/null
	echo "== $rt"
	"${c[@]}" exec "$ctr" sh -c "grep -E ' /(vol|sub) ' /proc/self/mountinfo | cut -d' ' -f5-; \
		touch /vol/x 2>&1; /vol/bin/busybox true 2>&1; echo \"exec from /vol: rc=\$?\"; \
		echo \"/sub: \$(ls -A /sub)\"" || true
done
