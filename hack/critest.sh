#!/usr/bin/env bash
# Runs the CRI conformance suite (critest v1.36.0) against a private ferrocri:
# its own root, state and socket, registry mirrors pointing the upstream hosts at
# the local registry, and the test CNI network. Skips what hack/critest-skip.txt
# lists, stops the daemon, and fails if the daemon left anything behind.
#   hack/critest.sh [extra critest flags...]
# Env: FERROCRI_BIN (default target/debug/ferrocri), CRITEST_PARALLEL (default 2),
# FERROCRI_TEST_IMAGE_BUILDER (umoci: the image set written by umoci, see
# hack/build-test-images.sh), FERROCRI_REGISTRY_ADDR (another registry than 127.0.0.1:5000).
set -euo pipefail

cd "$(dirname "$0")/.."
repo=$PWD
bin=${FERROCRI_BIN:-$repo/target/debug/ferrocri}
parallel=${CRITEST_PARALLEL:-2}
[ -x "$bin" ] || {
	echo "critest.sh: $bin not built (cargo build)" >&2
	exit 1
}

hack/registry.sh start >/dev/null
hack/build-test-images.sh >/dev/null

work=$(mktemp -d /tmp/ferrocri-critest.XXXXXX)
sock=$work/ferrocri.sock
# The mirrors in hack/certs.d point at 127.0.0.1:5000; another FERROCRI_REGISTRY_ADDR gets a copy.
certs=$repo/hack/certs.d
if [ "${FERROCRI_REGISTRY_ADDR:-127.0.0.1:5000}" != 127.0.0.1:5000 ]; then
	cp -r "$certs" "$work/certs.d"
	sed -i "s/127\.0\.0\.1:5000/$FERROCRI_REGISTRY_ADDR/" "$work"/certs.d/*/hosts.toml
	certs=$work/certs.d
fi
cat >"$work/config.toml" <<EOF
root_dir = "$work/root"
state_dir = "$work/state"
socket = "$sock"
[log]
level = "debug"
[cni]
conf_dir = "$repo/hack/cni"
bin_dirs = ["/usr/lib/cni", "/opt/cni/bin"]
[registry]
config_dir = "$certs"
EOF

"$bin" --config "$work/config.toml" 2>"$work/ferrocri.log" &
daemon=$!

stop_daemon() {
	if kill -0 "$daemon" 2>/dev/null; then
		kill -TERM "$daemon"
		wait "$daemon" || echo "critest.sh: ferrocri exited with $?" >&2
	fi
}
trap 'stop_daemon' EXIT

for _ in $(seq 100); do
	crictl -r "unix://$sock" version >/dev/null 2>&1 && break
	kill -0 "$daemon" 2>/dev/null || {
		cat "$work/ferrocri.log" >&2
		exit 1
	}
	sleep 0.1
done

# The skip list: "<spec text> | <reason>" per line; the text is the end of the
# ginkgo spec name, so it is regex-escaped and anchored at the end here.
skip=$(grep -v -e '^#' -e '^[[:space:]]*$' hack/critest-skip.txt |
	sed -e 's/[[:space:]]*|.*$//' -e 's/[][\\.^$*+?(){}|/]/\\&/g' -e 's/$/$/' |
	paste -sd '|')

set +e
# Both endpoints explicitly: critest would otherwise take the image endpoint from a
# /etc/crictl.yaml on this machine.
critest -runtime-endpoint "unix://$sock" -image-endpoint "unix://$sock" -parallel "$parallel" \
	-ginkgo.skip "${skip:-^$}" -ginkgo.no-color "$@" 2>&1 | tee "$work/critest.out"
status=${PIPESTATUS[0]}
set -e

stop_daemon
trap - EXIT

# Nothing of this daemon may outlive it: mounts under its folders, processes
# started from its config, network namespaces or cgroups named after it.
leaks=$(grep -c "$work" /proc/self/mountinfo || true)
procs=$(pgrep -f "$work" | grep -v "^$$\$" || true)
if [ "$leaks" -gt 0 ] || [ -n "$procs" ]; then
	echo "critest.sh: ferrocri left $leaks mounts and processes [$procs] behind" >&2
	status=1
fi

# One closing line that CI reads, from ginkgo's own summary.
summary=$(grep -E '^(SUCCESS|FAIL)! -- ' "$work/critest.out" | tail -1)
passed=$(sed -n 's/.* \([0-9]*\) Passed.*/\1/p' <<<"$summary")
failed=$(sed -n 's/.* \([0-9]*\) Failed.*/\1/p' <<<"$summary")
skipped=$(sed -n 's/.* \([0-9]*\) Skipped.*/\1/p' <<<"$summary")
if [ "$status" != 0 ]; then
	echo "critest.sh: daemon log kept in $work/ferrocri.log" >&2
else
	rm -rf "$work"
fi
echo "critest: ${passed:-0} passed, ${failed:-0} failed, ${skipped:-0} skipped"
exit "$status"
