#!/usr/bin/env bash
# crictl, the operators' tool, against a private ferrocri: runtime info, then a pod's whole
# life: pull, runp, create, start, ps, inspect, logs, exec (-s, streaming over SPDY and
# WebSocket, -it on a terminal), attach, port-forward over both transports, stats, update,
# stop, rm, the container events of all that (`crictl events`), and `crictl run`. Needs the
# local registry and test images (hack/test.sh).
#   hack/crictl-smoke.sh [path/to/ferrocri]
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
bin=${1:-target/debug/ferrocri}
work=$(mktemp -d /tmp/ferrocri-smoke.XXXXXX)
sock=$work/ferrocri.sock
# The mirrors in hack/certs.d point at 127.0.0.1:5000; another FERROCRI_REGISTRY_ADDR gets a copy.
certs=$repo/hack/certs.d
if [ "${FERROCRI_REGISTRY_ADDR:-127.0.0.1:5000}" != 127.0.0.1:5000 ]; then
	cp -r "$certs" "$work/certs.d"
	sed -i "s/127\.0\.0\.1:5000/$FERROCRI_REGISTRY_ADDR/" "$work"/certs.d/*/hosts.toml
	certs=$work/certs.d
fi
cat >"$work/config.toml" <<CONF
root_dir = "$work/root"
state_dir = "$work/state"
socket = "$sock"
[cni]
conf_dir = "$repo/hack/cni"
bin_dirs = ["/usr/lib/cni", "/opt/cni/bin"]
[registry]
config_dir = "$certs"
CONF
"$bin" --config "$work/config.toml" 2>"$work/log" &
daemon=$!
bg=()
cleanup() {
	for p in "${bg[@]}"; do kill "$p" 2>/dev/null || true; done
	"${crictl[@]}" rmp -fa >/dev/null 2>&1 || true
	kill -TERM $daemon 2>/dev/null
	wait $daemon || true
	if [ "${ok:-0}" = 1 ]; then rm -rf "$work"; else echo "crictl smoke: daemon log in $work/log" >&2; fi
}
trap cleanup EXIT
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done

printf 'runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 20\n' "$sock" "$sock" >"$work/crictl.yaml"
crictl=(crictl -c "$work/crictl.yaml")
fail() {
	echo "crictl smoke: $*" >&2
	exit 1
}
expect() { # expect <what> <wanted substring> <output>
	[[ "$3" == *"$2"* ]] || fail "$1: wanted '$2', got '$3'"
}

"${crictl[@]}" version | grep 'RuntimeName:  ferrocri' >/dev/null
"${crictl[@]}" info | jq -e '.status.conditions[] | select(.type == "RuntimeReady") | .status' >/dev/null
"${crictl[@]}" runtime-config | grep -i cgroupfs >/dev/null

busybox=registry.k8s.io/e2e-test-images/busybox:1.29-2
nginx=registry.k8s.io/e2e-test-images/nginx:1.14-2
"${crictl[@]}" pull "$busybox" >/dev/null
"${crictl[@]}" pull "$nginx" >/dev/null

cat >"$work/pod.json" <<JSON
{"metadata": {"name": "smoke", "namespace": "default", "uid": "smoke-uid"}, "log_directory": "$work/logs", "linux": {}}
JSON
cat >"$work/shell.json" <<JSON
{"metadata": {"name": "shell"}, "image": {"image": "$busybox"}, "command": ["sh"],
 "stdin": true, "log_path": "shell.log", "linux": {}}
JSON
cat >"$work/web.json" <<JSON
{"metadata": {"name": "web"}, "image": {"image": "$nginx"}, "log_path": "web.log", "linux": {}}
JSON
"${crictl[@]}" events -o json >"$work/events.json" 2>"$work/events.log" &
bg+=($!)
pod=$("${crictl[@]}" runp "$work/pod.json")
shell=$("${crictl[@]}" create "$pod" "$work/shell.json" "$work/pod.json")
web=$("${crictl[@]}" create "$pod" "$work/web.json" "$work/pod.json")
"${crictl[@]}" start "$shell" "$web" >/dev/null
expect "ps" "shell" "$("${crictl[@]}" ps --name shell)"
expect "inspect" '"state": "CONTAINER_RUNNING"' "$("${crictl[@]}" inspect "$shell")"

expect "exec -s" "sync" "$("${crictl[@]}" exec -s "$shell" echo sync)"
for transport in spdy websocket; do
	expect "exec ($transport)" "hello $transport" \
		"$("${crictl[@]}" exec -r "$transport" "$shell" echo hello "$transport")"
	expect "exec -i ($transport)" "piped $transport" \
		"$(echo "piped $transport" | "${crictl[@]}" exec -i -r "$transport" "$shell" cat)"
	out=$("${crictl[@]}" exec -r "$transport" "$shell" sh -c 'exit 3' 2>&1) &&
		fail "exec ($transport) of 'exit 3' succeeded"
	expect "exec ($transport) exit code" "exit code 3" "$out"
	# A real terminal for -it: script(1) gives crictl one, sized here; crictl passes the
	# size on and the process finds its terminal in the container's /dev/pts.
	out=$(script -qec "stty rows 30 cols 100; ${crictl[*]} exec -it -r $transport $shell sh -c 'tty; stty size'" /dev/null)
	expect "exec -it ($transport)" "/dev/pts/" "$out"
	expect "exec -it ($transport) size" "30 100" "$out"
	# Attach writes a command to the container's shell and reads its answer; the attach
	# itself lasts as long as the container, so it is cut after a few seconds (by SIGKILL:
	# crictl attach catches SIGTERM and carries on).
	out=$( (echo "echo attached $transport"; sleep 3) | timeout -s KILL 5 "${crictl[@]}" attach -i -r "$transport" "$shell" || true)
	expect "attach ($transport)" "attached $transport" "$out"
done
expect "logs" "attached spdy" "$("${crictl[@]}" logs "$shell")"

for transport in spdy websocket; do
	port=$((18080 + RANDOM % 1000))
	"${crictl[@]}" port-forward -r "$transport" "$pod" "$port:80" >"$work/pf.log" 2>&1 &
	bg+=($!)
	code=
	for _ in $(seq 50); do
		code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/" || true)
		[ "$code" = 200 ] && break
		sleep 0.2
	done
	[ "$code" = 200 ] || fail "port-forward ($transport): HTTP $code; $(cat "$work/pf.log")"
	kill "${bg[-1]}"
done

"${crictl[@]}" stats "$shell" | grep shell >/dev/null || fail "stats"
"${crictl[@]}" update --memory 67108864 "$shell" >/dev/null
"${crictl[@]}" stop "$shell" "$web" >/dev/null
"${crictl[@]}" rm "$shell" "$web" >/dev/null
"${crictl[@]}" stopp "$pod" >/dev/null
"${crictl[@]}" rmp "$pod" >/dev/null
sleep 0.5
events=$(jq -r '"\(.containerId) \(.containerEventType)"' "$work/events.json" | tr '\n' ' ')
for want in "$pod CONTAINER_STARTED_EVENT" "$shell CONTAINER_CREATED_EVENT" "$shell CONTAINER_STARTED_EVENT" \
	"$shell CONTAINER_STOPPED_EVENT" "$shell CONTAINER_DELETED_EVENT" "$pod CONTAINER_DELETED_EVENT"; do
	expect "events" "$want" "$events"
done

cat >"$work/pod2.json" <<JSON
{"metadata": {"name": "run", "namespace": "default", "uid": "run-uid"}, "linux": {}}
JSON
cat >"$work/run.json" <<JSON
{"metadata": {"name": "run"}, "image": {"image": "$busybox"}, "command": ["sleep", "60"], "linux": {}}
JSON
ran=$("${crictl[@]}" run "$work/run.json" "$work/pod2.json")
expect "run" "CONTAINER_RUNNING" "$("${crictl[@]}" inspect "$ran")"
"${crictl[@]}" rmp -fa >/dev/null
[ -z "$("${crictl[@]}" pods -q)" ] || fail "pods left after rmp -fa"
ok=1
echo "crictl smoke test: info, pod lifecycle, exec/attach/port-forward over SPDY and WebSocket, events"
