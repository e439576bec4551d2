#!/usr/bin/env bash
# Pod-up time with and without a user namespace: RunPodSandbox through crictl (runp), N pods of
# each kind interleaved, each stopped and removed before the next; prints p50/p95 in ms. Figures,
# not assertions. A private daemon (its own root, state and socket) with the test CNI network.
#   hack/bench-userns.sh [runs]          (default 30)
# Env: FERROCRI_BIN (default target/debug/ferrocri).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-30}
bin=${FERROCRI_BIN:-$PWD/target/debug/ferrocri}
work=$(mktemp -d /tmp/ferrocri-bench-userns.XXXXXX)
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
CONF
"$bin" --config "$work/config.toml" 2>>"$work/ferrocri.log" &
daemon=$!
cleanup() {
	for p in $(crictl -r "unix://$sock" pods -q 2>/dev/null); do
		crictl -r "unix://$sock" stopp "$p" >/dev/null 2>&1 || true
		crictl -r "unix://$sock" rmp "$p" >/dev/null 2>&1 || true
	done
	kill -TERM "$daemon" 2>/dev/null && wait "$daemon" || true
	# The pods' parent cgroup is the caller's (a kubelet's), so ferrocri leaves it: remove it here.
	for c in /sys/fs/cgroup/ferrocri-bench /sys/fs/cgroup/*/ferrocri-bench; do
		[ -d "$c" ] && find "$c" -depth -type d -exec rmdir {} + 2>/dev/null
	done
	rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 100); do
	crictl -r "unix://$sock" version >/dev/null 2>&1 && break
	sleep 0.1
done

pod_json() { # name, userns options JSON or empty
	local userns=""
	[ -n "$2" ] && userns=",\"security_context\":{\"namespace_options\":{\"userns_options\":$2}}"
	printf '{"metadata":{"name":"%s","namespace":"bench","uid":"%s"},"linux":{"cgroup_parent":"/ferrocri-bench"%s}}' \
		"$1" "$1" "$userns"
}
mapping='{"mode":0,"uids":[{"container_id":0,"host_id":400000,"length":65536}],"gids":[{"container_id":0,"host_id":400000,"length":65536}]}'

one() { # label, run, userns options: prints the runp time in µs
	local start end id
	pod_json "bench-$1-$2" "$3" >"$work/pod.json"
	start=$(date +%s%N)
	id=$(crictl -r "unix://$sock" runp "$work/pod.json" 2>>"$work/crictl.log")
	end=$(date +%s%N)
	echo $(((end - start) / 1000)) >>"$work/$1.times"
	crictl -r "unix://$sock" stopp "$id" >/dev/null 2>&1
	crictl -r "unix://$sock" rmp "$id" >/dev/null 2>&1
}
report() { # label
	sort -n "$work/$1.times" | awk -v label="$1" '
		{ v[NR] = $1 }
		END {
			p50 = v[int((NR + 1) * 0.50)]; p95 = v[int(NR * 0.95 + 0.5)]
			printf "%-7s pod up (crictl runp), %d runs: p50 %.1f ms, p95 %.1f ms\n", label, NR, p50 / 1000, p95 / 1000
		}'
}
# Interleaved, so both kinds see the same load on a shared machine.
for i in $(seq "$runs"); do
	one host "$i" ""
	one userns "$i" "$mapping"
done
report host
report userns
