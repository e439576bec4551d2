#!/usr/bin/env bash
# The CRI from a gRPC client that is neither Go's (crictl, critest) nor Rust's (tests/): Python's
# grpcio, i.e. gRPC C-core, with its default channel options, against a private ferrocri. It
# calls the runtime-info, image, pod, container, exec and stats RPCs and bad requests, and
# checks the answers (hack/grpc_python_client.py). Needs the local registry and test images
# (hack/test.sh starts them). grpcio lives in a virtualenv made on first use. Then 30 s of
# hack/cri-fuzz.sh (FERROCRI_FUZZ_SECONDS; 0 skips it) against a fresh daemon.
#   hack/grpc-clients.sh [path/to/ferrocri]
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
bin=${1:-target/debug/ferrocri}
. hack/python-grpc.sh

work=$(mktemp -d /tmp/ferrocri-grpc-clients.XXXXXX)
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
cleanup() {
	crictl --runtime-endpoint "unix://$sock" rmp -fa >/dev/null 2>&1 || true
	kill -TERM $daemon 2>/dev/null
	wait $daemon || true
	if [ "${ok:-0}" = 1 ]; then rm -rf "$work"; else echo "grpc clients: daemon log in $work/log" >&2; fi
}
trap cleanup EXIT
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done

"$venv/bin/python" hack/grpc_python_client.py "$work/stubs" "$sock" "$work"
ok=1
cleanup
trap - EXIT

fuzz_seconds=${FERROCRI_FUZZ_SECONDS:-30}
if [ "$fuzz_seconds" != 0 ]; then
	hack/cri-fuzz.sh "$fuzz_seconds" "$bin"
fi
