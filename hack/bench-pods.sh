#!/usr/bin/env bash
# Pod benchmark: a release ferrocri with the test CNI network and the local registry; pod up
# (RunPodSandbox + CreateContainer + StartContainer of busybox) and pod down (StopPodSandbox
# + RemovePodSandbox) p50/p95 over N pods, the memory of each pod's monitor and pause (PSS),
# and the daemon's RSS idle and loaded. Figures, not assertions.
#   hack/bench-pods.sh [pods]      (default 50)
set -euo pipefail
cd "$(dirname "$0")/.."
bench_example=bench_pods
. hack/bench-daemon.sh
sleep 0.5 # let start-up work settle before the idle RSS is read

"$bin/examples/bench_pods" "$sock" "$daemon" "${1:-50}"
