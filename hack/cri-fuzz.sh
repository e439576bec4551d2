#!/usr/bin/env bash
# Fuzzes the CRI surface of a private ferrocri with hack/cri_fuzz.py (Python grpcio: random,
# mutated and nasty protobuf to every RuntimeService/ImageService method), then removes what
# the run created with crictl and checks that nothing is left (no sandbox, container, mount,
# netns pin or process of the daemon's folders). Fails on any INTERNAL answer, a Version that
# stops answering, or a leftover. Prints the answers by gRPC code.
#   hack/cri-fuzz.sh [seconds=120] [path/to/ferrocri] [seed]
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
seconds=${1:-120}
bin=${2:-target/debug/ferrocri}
seed=${3:-$RANDOM}
. hack/python-grpc.sh

work=$(mktemp -d /tmp/ferrocri-fuzz.XXXXXX)
sock=$work/ferrocri.sock
python_cri_stubs "$work/stubs"
cat >"$work/config.toml" <<CONF
root_dir = "$work/root"
state_dir = "$work/state"
socket = "$sock"
[cni]
conf_dir = "$repo/hack/cni"
bin_dirs = ["/usr/lib/cni", "/opt/cni/bin"]
[registry]
config_dir = "$repo/hack/certs.d"
CONF
"$bin" --config "$work/config.toml" 2>"$work/log" &
daemon=$!
crictl=(crictl --config /dev/null --runtime-endpoint "unix://$sock" --image-endpoint "unix://$sock" --timeout 60s)
cleanup() {
	"${crictl[@]}" rmp -fa >/dev/null 2>&1 || true
	kill -TERM $daemon 2>/dev/null
	wait $daemon || true
	if [ "${ok:-0}" = 1 ]; then rm -rf "$work"; else echo "cri fuzz: daemon log in $work/log" >&2; fi
}
trap cleanup EXIT
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done

echo "cri fuzz: $seconds s, seed $seed"
"$venv/bin/python" hack/cri_fuzz.py "$work/stubs" "$sock" "$seconds" "$seed"

# crictl must list and remove everything the run created.
pods=$("${crictl[@]}" pods -q | wc -l)
containers=$("${crictl[@]}" ps -aq | wc -l)
echo "cri fuzz: created and still there: $pods sandboxes, $containers containers"
"${crictl[@]}" rm -af >/dev/null
"${crictl[@]}" rmp -fa >/dev/null
left=$("${crictl[@]}" ps -aq | wc -l)+$("${crictl[@]}" pods -q | wc -l)
[ "$left" = "0+0" ] || { echo "FAIL  crictl left containers+sandboxes: $left" >&2; exit 1; }
mounts=$(awk -v d="$work" 'index($5, d) == 1' /proc/self/mountinfo | wc -l)
[ "$mounts" = 0 ] || { echo "FAIL  $mounts mounts left under $work" >&2; exit 1; }
procs=$(pgrep -f "ferrocri-monitor monitor --dir $work" | wc -l || true)
[ "$procs" = 0 ] || { echo "FAIL  $procs monitors left" >&2; exit 1; }
echo "PASS  crictl removed everything; no mount or monitor left"
ok=1
