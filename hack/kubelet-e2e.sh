#!/usr/bin/env bash
# A real kubelet (v1.36, standalone: static pods, no API server) against a private ferrocri.
# Static pod manifests are dropped into the kubelet's staticPodPath and checked through the
# kubelet's read-only API (:10255/pods, /stats/summary, /metrics/resource, /metrics) and
# crictl: probes, restart policies, CrashLoopBackOff, init and sidecar containers, volumes,
# hooks and graceful termination, hostNetwork, hostPort, DNS config, sysctls, securityContext
# (users, read-only root, seccomp, capabilities), downward API, subPath, cgroup limits, a kubelet
# restart with pods running, and that nothing is left once the pods are gone.
#   hack/kubelet-e2e.sh [--gates default|evented|both]
#     default  the kubelet's default feature gates (what hack/test.sh runs)
#     evented  EventedPLEG=true and PodAndContainerStatsFromCRI=true: the kubelet then
#              needs GetContainerEvents and the CRI metrics RPCs (ListPodSandboxMetrics...)
#     both     one pass with each
# Prints a table (pass, check, expected, result) and exits non-zero on any FAIL.
# Env: FERROCRI_BIN (default target/debug/ferrocri), FERROCRI_REGISTRY_ADDR (default
# 127.0.0.1:5000), KUBELET_E2E_KEEP=1 keeps the work folder (kept anyway on failure).
# Uses host ports 10248 (healthz), 10250, 10255 (read-only API) and 18931 (a hostPort). The
# kubelet sets a few kernel sysctls at start (vm.overcommit_memory, kernel.panic...); they are
# put back at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
export PATH=$HOME/.cargo/bin:/usr/local/go/bin:$PATH

bin=${FERROCRI_BIN:-$repo/target/debug/ferrocri}
gates=default
while [ $# -gt 0 ]; do
	case $1 in
	--gates)
		gates=${2:?--gates needs default, evented or both}
		shift 2
		;;
	*)
		echo "usage: hack/kubelet-e2e.sh [--gates default|evented|both]" >&2
		exit 2
		;;
	esac
done
case $gates in default | evented | both) ;; *)
	echo "kubelet-e2e: --gates must be default, evented or both" >&2
	exit 2
	;;
esac
[ -x "$bin" ] || {
	echo "kubelet-e2e: $bin not built (cargo build)" >&2
	exit 1
}

NODE=ferrocri-e2e
RO=http://127.0.0.1:10255
BUSYBOX=registry.k8s.io/e2e-test-images/busybox:1.29-2
# Pushed by hack/image-matrix.sh (umoci: five layers, a whiteout, an opaque folder).
IMGVOL_IMAGE=docker.io/matrix/umoci:1
NGINX=registry.k8s.io/e2e-test-images/nginx:1.14-2
# The kubelet's own bridge and subnet, apart from hack/cni (critest) and the default 10.88.
BRIDGE=fcrikube0
SUBNET=10.92.0.0/24
HOST_PORT=18931
SYSCTLS=(vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops
	kernel/keys/root_maxkeys kernel/keys/root_maxbytes)

log() { echo "[kubelet-e2e] $*" >&2; }
for port in 10248 10250 10255 18931; do
	if ss -Hltn "sport = :$port" | grep . >/dev/null; then
		echo "kubelet-e2e: port $port is in use (another kubelet?)" >&2
		exit 1
	fi
done

t_build=$SECONDS
kubelet=$(hack/build-kubelet.sh)
log "kubelet ready in $((SECONDS - t_build))s: $kubelet"
hack/registry.sh start >/dev/null
hack/build-test-images.sh >/dev/null

top=$(mktemp -d /tmp/ferrocri-kubelet.XXXXXX)
declare -A saved_sysctl
for s in "${SYSCTLS[@]}"; do saved_sysctl[$s]=$(cat "/proc/sys/$s"); done

# --- results ---------------------------------------------------------------------------
rows=()
failed=0
last_ok=1
pass_name=
record() { # record <check> <expected> <actual> <PASS|FAIL>
	local actual=${3//$'\n'/ }
	[ "${#actual}" -gt 60 ] && actual="${actual:0:57}..."
	rows+=("$pass_name|$1|$2|$actual|$4")
	[ "$4" = PASS ] || failed=1
	log "$4 $1: $actual"
}
# check <name> <expected> <timeout s> <command...>: the command prints what it saw and
# succeeds when that is what was expected; it is retried once a second until the timeout.
check() {
	local name=$1 expected=$2 timeout=$3 out
	shift 3
	local deadline=$((SECONDS + timeout))
	while :; do
		if out=$("$@" 2>&1); then
			record "$name" "$expected" "$out" PASS
			last_ok=1
			return 0
		fi
		if [ "$SECONDS" -ge "$deadline" ]; then
			record "$name" "$expected" "${out:-nothing}" FAIL
			last_ok=0
			return 0
		fi
		sleep 1
	done
}
print_table() {
	local line
	printf '\n%-8s | %-44s | %-36s | %-60s | %s\n' pass check expected result ""
	printf '%s\n' "$(printf -- '-%.0s' $(seq 160))"
	for line in "${rows[@]}"; do
		IFS='|' read -r p c e a r <<<"$line"
		printf '%-8s | %-44s | %-36s | %-60s | %s\n' "$p" "$c" "$e" "$a" "$r"
	done
}

# --- one pass: a private ferrocri and kubelet ------------------------------------------
work=
daemon=
kubelet_pid=
crictl=()

start_ferrocri() {
	mkdir -p "$work/cni"
	cat >"$work/cni/10-kubelet-e2e.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "ferrocri-kubelet-e2e",
  "plugins": [
    {
      "type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{ "subnet": "$SUBNET" }]],
        "routes": [{ "dst": "0.0.0.0/0" }],
        "dataDir": "$work/cni-ipam"
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true }, "snat": true }
  ]
}
EOF
	local certs=$repo/hack/certs.d
	if [ "${FERROCRI_REGISTRY_ADDR:-127.0.0.1:5000}" != 127.0.0.1:5000 ]; then
		cp -r "$certs" "$work/certs.d"
		sed -i "s/127\.0\.0\.1:5000/$FERROCRI_REGISTRY_ADDR/" "$work"/certs.d/*/hosts.toml
		certs=$work/certs.d
	fi
	cat >"$work/ferrocri.toml" <<EOF
root_dir = "$work/root"
state_dir = "$work/state"
socket = "$work/ferrocri.sock"
[log]
level = "debug"
[cni]
conf_dir = "$work/cni"
bin_dirs = ["/usr/lib/cni", "/opt/cni/bin"]
[registry]
config_dir = "$certs"
EOF
	"$bin" --config "$work/ferrocri.toml" 2>"$work/ferrocri.log" &
	daemon=$!
	printf 'runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 30\n' \
		"$work/ferrocri.sock" "$work/ferrocri.sock" >"$work/crictl.yaml"
	crictl=(crictl -c "$work/crictl.yaml")
	for _ in $(seq 100); do
		"${crictl[@]}" version >/dev/null 2>&1 && return 0
		kill -0 "$daemon" 2>/dev/null || break
		sleep 0.1
	done
	cat "$work/ferrocri.log" >&2
	echo "kubelet-e2e: ferrocri did not start" >&2
	return 1
}

write_kubelet_config() { # <feature gates as YAML lines, may be empty>
	mkdir -p "$work/manifests" "$work/kubelet" "$work/pod-logs"
	cat >"$work/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
staticPodPath: $work/manifests
fileCheckFrequency: 1s
syncFrequency: 5s
containerRuntimeEndpoint: unix://$work/ferrocri.sock
imageServiceEndpoint: unix://$work/ferrocri.sock
podLogsDir: $work/pod-logs
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
address: 127.0.0.1
port: 10250
readOnlyPort: 10255
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
# This disk is shared and nearly full: neither evict the test pods nor collect images.
evictionHard: {memory.available: "1Mi", nodefs.available: "1%", nodefs.inodesFree: "1%", imagefs.available: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
containerLogMaxSize: 1Mi
featureGates: {$1}
EOF
}

start_kubelet() {
	"$kubelet" --config "$work/kubelet.yaml" --root-dir "$work/kubelet" \
		--hostname-override "$NODE" --v=2 >>"$work/kubelet.log" 2>&1 &
	kubelet_pid=$!
}

stop_kubelet() {
	[ -n "$kubelet_pid" ] || return 0
	kill -TERM "$kubelet_pid" 2>/dev/null || true
	for _ in $(seq 100); do kill -0 "$kubelet_pid" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$kubelet_pid" 2>/dev/null || true
	wait "$kubelet_pid" 2>/dev/null || true
	kubelet_pid=
}

# Everything of one pass goes, in an order that lets each step succeed: the kubelet, the
# pods it left (through ferrocri), ferrocri, mounts under the work folder (the kubelet
# bind-mounts its root dir and leaves that), the kubelet's cgroups, the bridge.
teardown() {
	[ -n "$work" ] || return 0
	stop_kubelet
	if [ -n "$daemon" ] && kill -0 "$daemon" 2>/dev/null; then
		timeout 60 "${crictl[@]}" rmp -fa >/dev/null 2>&1 || true
		kill -TERM "$daemon"
		wait "$daemon" || true
	fi
	daemon=
	local m
	for m in $(awk -v w="$work" 'index($5, w) == 1 {print $5}' /proc/self/mountinfo | sort -r); do
		umount -l "$m" 2>/dev/null || true
	done
	local d
	for d in /sys/fs/cgroup/*/kubepods; do
		[ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
	done
	ip link del "$BRIDGE" 2>/dev/null || true
}

cleanup() {
	local status=$?
	teardown
	for s in "${SYSCTLS[@]}"; do echo "${saved_sysctl[$s]}" >"/proc/sys/$s" 2>/dev/null || true; done
	if [ "$failed" = 0 ] && [ "$status" = 0 ] && [ "${KUBELET_E2E_KEEP:-0}" != 1 ]; then
		rm -rf "$top"
	else
		echo "kubelet-e2e: logs kept in $top (ferrocri.log, kubelet.log per pass)" >&2
	fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- probes used by the checks ---------------------------------------------------------
pods_json() { curl -sf --max-time 5 "$RO/pods"; }
# pod_field <pod> <jq filter on the pod object>: prints the result (raw).
pod_field() {
	pods_json | jq -r --arg n "$1-$NODE" ".items[] | select(.metadata.name == \$n) | $2"
}
# pod_is <pod> <jq filter> <wanted>
pod_is() {
	local v
	v=$(pod_field "$1" "$2")
	echo "${v:-absent}"
	[ "$v" = "$3" ]
}
# pod_ge <pod> <jq filter> <minimum>
pod_ge() {
	local v
	v=$(pod_field "$1" "$2")
	echo "${v:-absent}"
	[ -n "$v" ] && [ "$v" -ge "$3" ]
}
ctr_id() { # ctr_id <pod> <container>: the running container's ID
	"${crictl[@]}" ps -q --label "io.kubernetes.pod.name=$1-$NODE" \
		--label "io.kubernetes.container.name=$2" | sed -n 1p
}
ctr_exec() { # ctr_exec <pod> <container> <command...>: ExecSync
	local id
	id=$(ctr_id "$1" "$2")
	[ -n "$id" ] || {
		echo "no running container $2 in $1"
		return 1
	}
	shift 2
	"${crictl[@]}" exec -s --timeout 10 "$id" "$@"
}
exec_is() { # exec_is <pod> <container> <wanted> <command...>
	local pod=$1 ctr=$2 want=$3 out
	shift 3
	out=$(ctr_exec "$pod" "$ctr" "$@" 2>&1 | tr '\n' ' ' | sed 's/ *$//') || true
	echo "$out"
	[ "$out" = "$want" ]
}
exec_has() { # exec_has <pod> <container> <substring> <command...>
	local pod=$1 ctr=$2 want=$3 out
	shift 3
	out=$(ctr_exec "$pod" "$ctr" "$@" 2>&1 | tr '\n' ' ') || true
	echo "$out"
	[[ "$out" == *"$want"* ]]
}
file_is() { # file_is <path> <wanted, newlines as spaces>
	local v
	v=$(tr '\n' ' ' <"$1" 2>/dev/null | sed 's/ *$//') || true
	echo "${v:-absent}"
	[ "$v" = "$2" ]
}
all_ready() { # all_ready <pod>: phase and readiness of every container
	pod_is "$1" '[.status.phase, ([.status.containerStatuses[]?.ready] | if length > 0 then all else false end | tostring)] | join(" ")' "Running true"
}
kubelet_healthy() { [ "$(curl -sf --max-time 2 http://127.0.0.1:10248/healthz)" = ok ] && echo ok; }

# The cgroup (v1 hierarchy <controller>) of a container's first process.
ctr_cgroup_file() { # ctr_cgroup_file <pod> <container> <controller> <file>
	local id pid path
	id=$(ctr_id "$1" "$2")
	pid=$("${crictl[@]}" inspect -o json "$id" | jq -r '.info.pid')
	path=$(awk -F: -v c="$3" '{n = split($2, a, ","); for (i = 1; i <= n; i++) if (a[i] == c) print $3}' "/proc/$pid/cgroup")
	cat "/sys/fs/cgroup/$3$path/$4"
}
cgroup_is() { # cgroup_is <pod> <container> <controller> <file> <wanted>
	local v
	v=$(ctr_cgroup_file "$1" "$2" "$3" "$4" 2>&1) || true
	echo "$v"
	[ "$v" = "$5" ]
}
ctr_under_pod_cgroup() { # the container's memory cgroup is inside the kubelet's pod cgroup
	local id pid uid path
	uid=$(pod_field "$1" .metadata.uid)
	id=$(ctr_id "$1" "$2")
	pid=$("${crictl[@]}" inspect -o json "$id" | jq -r '.info.pid')
	path=$(awk -F: '$2 ~ /(^|,)memory(,|$)/ {print $3}' "/proc/$pid/cgroup")
	echo "$path"
	[[ "$path" == /kubepods/*/pod"$uid"/* || "$path" == /kubepods/pod"$uid"/* ]]
}

# --- the pods --------------------------------------------------------------------------
manifest() { # manifest <name> <spec YAML, indented by 2>
	cat >"$work/manifests/$1.yaml" <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: $1
  namespace: default
  labels: {e2e: $1}
spec:
$2
EOF
}
LOOP='trap "exit 0" TERM; while true; do sleep 1; done'
# A pod whose resources can change in place: a static pod's UID is a hash of its manifest
# unless the manifest names one, so this one does; the kubelet then sees a changed manifest
# as an update of the same pod, and resizes it (resizePolicy NotRequired: no restart).
resize_manifest() { # resize_manifest <cpu limit> <memory limit>
	cat >"$work/resize.yaml.tmp" <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: resize
  namespace: default
  uid: 6d1f0c2e-5a1b-4c3d-9e8f-0a1b2c3d4e5f
  labels: {e2e: resize}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: $BUSYBOX
    command: [sh, -c, '$LOOP']
    resources: {requests: {cpu: 100m, memory: 32Mi}, limits: {cpu: $1, memory: $2}}
    resizePolicy: [{resourceName: cpu, restartPolicy: NotRequired}, {resourceName: memory, restartPolicy: NotRequired}]
EOF
	mv "$work/resize.yaml.tmp" "$work/manifests/resize.yaml"
}

write_manifests() {
	# nginx stand-in with a tcpSocket startup probe and httpGet readiness and liveness,
	# limits that must reach its cgroup, and a busybox beside it with an exec readiness probe.
	manifest web "  terminationGracePeriodSeconds: 2
  containers:
  - name: nginx
    image: $NGINX
    ports: [{containerPort: 80}]
    startupProbe: {tcpSocket: {port: 80}, periodSeconds: 1, failureThreshold: 30}
    readinessProbe: {httpGet: {path: /, port: 80}, periodSeconds: 2}
    livenessProbe: {httpGet: {path: /, port: 80}, periodSeconds: 2}
    resources: {limits: {memory: 64Mi, cpu: 250m}}
  - name: side
    image: $BUSYBOX
    command: [sh, -c, 'echo hello from side; touch /tmp/ready; $LOOP']
    readinessProbe: {exec: {command: [cat, /tmp/ready]}, periodSeconds: 2}
    livenessProbe: {tcpSocket: {port: 80}, periodSeconds: 2}"
	# A gRPC liveness probe on a port where nothing answers: the kubelet dials the pod IP
	# itself (the runtime only restarts the container), so failing is what can be checked
	# without a gRPC health server in the test images.
	manifest grpcprobe "  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: $BUSYBOX
    command: [sh, -c, '$LOOP']
    livenessProbe: {grpc: {port: 9555}, periodSeconds: 1, failureThreshold: 1}"
	resize_manifest 200m 64Mi
	# busybox httpd whose health file disappears after 6 s: the httpGet liveness probe fails
	# and the kubelet restarts the container.
	manifest liveness "  terminationGracePeriodSeconds: 2
  containers:
  - name: httpd
    image: $BUSYBOX
    command: [sh, -c, 'mkdir -p /www; echo ok >/www/healthz; (sleep 6; rm /www/healthz) & exec httpd -f -p 8080 -h /www']
    livenessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1, failureThreshold: 2}"
	# ~2 MiB of log lines at once, then one tick a second: past containerLogMaxSize (1Mi) the
	# kubelet renames 0.log and calls ReopenContainerLog; the ticks must then reach a new 0.log.
	manifest chatty "  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: $BUSYBOX
    command: [sh, -c, 'i=0; while [ \$i -lt 24000 ]; do echo \"burst \$i 0123456789abcdef0123456789abcdef0123456789\"; i=\$((i+1)); done; trap \"exit 0\" TERM; while true; do echo tick; sleep 1; done']"
	manifest crash "  terminationGracePeriodSeconds: 2
  containers:
  - name: crash
    image: $BUSYBOX
    command: [sh, -c, 'echo crashing; exit 2']"
	manifest never "  restartPolicy: Never
  containers:
  - name: main
    image: $BUSYBOX
    command: [sh, -c, 'exit 3']"
	manifest onfail-ok "  restartPolicy: OnFailure
  containers:
  - name: main
    image: $BUSYBOX
    command: [sh, -c, 'exit 0']"
	manifest onfail-bad "  restartPolicy: OnFailure
  containers:
  - name: main
    image: $BUSYBOX
    command: [sh, -c, 'exit 1']"
	# Two init containers in order, then a restartable one (a sidecar) that must keep running.
	manifest init "  terminationGracePeriodSeconds: 2
  initContainers:
  - name: first
    image: $BUSYBOX
    command: [sh, -c, 'echo first >>/shared/order']
    volumeMounts: [{name: shared, mountPath: /shared}]
  - name: second
    image: $BUSYBOX
    command: [sh, -c, 'echo second >>/shared/order']
    volumeMounts: [{name: shared, mountPath: /shared}]
  - name: sidecar
    image: $BUSYBOX
    restartPolicy: Always
    command: [sh, -c, 'echo sidecar >>/shared/order; $LOOP']
    volumeMounts: [{name: shared, mountPath: /shared}]
  containers:
  - name: main
    image: $BUSYBOX
    command: [sh, -c, 'echo main >>/shared/order; $LOOP']
    volumeMounts: [{name: shared, mountPath: /shared}]
  volumes: [{name: shared, emptyDir: {}}]"
	mkdir -p "$work/hostpath"
	manifest vols "  terminationGracePeriodSeconds: 2
  containers:
  - name: writer
    image: $BUSYBOX
    command: [sh, -c, 'echo disk >/disk/f; echo mem >/mem/f; echo host >/host/f; $LOOP']
    volumeMounts: [{name: disk, mountPath: /disk}, {name: mem, mountPath: /mem}, {name: host, mountPath: /host}]
  - name: reader
    image: $BUSYBOX
    command: [sh, -c, '$LOOP']
    volumeMounts: [{name: disk, mountPath: /disk}, {name: mem, mountPath: /mem}]
  volumes:
  - {name: disk, emptyDir: {}}
  - {name: mem, emptyDir: {medium: Memory}}
  - {name: host, hostPath: {path: $work/hostpath, type: Directory}}"
	# An image volume (KEP-4639, beta and on by default since 1.35): the kubelet pulls the
	# umoci-built matrix image itself and passes its ID; a subPath becomes image_sub_path.
	manifest imgvol "  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: $BUSYBOX
    command: [sh, -c, '$LOOP']
    volumeMounts: [{name: matrix, mountPath: /vol}, {name: matrix, mountPath: /sub, subPath: opt/umoci}]
  volumes:
  - {name: matrix, image: {reference: $IMGVOL_IMAGE, pullPolicy: IfNotPresent}}"
	mkdir -p "$work/term"
	manifest term "  terminationGracePeriodSeconds: 20
  containers:
  - name: main
    image: $BUSYBOX
    command: [sh, -c, 'trap \"echo term >>/host/events; exit 0\" TERM; while true; do sleep 1; done']
    lifecycle:
      postStart: {exec: {command: [sh, -c, 'echo poststart >>/host/events']}}
      preStop: {exec: {command: [sh, -c, 'echo prestop >>/host/events']}}
    volumeMounts: [{name: host, mountPath: /host}]
  volumes: [{name: host, hostPath: {path: $work/term, type: Directory}}]"
	manifest hostnet "  terminationGracePeriodSeconds: 2
  hostNetwork: true
  containers:
  - name: main
    image: $BUSYBOX
    command: [sh, -c, '$LOOP']"
	# hostUsers: false: a user namespace with the kubelet's mapping, an emptyDir written inside.
	manifest userns "  terminationGracePeriodSeconds: 2
  hostUsers: false
  containers:
  - name: main
    image: $BUSYBOX
    command: [sh, -c, 'echo c >/scratch/f; $LOOP']
    volumeMounts: [{name: scratch, mountPath: /scratch}]
  volumes: [{name: scratch, emptyDir: {}}]"
	manifest secctx "  terminationGracePeriodSeconds: 2
  securityContext: {runAsUser: 1234, runAsGroup: 1234}
  containers:
  - name: main
    image: $BUSYBOX
    command: [sh, -c, '$LOOP']
    securityContext: {readOnlyRootFilesystem: true, allowPrivilegeEscalation: false}"
	# Pod-level settings the kubelet hands to the runtime or writes itself: DNS config, a
	# namespaced sysctl, seccomp RuntimeDefault, capabilities, a hostPort, downward API files
	# and a subPath mount.
	mkdir -p "$work/subpath/data"
	echo subpath >"$work/subpath/data/file"
	manifest misc "  terminationGracePeriodSeconds: 2
  dnsPolicy: None
  dnsConfig: {nameservers: [10.96.0.10], searches: [e2e.svc.cluster.local], options: [{name: ndots, value: '3'}]}
  securityContext:
    sysctls: [{name: net.ipv4.ping_group_range, value: '0 2147483647'}]
    seccompProfile: {type: RuntimeDefault}
  containers:
  - name: main
    image: $BUSYBOX
    command: [sh, -c, 'mkdir -p /www; echo hostport >/www/index.html; httpd -p 8080 -h /www; $LOOP']
    ports: [{containerPort: 8080, hostPort: $HOST_PORT}]
    securityContext: {capabilities: {drop: [ALL], add: [NET_RAW, NET_BIND_SERVICE]}}
    volumeMounts: [{name: info, mountPath: /info}, {name: sub, mountPath: /sub, subPath: data}]
  volumes:
  - name: info
    downwardAPI: {items: [{path: name, fieldRef: {fieldPath: metadata.name}}, {path: labels, fieldRef: {fieldPath: metadata.labels}}]}
  - {name: sub, hostPath: {path: $work/subpath, type: Directory}}"
}

# --- the checks ------------------------------------------------------------------------
cri_log_format() { # the kubelet's CRI log format in podLogsDir/<ns>_<name>_<uid>/<ctr>/0.log
	local uid f
	uid=$(pod_field web .metadata.uid)
	f=$work/pod-logs/default_web-${NODE}_$uid/side/0.log
	head -n 1 "$f" 2>/dev/null || echo "no $f"
	grep -Eq '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+(Z|[+-][0-9:]+) stdout F hello from side$' "$f"
}
crash_log_per_attempt() { # <ns>_<pod>_<uid>/<ctr>/<attempt>.log; the kubelet removes older ones
	local uid d f
	uid=$(pod_field crash .metadata.uid)
	d=$work/pod-logs/default_crash-${NODE}_$uid/crash
	f=$(ls "$d" 2>/dev/null | sort -n | tail -n 1)
	echo "${f:-no log} in $(basename "$(dirname "$d")")"
	[[ "$f" =~ ^[1-9][0-9]*\.log$ ]] && grep -q 'stdout F crashing' "$d/$f"
}
log_rotated_and_reopened() { # 0.log.<time> beside a new 0.log that holds the later ticks
	local uid d rotated
	uid=$(pod_field chatty .metadata.uid)
	d=$work/pod-logs/default_chatty-${NODE}_$uid/main
	rotated=$(ls "$d" 2>/dev/null | grep -c '^0\.log\.[0-9]' || true)
	echo "$rotated rotated, 0.log: $(grep -c 'stdout F tick$' "$d/0.log" 2>/dev/null) ticks, $(grep -c 'stdout F burst' "$d/0.log" 2>/dev/null) burst lines"
	[ "$rotated" -ge 1 ] && grep -q 'stdout F tick$' "$d/0.log" && ! grep -q 'stdout F burst 0 ' "$d/0.log"
}
pod_ip_in_subnet() {
	local ip
	ip=$(pod_field web .status.podIP)
	echo "${ip:-none}"
	[[ "$ip" == "${SUBNET%.0/24}".* ]]
}
crictl_labels() {
	local uid p
	uid=$(pod_field web .metadata.uid)
	p=$("${crictl[@]}" pods -o json --label "io.kubernetes.pod.name=web-$NODE" |
		jq -r '.items[] | select(.state == "SANDBOX_READY") | .labels | [."io.kubernetes.pod.namespace", ."io.kubernetes.pod.uid", .e2e] | join(",")')
	echo "$p"
	[ "$p" = "default,$uid,web" ]
}
crictl_containers() {
	local names
	names=$("${crictl[@]}" ps -o json --label "io.kubernetes.pod.name=web-$NODE" |
		jq -r '[.containers[].labels."io.kubernetes.container.name"] | sort | join(",")')
	echo "$names"
	[ "$names" = nginx,side ]
}
init_order() { exec_is init main "first second sidecar main" cat /shared/order; }
userns_mapped() { # root inside, an unprivileged mapped uid on the host, the emptyDir written
	local id pid map host inside file
	id=$(ctr_id userns main)
	pid=$("${crictl[@]}" inspect -o json "$id" | jq -r '.info.pid')
	map=$(awk '{print $1, $2}' "/proc/$pid/uid_map")
	host=$(awk '/^Uid:/ {print $2}' "/proc/$pid/status")
	inside=$(ctr_exec userns main sh -c 'echo $(id -u) $(cat /scratch/f)')
	echo "uid_map=$map host_uid=$host inside=$inside"
	[[ "$map" == "0 $host" && "$host" -ge 65536 && "$inside" == "0 c" ]]
}
netns_is_host() {
	local mine
	mine=$(readlink /proc/self/ns/net)
	exec_is hostnet main "$mine" readlink /proc/self/ns/net
}
summary_stats() {
	local v
	v=$(curl -sf --max-time 10 "$RO/stats/summary" | jq -r --arg n "web-$NODE" \
		'.pods[] | select(.podRef.name == $n) | .containers[] | select(.name == "nginx") |
		 "cpu=\(.cpu.usageNanoCores // "none") mem=\(.memory.workingSetBytes // "none")"')
	echo "${v:-absent}"
	[[ "$v" =~ ^cpu=[0-9]+\ mem=[1-9][0-9]*$ ]]
}
metrics_resource() {
	local v
	v=$(curl -sf --max-time 10 "$RO/metrics/resource" |
		grep -E "^container_memory_working_set_bytes\{container=\"nginx\",namespace=\"default\",pod=\"web-$NODE\"\}" | sed -n 1p)
	echo "${v:-absent}"
	[ -n "$v" ]
}
metrics_cadvisor() {
	local v
	v=$(curl -sf --max-time 10 "$RO/metrics/cadvisor" |
		grep -E "^container_cpu_usage_seconds_total\{.*pod=\"web-$NODE\"" | sed -n 1p)
	echo "${v:-absent}"
	[ -n "$v" ]
}
cadvisor_line() { # cadvisor_line <metric> <label=value>: the web pod's first such line
	curl -sf --max-time 10 "$RO/metrics/cadvisor" |
		grep -E "^$1\{" | grep -F "pod=\"web-$NODE\"" | grep -F "$2" | sed -n 1p
}
cadvisor_value() { # cadvisor_value <metric> <label=value> <wanted value>
	local line
	line=$(cadvisor_line "$1" "$2")
	echo "${line:-absent}" | sed 's/.*} //'
	[ "$(awk '{print $2}' <<<"$line")" = "$3" ]
}
cadvisor_positive() { # cadvisor_positive <metric> <label=value>
	local line
	line=$(cadvisor_line "$1" "$2")
	echo "${line:-absent}" | sed 's/.*} //'
	awk '{exit !($2 > 0)}' <<<"${line:-x 0}"
}
summary_cri_details() { # container names and pod network, as ListPodSandboxStats gave them
	local v
	v=$(curl -sf --max-time 10 "$RO/stats/summary" | jq -r --arg n "web-$NODE" \
		'.pods[] | select(.podRef.name == $n) |
		 "\([.containers[].name] | sort | join(",")) rx=\(.network.rxBytes // 0)"')
	echo "${v:-absent}"
	[[ "$v" =~ ^nginx,side\ rx=[1-9][0-9]*$ ]]
}
rpc_count() { # rpc_count <rpc> <done|failed>: calls of <rpc> in ferrocri's log
	grep -c "rpc{rpc=$1[ }].*rpc $2" "$work/ferrocri.log" || true
}
cri_stats_called() {
	local out="" n failed=0 rpc
	for rpc in ListMetricDescriptors ListPodSandboxMetrics ListPodSandboxStats; do
		n=$(rpc_count "$rpc" done)
		out+="$rpc=$n "
		[ "$n" -gt 0 ] || failed=1
		n=$(rpc_count "$rpc" failed)
		[ "$n" = 0 ] || failed=1
	done
	echo "$out"
	[ "$failed" = 0 ]
}
# With the evented PLEG kubelet reads container statuses from PodSandboxStatus without sorting
# them; in the wrong order it re-creates an attempt that exists.
create_already_exists() {
	local n
	n=$(grep -c 'rpc{rpc=CreateContainer.*code="AlreadyExists"' "$work/ferrocri.log" || true)
	echo "$n"
	[ "$n" = 0 ]
}
same_container() { # same_container <pod> <container> <ID before>: same ID, no restart
	local id restarts
	id=$(ctr_id "$1" "$2")
	restarts=$(pod_field "$1" '.status.containerStatuses[0].restartCount')
	if [ "$id" = "$3" ]; then echo "same $restarts"; else echo "new ID $id, restarts $restarts"; fi
	[ "$id" = "$3" ] && [ "$restarts" = 0 ]
}
kubelet_metric() { # kubelet_metric <name>: its value on /metrics, 0 when absent
	local v
	v=$(curl -sf --max-time 10 "$RO/metrics" | awk -v m="$1" '$1 == m {print $2}')
	echo "${v:-0}"
}
evented_pleg_used() {
	local ok err
	ok=$(kubelet_metric kubelet_evented_pleg_connection_success_count)
	err=$(kubelet_metric kubelet_evented_pleg_connection_error_count)
	echo "streams=$ok errors=$err"
	[ "$ok" != 0 ] && [ "$err" = 0 ]
}
# sandbox and container IDs of the pods that should survive a kubelet restart.
running_ids() {
	local p
	for p in web init vols hostnet userns secctx misc; do
		"${crictl[@]}" pods -q --state ready --label "io.kubernetes.pod.name=$p-$NODE"
		"${crictl[@]}" ps -q --label "io.kubernetes.pod.name=$p-$NODE"
	done | sort
}
one_sandbox_each() {
	local p n out=""
	for p in web init vols hostnet userns secctx misc; do
		n=$("${crictl[@]}" pods -q --state ready --label "io.kubernetes.pod.name=$p-$NODE" | wc -l)
		out+="$p=$n "
		[ "$n" = 1 ] || {
			echo "$out"
			return 1
		}
	done
	echo "all 1"
}
same_ids() {
	local now
	now=$(running_ids)
	if [ "$now" = "$ids_before" ]; then
		echo "same $(wc -l <<<"$now") IDs"
	else
		echo "changed: $(diff <(echo "$ids_before") <(echo "$now") | grep '^[<>]' | tr '\n' ' ')"
		return 1
	fi
}
term_gone() {
	local n
	n=$(pod_field term .metadata.name | wc -l)
	local c
	c=$("${crictl[@]}" ps -q --label "io.kubernetes.pod.name=term-$NODE" | wc -l)
	echo "in /pods: $n, running containers: $c"
	[ "$n" = 0 ] && [ "$c" = 0 ]
}
no_pods_left() {
	local p c
	p=$("${crictl[@]}" pods -q | wc -l)
	c=$("${crictl[@]}" ps -aq | wc -l)
	echo "sandboxes=$p containers=$c"
	[ "$p" = 0 ] && [ "$c" = 0 ]
}
nothing_left() {
	local mounts netns cg leases
	mounts=$(grep -cE "$work/(root|state)" /proc/self/mountinfo || true)
	netns=$(find "$work/state" -path '*netns*' -type f 2>/dev/null | wc -l)
	cg=$(find /sys/fs/cgroup/memory/kubepods -mindepth 1 -type d -name 'pod*' 2>/dev/null | wc -l)
	leases=$(find "$work/cni-ipam" -type f ! -name 'last_reserved_ip*' ! -name lock 2>/dev/null | wc -l)
	echo "mounts=$mounts netns=$netns pod-cgroups=$cg ip-leases=$leases"
	[ "$mounts" = 0 ] && [ "$netns" = 0 ] && [ "$cg" = 0 ] && [ "$leases" = 0 ]
}
daemon_left_nothing() {
	local mounts procs
	mounts=$(grep -cE "$work/(root|state)" /proc/self/mountinfo || true)
	procs=$(pgrep -f "$work/(root|state)" | grep -vx "$$" | wc -l || true)
	echo "mounts=$mounts processes=$procs"
	[ "$mounts" = 0 ] && [ "$procs" = 0 ]
}

run_pass() { # run_pass <name> <feature gates YAML>
	pass_name=$1
	work=$top/$1
	mkdir -p "$work"
	local t0=$SECONDS
	log "pass $1: work folder $work"
	start_ferrocri
	write_kubelet_config "$2"
	start_kubelet
	check "kubelet healthy (:10248/healthz)" ok 90 kubelet_healthy
	# Pull once up front so the pod checks below measure the runtime, not the registry.
	"${crictl[@]}" pull "$BUSYBOX" >/dev/null
	"${crictl[@]}" pull "$NGINX" >/dev/null
	write_manifests

	if [ "$1" = evented ]; then
		check "evented PLEG: GetContainerEvents streams" "streams>0 errors=0" 20 evented_pleg_used
	fi
	check "web: Running, both containers ready" "Running true" 120 all_ready web
	if [ "$last_ok" = 0 ]; then
		# Every later check needs running pods; waiting out each timeout tells nothing more.
		record "the remaining checks" "run" "skipped: the first pod does not run" FAIL
		teardown
		return 0
	fi
	check "CRI log line in the kubelet format" "<ts> stdout F hello from side" 20 cri_log_format
	check "web: pod IP from the CNI subnet" "${SUBNET%.0/24}.x" 10 pod_ip_in_subnet
	check "crictl: kubelet's pod labels" "default,<uid>,web" 10 crictl_labels
	check "crictl: container name labels" nginx,side 10 crictl_containers
	check "limits: memory.limit_in_bytes (64Mi)" 67108864 10 cgroup_is web nginx memory memory.limit_in_bytes 67108864
	check "limits: cpu.cfs_quota_us (250m)" 25000 10 cgroup_is web nginx cpu cpu.cfs_quota_us 25000
	check "requests: cpu.shares (250m)" 256 10 cgroup_is web nginx cpu cpu.shares 256
	check "container cgroup under the pod's cgroup" "/kubepods/.../pod<uid>/..." 10 ctr_under_pod_cgroup web nginx
	check "liveness (httpGet) failing restarts httpd" ">= 1 restart" 90 pod_ge liveness '.status.containerStatuses[0].restartCount' 1
	check "Always: restarts counted" ">= 2 restarts" 120 pod_ge crash '.status.containerStatuses[0].restartCount' 2
	check "Always: CrashLoopBackOff, last exit 2" "CrashLoopBackOff 2" 60 pod_is crash \
		'"\(.status.containerStatuses[0].state.waiting.reason // "not waiting") \(.status.containerStatuses[0].lastState.terminated.exitCode)"' "CrashLoopBackOff 2"
	check "crash: log file named by attempt" "<n>.log, n >= 1" 10 crash_log_per_attempt
	check "log rotation at containerLogMaxSize (ReopenContainerLog)" ">= 1 rotated, ticks in a new 0.log" 60 log_rotated_and_reopened
	check "Never: Failed, exit 3, no restart" "Failed 3 0" 90 pod_is never \
		'"\(.status.phase) \(.status.containerStatuses[0].state.terminated.exitCode) \(.status.containerStatuses[0].restartCount)"' "Failed 3 0"
	check "OnFailure, exit 0: Succeeded, no restart" "Succeeded 0 0" 90 pod_is onfail-ok \
		'"\(.status.phase) \(.status.containerStatuses[0].state.terminated.exitCode) \(.status.containerStatuses[0].restartCount)"' "Succeeded 0 0"
	check "OnFailure, exit 1: restarted" ">= 1 restart" 90 pod_ge onfail-bad '.status.containerStatuses[0].restartCount' 1
	check "OnFailure, exit 1: last exit code" 1 30 pod_is onfail-bad '.status.containerStatuses[0].lastState.terminated.exitCode' 1
	check "init: Running, main ready" "Running true" 90 all_ready init
	check "init containers ran in order" "first second sidecar main" 20 init_order
	check "init containers: Completed, exit 0" "Completed 0,Completed 0" 10 pod_is init \
		'[.status.initContainerStatuses[] | select(.name != "sidecar") | "\(.state.terminated.reason) \(.state.terminated.exitCode)"] | join(",")' "Completed 0,Completed 0"
	check "sidecar (restartable init) running" "running started" 10 pod_is init \
		'.status.initContainerStatuses[] | select(.name == "sidecar") | "\(.state | keys[0]) \(if .started then "started" else "not started" end)"' "running started"
	check "vols: Running" "Running true" 90 all_ready vols
	check "emptyDir (disk and Memory) shared" "disk mem" 20 exec_is vols reader "disk mem" cat /disk/f /mem/f
	check "emptyDir medium Memory is tmpfs" tmpfs 10 exec_is vols reader tmpfs sh -c 'awk '\''$2 == "/mem" {print $3}'\'' /proc/mounts'
	check "hostPath written by the pod" host 10 file_is "$work/hostpath/f" host
	check "image volume: Running" "Running true" 120 all_ready imgvol
	check "image volume: merged layers, subPath" "matrix umoci replaced" 10 exec_is imgvol main "matrix umoci replaced" sh -c 'echo $(cat /vol/matrix-marker) $(ls /sub)'
	check "image volume: read-only" "Read-only file system" 10 exec_has imgvol main "Read-only file system" sh -c 'touch /vol/x 2>&1; true'
	check "term: Running" "Running true" 90 all_ready term
	check "postStart hook ran" poststart 20 file_is "$work/term/events" poststart
	check "hostNetwork: host's network namespace" "host netns" 90 netns_is_host
	check "hostUsers: false: Running" "Running true" 90 all_ready userns
	check "hostUsers: false: root inside, mapped uid on the host" "uid_map=0 <host> host_uid=<host>" 20 userns_mapped
	check "runAsUser 1234" "1234 1234" 90 exec_is secctx main "1234 1234" sh -c 'echo $(id -u) $(id -g)'
	check "readOnlyRootFilesystem" "Read-only file system" 10 exec_has secctx main "Read-only file system" sh -c 'touch /probe 2>&1; true'
	check "misc: Running" "Running true" 90 all_ready misc
	check "dnsConfig in /etc/resolv.conf" "3 lines" 10 exec_is misc main 3 sh -c 'grep -cE "^(nameserver 10.96.0.10|search e2e.svc.cluster.local|options ndots:3)\$" /etc/resolv.conf'
	check "sysctl net.ipv4.ping_group_range" "0 2147483647" 10 exec_is misc main "0 2147483647" sh -c 'echo $(cat /proc/sys/net/ipv4/ping_group_range)'
	check "seccomp RuntimeDefault (filter mode)" "Seccomp: 2" 10 exec_is misc main "Seccomp: 2" sh -c 'echo $(grep "^Seccomp:" /proc/self/status)'
	check "capabilities: drop ALL, add 2" "CapEff: 0000000000002400" 10 exec_is misc main "CapEff: 0000000000002400" sh -c 'echo $(grep "^CapEff:" /proc/self/status)'
	check "downward API file (metadata.name)" "misc-$NODE" 10 exec_is misc main "misc-$NODE" cat /info/name
	check "subPath mount of a hostPath" subpath 10 exec_is misc main subpath cat /sub/file
	check "hostPort $HOST_PORT -> 8080 (host address)" hostport 30 host_port_answers
	check "grpc liveness (nothing listening) restarts" ">= 1 restart" 90 pod_ge grpcprobe '.status.containerStatuses[0].restartCount' 1
	check "resize: Running" "Running true" 90 all_ready resize
	check "resize: cpu.cfs_quota_us (200m)" 20000 10 cgroup_is resize main cpu cpu.cfs_quota_us 20000
	local resize_id
	resize_id=$(ctr_id resize main)
	resize_manifest 300m 96Mi
	check "in-place resize: cpu.cfs_quota_us (300m)" 30000 60 cgroup_is resize main cpu cpu.cfs_quota_us 30000
	check "in-place resize: memory.limit_in_bytes (96Mi)" 100663296 30 cgroup_is resize main memory memory.limit_in_bytes 100663296
	check "in-place resize: same container, no restart" "same 0" 10 same_container resize main "$resize_id"
	check "/stats/summary: nginx cpu and memory" "cpu=<n> mem=<n>" 90 summary_stats
	check "/metrics/resource: nginx working set" "container_memory_working_set_bytes{...}" 60 metrics_resource
	if [ "$1" = evented ]; then
		check "/metrics/cadvisor from the CRI (web pod)" "container_cpu_usage_seconds_total{...}" 60 metrics_cadvisor
		check "/metrics/cadvisor: nginx memory limit" "64Mi" 30 cadvisor_value container_spec_memory_limit_bytes 'container="nginx"' 6.7108864e+07
		check "/metrics/cadvisor: web eth0 received bytes" "> 0" 30 cadvisor_positive container_network_receive_bytes_total 'interface="eth0"'
		check "/stats/summary from the CRI: web containers, network" "nginx,side rx>0" 30 summary_cri_details
		check "kubelet called the CRI stats and metrics RPCs" "all > 0, 0 failed" 10 cri_stats_called
	fi

	# Graceful termination: removing the manifest runs preStop, then SIGTERM (the trap writes
	# "term" and exits), well before the 20 s grace period would end in SIGKILL.
	local t_term=$SECONDS
	rm "$work/manifests/term.yaml"
	check "term: pod gone after manifest removed" "gone" 40 term_gone
	check "term: stopped in < 15 s (SIGTERM, not KILL)" "< 15 s" 0 test_lt $((SECONDS - t_term)) 15
	check "preStop hook then SIGTERM" "poststart prestop term" 5 file_is "$work/term/events" "poststart prestop term"

	# A kubelet restart with pods running finds them again: the same sandboxes and containers.
	ids_before=$(running_ids)
	stop_kubelet
	start_kubelet
	check "kubelet healthy after restart" ok 90 kubelet_healthy
	check "after restart: web Running and ready" "Running true" 90 all_ready web
	sleep 10 # a few relists and syncs: a kubelet that did not recognise a pod would recreate it now
	check "after restart: one sandbox per pod" "all 1" 0 one_sandbox_each
	check "after restart: same sandboxes and containers" "same IDs" 0 same_ids

	check "no CreateContainer AlreadyExists (attempt names)" 0 0 create_already_exists
	# Removing every manifest stops and removes every pod; the kubelet's container GC removes
	# sandboxes of deleted pods once a minute.
	rm -f "$work"/manifests/*.yaml
	check "all pods removed (kubelet GC)" "sandboxes=0 containers=0" 180 no_pods_left
	check "no mounts, netns, pod cgroups, IP leases" "all 0" 30 nothing_left
	stop_kubelet
	kill -TERM "$daemon"
	wait "$daemon" || true
	daemon=
	check "ferrocri exit: no mounts or processes" "mounts=0 processes=0" 10 daemon_left_nothing
	teardown
	log "pass $1 took $((SECONDS - t0))s"
	record "pass duration" "" "$((SECONDS - t0)) s" PASS
}
host_port_answers() {
	local addr out
	addr=$(ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p')
	out=$(curl -s --max-time 3 "http://${addr:-127.0.0.1}:$HOST_PORT/") || true
	echo "${out:-no answer from ${addr:-127.0.0.1}:$HOST_PORT}"
	[ "$out" = hostport ]
}
test_lt() {
	echo "$1 s"
	[ "$1" -lt "$2" ]
}

[ "$gates" = evented ] || run_pass default ""
[ "$gates" = default ] || run_pass evented "EventedPLEG: true, PodAndContainerStatsFromCRI: true"

print_table
n_fail=$(printf '%s\n' "${rows[@]}" | grep -c '|FAIL$' || true)
echo "kubelet-e2e: ${#rows[@]} checks, $n_fail failed"
exit "$failed"
