#!/usr/bin/env bash
# ferrocri and containerd 2.4.2 + runc 1.5.3 side by side, in one run: the same CRI client
# (examples/bench_compare.rs), the same requests, images (local registry) and CNI plugins
# (each runtime on its own bridge and subnet), separate sockets and roots. Rounds alternate
# the order (A B, B A, ...) so machine noise hits both; each table cell is the median over the
# rounds. Prints one Markdown table: containerd, ferrocri, ratio (ferrocri / containerd).
# Figures, not assertions.
#   hack/bench-compare.sh [--rounds N] [--density PODS] [--relist SECONDS] [--idle SECONDS]
#                         [--critest] [--out DIR]
# containerd and runc are built once from the Go module proxy (hack/build-containerd.sh).
# --critest adds critest's own -benchmark suite against both (slow: ~5 min per runtime).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
export PATH=$HOME/.cargo/bin:/usr/local/go/bin:$PATH

rounds=2 density=100 relist=30 idle=30 critest=0 out=""
while [ $# -gt 0 ]; do
	case $1 in
	--rounds) rounds=$2; shift 2 ;;
	--density) density=$2; shift 2 ;;
	--relist) relist=$2; shift 2 ;;
	--idle) idle=$2; shift 2 ;;
	--critest) critest=1; shift ;;
	--out) out=$2; shift 2 ;;
	*) echo "unknown argument $1" >&2; exit 2 ;;
	esac
done
log() { echo "[bench-compare $(date +%T)] $*" >&2; }

ctrd=$(hack/build-containerd.sh)
cargo build --release --locked --quiet --bin ferrocri --bin ferrocri-monitor --example bench_compare
bin=${CARGO_TARGET_DIR:-target}/release
client=$bin/examples/bench_compare
hack/registry.sh start >/dev/null
hack/build-test-images.sh --bench >/dev/null
large=docker.io/ferrocri/bench-large:latest

work=$(mktemp -d /tmp/ferrocri-bench-compare.XXXXXX)
out=${out:-$work/results}
mkdir -p "$out" "$work/logs"

# One CNI network per runtime: a copy of the test network on its own bridge, subnet and
# IPAM folder.
cni_conf() { # <dir> <bridge> <subnet>
	mkdir -p "$1"
	sed -e "s|\"fcritest0\"|\"$2\"|" -e "s|10\.89\.0\.0/16|$3|" \
		-e "s|/var/lib/ferrocri-test/cni-ipam|$1/ipam|" -e "s|ferrocri-test|$(basename "$1")|" \
		hack/cni/10-ferrocri-test.conflist >"$1/10-bench.conflist"
}
cni_conf "$work/cni-ferrocri" fcribench0 10.91.0.0/16
cni_conf "$work/cni-containerd" fcribench1 10.92.0.0/16

cat >"$work/ferrocri.toml" <<CONF
root_dir = "$work/ferrocri/root"
state_dir = "$work/ferrocri/state"
socket = "$work/ferrocri.sock"
[log]
level = "warn"
[cni]
conf_dir = "$work/cni-ferrocri"
bin_dirs = ["/usr/lib/cni", "/opt/cni/bin"]
[registry]
config_dir = "$repo/hack/certs.d"
CONF

restrict_oom=false
capsh --has-p=cap_sys_resource 2>/dev/null || restrict_oom=true
# containerd as a kubelet node runs it (CRI plugin, overlayfs, runc, cgroupfs), with
# everything it owns under $work and NRI off (nothing else would use it here).
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
  # Pods ask for oom_score_adj -998 (the pause); lowering it needs CAP_SYS_RESOURCE, which a
  # sandboxed CI machine may not grant. This keeps it at containerd's own value instead.
  restrict_oom_score_adj = $restrict_oom
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["/usr/lib/cni", "/opt/cni/bin"]
    conf_dir = "$work/cni-containerd"
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
      BinaryName = "$ctrd/runc"
      SystemdCgroup = false
CONF

declare -A pid sock
sock[ferrocri]=$work/ferrocri.sock
sock[containerd]=$work/containerd.sock
start_runtime() {
	case $1 in
	ferrocri) "$bin/ferrocri" --config "$work/ferrocri.toml" 2>>"$work/ferrocri.log" & ;;
	containerd) PATH=$ctrd:$PATH "$ctrd/containerd" --config "$work/containerd.toml" 2>>"$work/containerd.log" & ;;
	esac
	pid[$1]=$!
	for _ in $(seq 300); do
		crictl --runtime-endpoint "unix://${sock[$1]}" version >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	log "$1 did not come up; see $work/$1.log"
	return 1
}
stop_runtime() {
	[ -n "${pid[$1]:-}" ] || return 0
	crictl --runtime-endpoint "unix://${sock[$1]}" --timeout 300s rmp --force --all >/dev/null 2>&1 ||
		log "removing the pods of $1 failed"
	kill -TERM "${pid[$1]}" 2>/dev/null || true
	wait "${pid[$1]}" 2>/dev/null || true
	pid[$1]=""
}
cleanup() {
	trap - EXIT INT TERM
	stop_runtime ferrocri
	stop_runtime containerd
	# containerd's shims outlive it only when pods were left; runc's state goes with the root.
	pkill -f "containerd-shim-runc-v2 .*-address $work/" 2>/dev/null || true
	grep " $work/" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
	for c in /sys/fs/cgroup/*/bench-compare /sys/fs/cgroup/bench-compare /sys/fs/cgroup/unified/bench-compare; do
		[ -d "$c" ] && find "$c" -depth -type d -exec rmdir {} + 2>/dev/null
	done
	ip link del fcribench0 2>/dev/null || true
	ip link del fcribench1 2>/dev/null || true
	log "results in $out"
	rm -rf "$work/ferrocri" "$work/containerd" "$work/logs"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_runtime ferrocri
start_runtime containerd

# One scenario against one runtime: its JSON figures go to $out/<runtime>.<round>.<scenario>-<args>.json
# (file name: the scenario and its numeric arguments, so the two bursts do not collide).
scenario() { # <runtime> <round> <name> <args...>
	local rt=$1 round=$2 name=$3
	shift 3
	local file
	file=$out/$rt.$round.$name$(printf -- '-%s' "$@" | tr -c '0-9-' '_').json
	log "round $round: $name $* on $rt"
	"$client" "$name" "${sock[$rt]}" "$@" >"$file" 2>>"$work/client.log" ||
		{ log "$name on $rt failed; see $work/client.log"; rm -f "$file"; }
}
for round in $(seq "$rounds"); do
	order=(ferrocri containerd)
	[ $((round % 2)) = 0 ] && order=(containerd ferrocri)
	for rt in "${order[@]}"; do scenario "$rt" "$round" lifecycle 20; done
	for rt in "${order[@]}"; do scenario "$rt" "$round" burst 50 10; done
	for rt in "${order[@]}"; do scenario "$rt" "$round" burst 50 50; done
	for rt in "${order[@]}"; do scenario "$rt" "$round" exec 50; done
	for rt in "${order[@]}"; do scenario "$rt" "$round" pull "$large" 2; done
	for rt in "${order[@]}"; do
		scenario "$rt" "$round" density "${pid[$rt]}" "$density" "$relist" "$idle" "$work/logs/$rt"
	done
done

if [ "$critest" = 1 ]; then
	for rt in ferrocri containerd; do
		log "critest -benchmark on $rt"
		critest --runtime-endpoint "unix://${sock[$rt]}" -benchmark \
			-benchmarking-output-dir "$out/critest-$rt" >"$out/critest-$rt.log" 2>&1 ||
			log "critest -benchmark on $rt failed; see $out/critest-$rt.log"
	done
fi

python3 - "$out" <<'PY'
import glob, json, os, statistics, sys
out = sys.argv[1]
runs = {"containerd": {}, "ferrocri": {}}
order = []
for path in sorted(glob.glob(os.path.join(out, "*.json"))):
    rt = os.path.basename(path).split(".")[0]
    with open(path) as f:
        for k, v in json.load(f).items():
            runs[rt].setdefault(k, []).append(v)
            if k not in order:
                order.append(k)
print("| metric | containerd 2.4.2 | ferrocri | ratio |")
print("|---|---:|---:|---:|")
for k in order:
    c = statistics.median(runs["containerd"][k]) if k in runs["containerd"] else None
    f = statistics.median(runs["ferrocri"][k]) if k in runs["ferrocri"] else None
    fmt = lambda v: "—" if v is None else f"{v:.2f}" if v < 100 else f"{v:.0f}"
    ratio = f"{f / c:.2f}" if c and f is not None else "—"
    print(f"| {k} | {fmt(c)} | {fmt(f)} | {ratio} |")
PY
