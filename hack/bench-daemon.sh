# Sourced by the pod, list and event benchmarks: builds the release daemon and the benchmark
# client example $bench_example, starts the local registry (with the test images) and a daemon with
# the test CNI network in a fresh folder. Sets work, sock, daemon and bin (the folder of the
# release binaries). On exit, failures included, every pod left is removed through the daemon
# (pods outlive it: their monitors are not its children), the daemon stops, and leftover
# mounts or processes are reported. BENCH_KEEP_LOG=<file> keeps the daemon's log (with
# RUST_LOG=debug it times every RPC, CNI plugin and teardown step).
export PATH=$HOME/.cargo/bin:$PATH
cargo build --release --locked --quiet --bin ferrocri --bin ferrocri-monitor --example "$bench_example"
bin=${CARGO_TARGET_DIR:-target}/release
hack/registry.sh start >/dev/null
hack/build-test-images.sh >/dev/null

work=$(mktemp -d /tmp/ferrocri-bench.XXXXXX)
sock=$work/ferrocri.sock
cat >"$work/config.toml" <<CONF
root_dir = "$work/root"
state_dir = "$work/state"
socket = "$sock"
[log]
level = "${BENCH_LOG_LEVEL:-warn}"
[cni]
conf_dir = "$PWD/hack/cni"
bin_dirs = ["/usr/lib/cni", "/opt/cni/bin"]
[registry]
config_dir = "$PWD/hack/certs.d"
CONF

bench_start_daemon() {
	"$bin/ferrocri" --config "$work/config.toml" 2>>"$work/ferrocri.log" &
	daemon=$!
	for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
}

bench_cleanup() {
	trap - EXIT INT TERM
	kill -0 "$daemon" 2>/dev/null || bench_start_daemon
	local removed=1
	crictl --runtime-endpoint "unix://$sock" --timeout 120s rmp --force --all >/dev/null 2>&1 ||
		removed=0
	kill -TERM "$daemon" 2>/dev/null
	wait "$daemon" 2>/dev/null
	if [ "$removed" = 0 ]; then
		# The folder holds the records that name what is left (cgroups, IP leases, pins):
		# deleting it would leave those for good. A daemon started on it again removes them.
		echo "bench: removing the pods failed; kept $work (see ferrocri.log there); finish with:" >&2
		echo "  $bin/ferrocri --config $work/config.toml & crictl -r unix://$sock rmp -fa" >&2
	elif grep -q "$work" /proc/self/mountinfo || pgrep -f "$work" >/dev/null; then
		echo "bench: mounts or processes left under $work:" >&2
		grep "$work" /proc/self/mountinfo >&2
		pgrep -af "$work" >&2
	else
		[ -n "${BENCH_KEEP_LOG:-}" ] && cp "$work/ferrocri.log" "$BENCH_KEEP_LOG"
		rm -rf "$work"
	fi
}

bench_start_daemon
trap bench_cleanup EXIT
trap 'exit 130' INT TERM
