#!/usr/bin/env bash
# Pod benchmark: a release ferrocri with the test CNI network and the local registry; pod up
# (RunPodSandbox + CreateContainer + StartContainer of busybox) and pod down (StopPodSandbox
# + RemovePodSandbox) p50/p95 over N pods, the memory of each pod's monitor and pause (PSS),
# and the daemon's RSS idle and loaded. Figures, not assertions.
#   hack/bench-pods.sh [pods]      (default 50)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$HOME/.cargo/bin:$PATH
pods=${1:-50}

cargo build --release --locked --quiet --bin ferrocri --example bench_pods
hack/registry.sh start >/dev/null
hack/build-test-images.sh >/dev/null

work=$(mktemp -d /tmp/ferrocri-bench-pods.XXXXXX)
sock=$work/ferrocri.sock
cat >"$work/config.toml" <<CONF
root_dir = "$work/root"
state_dir = "$work/state"
socket = "$sock"
[log]
level = "warn"
[cni]
conf_dir = "$PWD/hack/cni"
bin_dirs = ["/usr/lib/cni", "/opt/cni/bin"]
[registry]
config_dir = "$PWD/hack/certs.d"
CONF
target/release/ferrocri --config "$work/config.toml" 2>"$work/ferrocri.log" &
daemon=$!
trap 'kill -TERM $daemon 2>/dev/null; wait $daemon 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
sleep 0.5 # let start-up work settle before the idle RSS is read

target/release/examples/bench_pods "$sock" "$daemon" "$pods"
