#!/usr/bin/env bash
# Soak: N pod cycles through crictl against a private ferrocri with its own CNI network
# (bridge fcrisoak0, 10.93.0.0/16, leases in the work folder). A cycle: runp, two containers
# (busybox; nginx on every other cycle), start, exec, port-forward + curl on the nginx cycles,
# logs, stopp, rmp. Every KILL_EVERY cycles the daemon is SIGKILLed and started again (pods
# are all removed by then; the restart must find a clean state). Every PHASE cycles, with no
# pod left, a row of host resources is printed: mounts, pinned netns, veths, pod cgroups, IP
# leases, iptables rules of the network, processes under the work folder, and the daemon's
# fds, threads, RSS and anonymous RSS. The script fails when the last row's kernel resources
# (mounts to processes) differ from the first's. Needs the local registry and test images
# (hack/registry.sh start && hack/build-test-images.sh).
# JOBS workers run the cycles of a phase side by side (1 by default); a phase ends when all are done.
#   hack/soak.sh N [path/to/ferrocri]   (KILL_EVERY=200 PHASE=50 JOBS=1 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
cycles=${1:?usage: hack/soak.sh N [path/to/ferrocri]}
bin=${2:-target/debug/ferrocri}
kill_every=${KILL_EVERY:-200}
phase=${PHASE:-50}
work=$(mktemp -d /tmp/ferrocri-soak.XXXXXX)
sock=$work/ferrocri.sock
net=fcrisoak
mkdir -p "$work/net.d" "$work/logs" "$work/ipam"
cat >"$work/net.d/10-soak.conflist" <<JSON
{"cniVersion": "1.0.0", "name": "$net", "plugins": [
 {"type": "bridge", "bridge": "${net}0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
  "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.93.0.0/16"}]], "dataDir": "$work/ipam"}},
 {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}]}
JSON
cat >"$work/config.toml" <<CONF
root_dir = "$work/root"
state_dir = "$work/state"
socket = "$sock"
[log]
level = "warn"
[cni]
conf_dir = "$work/net.d"
bin_dirs = ["/usr/lib/cni", "/opt/cni/bin"]
[registry]
config_dir = "$repo/hack/certs.d"
CONF
printf 'runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 60\n' "$sock" "$sock" >"$work/crictl.yaml"
crictl=(crictl -c "$work/crictl.yaml")
cgroup_parent=/ferrocri-soak

start_daemon() {
	"$bin" --config "$work/config.toml" 2>>"$work/log" &
	daemon=$!
	for _ in $(seq 200); do "${crictl[@]}" version >/dev/null 2>&1 && return; sleep 0.1; done
	echo "soak: the daemon did not start; see $work/log" >&2
	exit 1
}
cleanup() {
	"${crictl[@]}" rmp -fa >/dev/null 2>&1 || true
	kill -TERM "$daemon" 2>/dev/null || true
	wait "$daemon" 2>/dev/null || true
	ip link del "${net}0" 2>/dev/null || true
	rmdir /sys/fs/cgroup/*$cgroup_parent 2>/dev/null || true
	if [ "${ok:-0}" = 1 ]; then rm -rf "$work"; else echo "soak: daemon log in $work/log" >&2; fi
}
trap cleanup EXIT
start_daemon

busybox=registry.k8s.io/e2e-test-images/busybox:1.29-2
nginx=registry.k8s.io/e2e-test-images/nginx:1.14-2
"${crictl[@]}" pull "$busybox" >/dev/null
"${crictl[@]}" pull "$nginx" >/dev/null

count() { # count <command...>: lines of output (0 on failure)
	{ "$@" 2>/dev/null || true; } | wc -l
}
row() {
	local rss anon line
	rss=$(awk '/^VmRSS/{printf "%.1f", $2/1024}' "/proc/$daemon/status")
	anon=$(awk '/^RssAnon/{printf "%.1f", $2/1024}' "/proc/$daemon/status")
	line=$(printf '%6s %7s %6s %5s %5s %7s %6s %8s %5s %4s %7s %6s %7s' "$1" "$2" \
		"$(grep -c "$work" /proc/self/mountinfo || true)" \
		"$(grep "$work" /proc/self/mountinfo | grep -c nsfs || true)" \
		"$(count ip -o link show master "${net}0")" \
		"$(count find /sys/fs/cgroup/memory$cgroup_parent -mindepth 1 -type d)" \
		"$(count find "$work/ipam/$net" -name '10.*')" \
		"$(iptables-save 2>/dev/null | grep -c "$net" || true)" \
		"$(count pgrep -f "$work/state")" \
		"$(count ls "/proc/$daemon/fd")" \
		"$(count ls "/proc/$daemon/task")" "$rss" "$anon")
	echo "$line"
	# Mounts, netns, veths, cgroups, leases, iptables rules, processes.
	resources=$(echo "$line" | awk '{print $3, $4, $5, $6, $7, $8, $9}')
}
printf '%6s %7s %6s %5s %5s %7s %6s %8s %5s %4s %7s %6s %7s\n' cycle s/cycle mounts netns veths cgroups leases iptables procs fds thr rss_MiB anon_MiB
row 0 -
first=$resources

cat >"$work/c1.json" <<JSON
{"metadata": {"name": "shell"}, "image": {"image": "$busybox"},
 "command": ["sh", "-c", "echo started; exec sleep 3600"], "log_path": "shell.log", "linux": {}}
JSON
cat >"$work/c2-busybox.json" <<JSON
{"metadata": {"name": "second"}, "image": {"image": "$busybox"}, "command": ["sleep", "3600"], "linux": {}}
JSON
cat >"$work/c2-nginx.json" <<JSON
{"metadata": {"name": "second"}, "image": {"image": "$nginx"}, "linux": {}}
JSON

fail() {
	echo "soak: cycle $i: $*" >&2
	exit 1
}
cycle() { # cycle <i>: one pod through its whole life; exits non-zero on the first failure
	local i=$1 pod c1 c2 second port pf code
	cat >"$work/pod-$i.json" <<JSON
{"metadata": {"name": "soak-$i", "namespace": "soak", "uid": "soak-$i"}, "log_directory": "$work/logs/$i",
 "linux": {"cgroup_parent": "$cgroup_parent"}}
JSON
	second=$work/c2-busybox.json
	[ $((i % 2)) = 0 ] && second=$work/c2-nginx.json
	pod=$("${crictl[@]}" runp "$work/pod-$i.json") || fail runp
	c1=$("${crictl[@]}" create "$pod" "$work/c1.json" "$work/pod-$i.json") || fail "create shell"
	c2=$("${crictl[@]}" create "$pod" "$second" "$work/pod-$i.json") || fail "create second"
	"${crictl[@]}" start "$c1" "$c2" >/dev/null || fail start
	[ "$("${crictl[@]}" exec -s "$c1" echo cycle-$i)" = "cycle-$i" ] || fail exec
	if [ $((i % 2)) = 0 ]; then
		port=$((20000 + i % 10000))
		"${crictl[@]}" port-forward "$pod" "$port:80" >/dev/null 2>&1 &
		pf=$!
		code=
		for _ in $(seq 50); do
			code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/" || true)
			[ "$code" = 200 ] && break
			sleep 0.1
		done
		kill "$pf" 2>/dev/null || true
		wait "$pf" 2>/dev/null || true
		[ "$code" = 200 ] || fail "port-forward: HTTP $code"
	fi
	[[ "$("${crictl[@]}" logs "$c1" 2>&1)" == *started* ]] || fail logs
	"${crictl[@]}" stopp "$pod" >/dev/null || fail stopp
	"${crictl[@]}" rmp "$pod" >/dev/null || fail rmp
	rm -rf "$work/logs/$i" "$work/pod-$i.json"
}
worker() { # worker <first> <last> <w>: the cycles of a phase that fall to worker w of JOBS
	local i
	for i in $(seq "$1" "$2"); do
		[ $((i % jobs)) = "$3" ] || continue
		(cycle "$i") || exit 1
	done
}
jobs=${JOBS:-1}
for first_cycle in $(seq 1 "$phase" "$cycles"); do
	phase_start=$(date +%s.%N)
	last_cycle=$((first_cycle + phase - 1))
	[ "$last_cycle" -gt "$cycles" ] && last_cycle=$cycles
	workers=()
	for w in $(seq 0 $((jobs - 1))); do
		worker "$first_cycle" "$last_cycle" "$w" &
		workers+=($!)
	done
	for pid in "${workers[@]}"; do wait "$pid" || { i=$last_cycle; fail "a worker failed in cycles $first_cycle-$last_cycle"; }; done
	# A SIGKILL at each multiple of KILL_EVERY that this phase passed (no pod is left by then).
	if [ $((last_cycle / kill_every)) -gt $(((first_cycle - 1) / kill_every)) ]; then
		kill -KILL "$daemon"
		wait "$daemon" 2>/dev/null || true
		start_daemon
	fi
	now=$(date +%s.%N)
	row "$last_cycle" "$(printf '%.2f' "$(echo "($now - $phase_start) / ($last_cycle - $first_cycle + 1)" | bc -l)")"
done
if [ "$resources" != "$first" ]; then
	echo "soak: host resources changed: before $first, after $resources" >&2
	exit 1
fi
ok=1
