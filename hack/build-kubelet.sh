#!/usr/bin/env bash
# Builds the upstream kubelet (a test tool for hack/kubelet-e2e.sh; ferrocri does not ship it)
# from the Go module proxy and caches the binary; a second run with the same version only
# prints its path.
#   hack/build-kubelet.sh        prints the path of the cached kubelet binary
# Env: KUBE_VERSION (default v1.36.3), FERROCRI_TOOLS (cache, default /var/cache/ferrocri-tools).
# k8s.io/kubernetes cannot be `go install`ed: its go.mod replaces the staging modules
# (k8s.io/api, k8s.io/client-go, ...) at v0.0.0 with ./staging paths. So a throw-away wrapper
# module requires it and replaces each staging module with its published v0.<minor>.<patch>.
# About 13 minutes on 2 cores and ~2 GiB of module cache the first time.
set -euo pipefail
export PATH=/usr/local/go/bin:$PATH

KUBE_VERSION=${KUBE_VERSION:-v1.36.3}
TOOLS=${FERROCRI_TOOLS:-/var/cache/ferrocri-tools}
out=$TOOLS/kubelet-$KUBE_VERSION/kubelet
log() { echo "[build-kubelet] $*" >&2; }

if [ -x "$out" ] && "$out" --version 2>/dev/null | grep -x "Kubernetes $KUBE_VERSION" >/dev/null; then
	echo "$out"
	exit 0
fi

# v1.36.3 -> the staging modules' v0.36.3
staging_version=v0.${KUBE_VERSION#v1.}
work=$(mktemp -d /tmp/ferrocri-kubelet-build.XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work"
export GOFLAGS=-mod=mod GOTOOLCHAIN=local
t0=$SECONDS

go mod init ferrocri.test/kubelet-build >/dev/null 2>&1
gomod=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\?$/\1/p')
[ -f "$gomod" ] || {
	log "no go.mod for k8s.io/kubernetes@$KUBE_VERSION from the module proxy"
	exit 1
}
{
	echo "require k8s.io/kubernetes $KUBE_VERSION"
	# Every staging module the kubernetes go.mod points at ./staging.
	grep -oE '^[[:space:]]*k8s\.io/[a-z0-9-]+ => \./staging/' "$gomod" | awk '{print $1}' | sort -u |
		while read -r m; do echo "replace $m => $m $staging_version"; done
	# Kubernetes pins some GODEBUG defaults in its go.mod; the binary should behave the same.
	grep -E '^godebug' "$gomod" || true
} >>go.mod
# The go directive must not be older than the one kubernetes asks for.
kgo=$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$gomod")
[ -n "$kgo" ] && go mod edit -go="$kgo"

log "resolving k8s.io/kubernetes@$KUBE_VERSION (staging modules at $staging_version)"
go get "k8s.io/kubernetes/cmd/kubelet@$KUBE_VERSION" >&2
mkdir -p "$(dirname "$out")"
log "building kubelet $KUBE_VERSION"
CGO_ENABLED=0 go build -trimpath -tags selinux,notest,grpcnotrace \
	-ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitTreeState=clean" \
	-o "$out.tmp" k8s.io/kubernetes/cmd/kubelet
mv "$out.tmp" "$out"
log "built in $((SECONDS - t0))s: $("$out" --version)"
echo "$out"
