#!/usr/bin/env bash
# Streaming benchmark: a release ferrocri with the test CNI network and the local registry;
# one pod with a busybox and an echo-server container; ExecSync and streaming exec round-trip
# p50/p95 and port-forward throughput over SPDY and WebSocket. Figures, not assertions.
#   hack/bench-streaming.sh [round trips] [MiB forwarded]      (default 200 256)
set -euo pipefail
cd "$(dirname "$0")/.."
bench_example=bench_streaming
. hack/bench-daemon.sh

printf 'runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 30\n' "$sock" "$sock" >"$work/crictl.yaml"
crictl -c "$work/crictl.yaml" pull docker.io/ferrocri/echo:1 >/dev/null
"$bin/examples/bench_streaming" "$sock" "$work/crictl.yaml" "${1:-200}" "${2:-256}"
