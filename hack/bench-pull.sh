#!/usr/bin/env bash
# Pull benchmark: a release ferrocri pulls a 107 MiB image of 6 layers from the local
# registry, several times from a cold store, and prints time, throughput and the daemon's
# peak RSS. Figures, not assertions.
#   hack/bench-pull.sh [runs]      (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$HOME/.cargo/bin:$PATH
runs=${1:-5}
image=docker.io/ferrocri/bench-large:latest

cargo build --release --locked --quiet
hack/registry.sh start >/dev/null
hack/build-test-images.sh --bench >/dev/null

work=$(mktemp -d /tmp/ferrocri-bench-pull.XXXXXX)
sock=$work/ferrocri.sock
cat >"$work/config.toml" <<EOF
root_dir = "$work/root"
state_dir = "$work/state"
socket = "$sock"
[log]
level = "warn"
[registry]
config_dir = "$PWD/hack/certs.d"
EOF
target/release/ferrocri --config "$work/config.toml" 2>"$work/ferrocri.log" &
daemon=$!
trap 'kill -TERM $daemon 2>/dev/null; wait $daemon 2>/dev/null; rm -rf "$work"' EXIT
printf 'runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 600\n' "$sock" "$sock" >"$work/crictl.yaml"
crictl=(crictl -c "$work/crictl.yaml")
for _ in $(seq 100); do "${crictl[@]}" version >/dev/null 2>&1 && break; sleep 0.1; done

size=$(curl -s -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
	http://127.0.0.1:5000/v2/ferrocri/bench-large/manifests/latest |
	jq '[.layers[].size] | add')
echo "image: $image, $((size / 1024 / 1024)) MiB compressed in $(curl -s -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' http://127.0.0.1:5000/v2/ferrocri/bench-large/manifests/latest | jq '.layers | length') layers"
times=()
for i in $(seq "$runs"); do
	"${crictl[@]}" rmi "$image" >/dev/null 2>&1 || true
	# Wait for the garbage collector to empty the store, so every run starts cold.
	for _ in $(seq 100); do
		[ -z "$(ls "$work/root/layers/sha256" 2>/dev/null)" ] && break
		sleep 0.1
	done
	sync
	start=$(date +%s.%N)
	"${crictl[@]}" pull "$image" >/dev/null
	end=$(date +%s.%N)
	t=$(awk -v a="$start" -v b="$end" 'BEGIN {print b - a}')
	times+=("$t")
	printf 'run %d: %.2f s, %.1f MiB/s\n' "$i" "$t" "$(awk -v s="$size" -v t="$t" 'BEGIN {print s / 1048576 / t}')"
done
sorted=$(printf '%s\n' "${times[@]}" | sort -n)
p50=$(sed -n "$(((runs + 1) / 2))p" <<<"$sorted")
printf 'pull p50: %.2f s, %.1f MiB/s over %d runs\n' "$p50" "$(awk -v s="$size" -v t="$p50" 'BEGIN {print s / 1048576 / t}')" "$runs"
echo "daemon peak RSS: $(awk '/VmHWM/ {print $2, $3}' "/proc/$daemon/status"), now: $(awk '/VmRSS/ {print $2, $3}' "/proc/$daemon/status")"
