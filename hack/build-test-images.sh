#!/usr/bin/env bash
# Build every image critest v1.36.0 pulls, offline and deterministically, and
# push them to the local registry (hack/registry.sh) under their upstream
# paths, e.g. 127.0.0.1:5000/e2e-test-images/busybox:1.29-2.
#   hack/build-test-images.sh [--bench] [--builder build.py|umoci]
#     --bench    also build 127.0.0.1:5000/ferrocri/bench-large:latest (~105 MiB, 6 layers)
#     --builder  who writes the images from the same staged files: hack/images/build.py
#                itself (the default), or umoci + skopeo (a second tool's layers, configs
#                and manifests; installs Debian's umoci and skopeo when missing). The
#                default may also come from FERROCRI_TEST_IMAGE_BUILDER.
# Needs: hack/install-deps.sh (gcc, libc6-dev, docker-registry, python3, curl).
set -euo pipefail

HACK=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${FERROCRI_TEST_IMAGE_CACHE:-/var/cache/ferrocri-test-images}
REGISTRY=${FERROCRI_REGISTRY_ADDR:-127.0.0.1:5000}
# shellcheck disable=SC2054 # the commas belong to -Wl,
CFLAGS=(-static -Os -s -Wall -Wextra -Wl,--build-id=none)

BENCH=()
BUILDER=${FERROCRI_TEST_IMAGE_BUILDER:-build.py}
while [ $# -gt 0 ]; do
	arg=$1
	shift
	case "$arg" in
	--bench) BENCH=(--bench) ;;
	--builder)
		BUILDER=${1:?--builder needs build.py or umoci}
		shift
		;;
	-h | --help)
		sed -n '2,11p' "$0"
		exit 0
		;;
	*)
		echo "unknown argument: $arg" >&2
		exit 2
		;;
	esac
done

log() { echo "[build-test-images] $*" >&2; }
t0=$SECONDS
case "$BUILDER" in
build.py) ;;
umoci)
	for p in umoci skopeo; do
		command -v "$p" >/dev/null && continue
		log "apt-get install $p"
		{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$p"; } >&2
	done
	;;
*)
	echo "unknown builder: $BUILDER (build.py or umoci)" >&2
	exit 2
	;;
esac
mkdir -p "$CACHE/debs" "$CACHE/bin"

# Starting is a no-op when it already runs.
FERROCRI_REGISTRY_ADDR=$REGISTRY "$HACK/registry.sh" start >&2

# Debian's dynamic busybox: only downloaded, never installed on the host. The
# cached .deb is kept so later runs (and their digests) don't follow Debian updates.
deb=$(find "$CACHE/debs" -maxdepth 1 -name 'busybox_*.deb' | sort | tail -n 1)
if [ -z "$deb" ]; then
	dl() { (cd "$CACHE/debs" && apt-get download -q -o APT::Sandbox::User=root busybox); }
	dl || { apt-get update -q && dl; }
	deb=$(find "$CACHE/debs" -maxdepth 1 -name 'busybox_*.deb' | sort | tail -n 1)
fi
root="$CACHE/busybox-root"
if [ "$(cat "$root.stamp" 2>/dev/null || true)" != "$(basename "$deb")" ]; then
	rm -rf "$root"
	dpkg -x "$deb" "$root"
	basename "$deb" >"$root.stamp"
fi

# Static helpers; rebuilt only when the source, compiler or flags change.
cc_id="$(gcc -dumpfullversion) ${CFLAGS[*]} $(dpkg-query -W -f='${Version}' libc6-dev 2>/dev/null || true)"
for name in procipc nginx nnp pause echo; do
	src="$HACK/images/src/$name.c"
	key=$( (cat "$src" && echo "$cc_id") | sha256sum | cut -d' ' -f1)
	if [ "$(cat "$CACHE/bin/$name.key" 2>/dev/null || true)" != "$key" ] || [ ! -x "$CACHE/bin/$name" ]; then
		gcc "${CFLAGS[@]}" -o "$CACHE/bin/$name.tmp" "$src"
		mv "$CACHE/bin/$name.tmp" "$CACHE/bin/$name"
		echo "$key" >"$CACHE/bin/$name.key"
	fi
done

python3 "$HACK/images/build.py" --busybox-root "$root" --bin "$CACHE/bin" \
	--cache "$CACHE" --registry "$REGISTRY" --builder "$BUILDER" "${BENCH[@]}"
log "done in $((SECONDS - t0))s with $BUILDER (list also in $CACHE/images*.txt)"
