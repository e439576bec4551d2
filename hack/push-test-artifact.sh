#!/usr/bin/env bash
# Pushes the OCI artifact tests/image_volumes.rs mounts, written by ORAS (not by us): two
# titled text files (greeting.txt, conf/app.ini), artifact type
# application/vnd.ferrocri.test.v1, the empty config, to <registry>/ferrocri-imgvol/artifact:1.
# ORAS (oras.land/oras) is built once from the Go module proxy and cached. Same bytes on every
# run (fixed creation time), so the digest is stable.
#   hack/push-test-artifact.sh     Env: FERROCRI_REGISTRY_ADDR (127.0.0.1:5000),
#                                  ORAS_VERSION (v1.3.6), FERROCRI_TOOLS (cache dir)
set -euo pipefail
export PATH=/usr/local/go/bin:$PATH
REGISTRY=${FERROCRI_REGISTRY_ADDR:-127.0.0.1:5000}
ORAS_VERSION=${ORAS_VERSION:-v1.3.6}
dir=${FERROCRI_TOOLS:-/var/cache/ferrocri-tools}/oras-$ORAS_VERSION
if ! [ -x "$dir/oras" ]; then
	echo "[push-test-artifact] building oras $ORAS_VERSION (once)" >&2
	mkdir -p "$dir"
	GOFLAGS=-mod=mod GOBIN=$dir go install "oras.land/oras/cmd/oras@$ORAS_VERSION" >&2
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/conf"
printf 'hello from oras\n' >"$work/greeting.txt"
printf 'a=1\n' >"$work/conf/app.ini"
cd "$work"
"$dir/oras" push --plain-http --no-tty --artifact-type application/vnd.ferrocri.test.v1 \
	--annotation org.opencontainers.image.created=2024-01-01T00:00:00Z \
	"$REGISTRY/ferrocri-imgvol/artifact:1" greeting.txt:text/plain conf/app.ini:text/plain >&2
