#!/usr/bin/env bash
# Builds containerd 2.4.2 + runc 1.5.3 (the benchmark peer and differential oracle for
# hack/bench-compare.sh; ferrocri does not ship them) from the Go module proxy with upstream's
# own go.mod, and caches the binaries; a second run with the same versions only prints the
# directory. About 6 minutes on 2 idle cores the first time.
#   hack/build-containerd.sh     prints the directory holding containerd, ctr,
#                                containerd-shim-runc-v2 and runc
# Env: CONTAINERD_VERSION (v2.4.2), RUNC_VERSION (v1.5.3), FERROCRI_TOOLS (cache,
# default /var/cache/ferrocri-tools).
set -euo pipefail
export PATH=/usr/local/go/bin:$PATH

CONTAINERD_VERSION=${CONTAINERD_VERSION:-v2.4.2}
RUNC_VERSION=${RUNC_VERSION:-v1.5.3}
TOOLS=${FERROCRI_TOOLS:-/var/cache/ferrocri-tools}
dir=$TOOLS/containerd-$CONTAINERD_VERSION-runc-$RUNC_VERSION
log() { echo "[build-containerd] $*" >&2; }

if [ -x "$dir/containerd" ] && [ -x "$dir/runc" ] && [ -x "$dir/containerd-shim-runc-v2" ] &&
	"$dir/containerd" --version 2>/dev/null | grep " $CONTAINERD_VERSION " >/dev/null; then
	echo "$dir"
	exit 0
fi

if ! dpkg-query -W -f='${Status}' libseccomp-dev 2>/dev/null | grep '^install ok installed$' >/dev/null; then
	log "installing libseccomp-dev (runc's seccomp support)"
	apt-get update -qq >/dev/null
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libseccomp-dev pkg-config >/dev/null
fi

tmp=$dir.partial
rm -rf "$tmp"
mkdir -p "$tmp"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod
t0=$SECONDS
version="-X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION"
log "containerd $CONTAINERD_VERSION"
GOBIN=$tmp go install -trimpath -tags urfave_cli_no_docs -ldflags "$version -s -w" \
	"github.com/containerd/containerd/v2/cmd/containerd@$CONTAINERD_VERSION" \
	"github.com/containerd/containerd/v2/cmd/ctr@$CONTAINERD_VERSION"
GOBIN=$tmp CGO_ENABLED=0 go install -trimpath -tags "urfave_cli_no_docs no_grpc" -ldflags "$version -s -w" \
	"github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION"
log "runc $RUNC_VERSION"
GOBIN=$tmp CGO_ENABLED=1 go install -trimpath -tags "seccomp urfave_cli_no_docs" \
	-ldflags "-X main.version=${RUNC_VERSION#v} -s -w" "github.com/opencontainers/runc@$RUNC_VERSION"
rm -rf "$dir"
mv "$tmp" "$dir"
log "built in $((SECONDS - t0)) s"
echo "$dir"
