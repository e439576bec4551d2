#!/usr/bin/env bash
# Event benchmark: a release ferrocri with the test CNI network and the local registry; the
# time from a container's exit (as its pod's monitor recorded it) to CONTAINER_STOPPED_EVENT
# reaching a GetContainerEvents subscriber, p50/p95 over N exits one at a time, then over N
# exits at the same moment. Figures, not assertions.
#   hack/bench-events.sh [exits]      (default 100)
set -euo pipefail
cd "$(dirname "$0")/.."
bench_example=bench_events
. hack/bench-daemon.sh

"$bin/examples/bench_events" "$sock" "${1:-100}"
