#!/usr/bin/env bash
# List benchmark: a release ferrocri with the test CNI network and the local registry, filled
# with pods of busybox containers (by default 20 x 50 = 1,000: 880 running `sleep 3600`, 100
# created and not started, 20 exited; with one container per pod, each runs); ListContainers
# (no filter, and by pod), ListPodSandbox, ListContainerStats and ListPodSandboxStats p50/p95
# over N calls each; then everything is removed. Figures, not assertions.
#   node scale as in issue 16: hack/bench-list.sh 500 1
#   hack/bench-list.sh [pods] [containers per pod] [calls]      (default 20 50 200)
set -euo pipefail
cd "$(dirname "$0")/.."
bench_example=bench_list
. hack/bench-daemon.sh

"$bin/examples/bench_list" "$sock" "$daemon" "${1:-20}" "${2:-50}" "${3:-200}"
