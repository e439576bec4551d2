#!/usr/bin/env bash
# crictl against a private ferrocri: version, info and runtime-config must answer.
#   hack/crictl-smoke.sh [path/to/ferrocri]
set -euo pipefail
bin=${1:-target/debug/ferrocri}
work=$(mktemp -d /tmp/ferrocri-smoke.XXXXXX)
sock=$work/ferrocri.sock
"$bin" --root "$work/root" --state "$work/state" --socket "$sock" 2>"$work/log" &
daemon=$!
trap 'kill -TERM $daemon 2>/dev/null; wait $daemon || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done

printf 'runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 10\n' "$sock" "$sock" >"$work/crictl.yaml"
crictl=(crictl -c "$work/crictl.yaml")
"${crictl[@]}" version | grep -q 'RuntimeName:  ferrocri'
"${crictl[@]}" info | jq -e '.status.conditions[] | select(.type == "RuntimeReady") | .status' >/dev/null
"${crictl[@]}" runtime-config | grep -qi cgroupfs
echo "crictl smoke test: version, info and runtime-config answered"

