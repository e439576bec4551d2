#!/usr/bin/env bash
# Install what ferrocri and its tests need on a Debian 12 host (run as root).
#   hack/install-deps.sh                 everything: daemon deps, test deps, crictl, critest, ginkgo
#   hack/install-deps.sh --runtime-only  only what building and running the daemon needs, plus crictl
# Safe to run again: installed packages and binaries of the right version are skipped.
set -euo pipefail

CRI_TOOLS_VERSION=v1.36.0
GINKGO_VERSION=v2.28.1 # the version cri-tools v1.36.0's go.mod requires (needed by critest -parallel)
BINDIR=/usr/local/bin

RUNTIME_ONLY=0
for arg in "$@"; do
	case "$arg" in
	--runtime-only) RUNTIME_ONLY=1 ;;
	-h | --help)
		sed -n '2,5p' "$0"
		exit 0
		;;
	*)
		echo "unknown argument: $arg" >&2
		exit 2
		;;
	esac
done

[ "$(id -u)" = 0 ] || {
	echo "install-deps.sh must run as root" >&2
	exit 1
}

log() { echo "[install-deps] $*"; }

# Daemon runtime: CNI plugins (Debian puts them in /usr/lib/cni), iptables for
# portmap/masquerade, ip for netns setup, nsenter/mount from util-linux, ps/pgrep.
# Building ferrocri links libseccomp (libseccomp-dev brings the library and its link);
# protobuf-compiler is protoc, which the containerd-client crate's build script runs on
# containerd's API (for `ferrocri import containerd`).
PKGS=(containernetworking-plugins iptables iproute2 util-linux procps ca-certificates
	libseccomp-dev pkg-config gcc libc6-dev protobuf-compiler)
if [ "$RUNTIME_ONLY" = 0 ]; then
	# Tests: docker-registry as the offline image source, curl/jq/python3 for the
	# scripts (python3-venv for hack/grpc-clients.sh's grpcio), script(1) to give crictl
	# a terminal, openssl for test certificates (gcc/libc6-dev above also build the
	# static test-image helpers), python3-prometheus-client to read the metrics endpoint
	# with a parser that is not ours; containerd (Debian's 1.6, with ctr) is the source
	# tests/import.rs imports from; dpkg-dev (dpkg-shlibdeps) and lintian for hack/package.sh
	# and hack/package-test.sh.
	PKGS+=(docker-registry curl jq python3 python3-venv bsdutils openssl python3-prometheus-client containerd
		dpkg-dev lintian)
fi

missing=()
for p in "${PKGS[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep '^install ok installed$' >/dev/null; then
		missing+=("$p")
	fi
done
if [ "${#missing[@]}" -gt 0 ]; then
	t0=$SECONDS
	export DEBIAN_FRONTEND=noninteractive
	log "apt-get install: ${missing[*]}"
	apt-get update -q
	apt-get install -y -q --no-install-recommends "${missing[@]}"
	log "apt took $((SECONDS - t0))s"
else
	log "Debian packages already installed"
fi

# Debian's docker-registry package starts a service on :5000 where an init
# system exists; hack/registry.sh runs its own instance, so keep it off.
if [ "$RUNTIME_ONLY" = 0 ] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
	systemctl disable --now docker-registry >/dev/null 2>&1 || true
fi

# --- Go tools ---------------------------------------------------------------
find_go() {
	local g
	for g in "$(command -v go || true)" /usr/local/go/bin/go /usr/lib/go/bin/go; do
		[ -n "$g" ] && [ -x "$g" ] && {
			echo "$g"
			return 0
		}
	done
	return 1
}

# The build honours the tag the binary reports, so "already installed" is a
# string comparison on its version output.
need_crictl=1
if [ -x "$BINDIR/crictl" ] && "$BINDIR/crictl" --version 2>/dev/null | grep -x "crictl version $CRI_TOOLS_VERSION" >/dev/null; then
	need_crictl=0
fi
need_critest=0
need_ginkgo=0
if [ "$RUNTIME_ONLY" = 0 ]; then
	if ! { [ -x "$BINDIR/critest" ] && "$BINDIR/critest" -version 2>/dev/null | grep "critest version: $CRI_TOOLS_VERSION\$"; } >/dev/null; then
		need_critest=1
	fi
	if ! { [ -x "$BINDIR/ginkgo" ] && "$BINDIR/ginkgo" version 2>/dev/null | grep "Version ${GINKGO_VERSION#v}\$"; } >/dev/null; then
		need_ginkgo=1
	fi
fi

if [ $((need_crictl + need_critest + need_ginkgo)) -eq 0 ]; then
	log "crictl/critest/ginkgo already at the wanted versions"
	exit 0
fi

GO=$(find_go) || {
	echo "Go not found (looked on PATH, /usr/local/go/bin, /usr/lib/go/bin); cri-tools $CRI_TOOLS_VERSION needs Go >= 1.26.2" >&2
	exit 1
}
log "using $GO ($("$GO" version))"
# Static, reproducible binaries like the upstream Makefile builds; no VCS stamping
# (module builds have no .git anyway).
export CGO_ENABLED=0 GOFLAGS="-trimpath -buildvcs=false"
LDFLAGS="-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRI_TOOLS_VERSION"

if [ "$need_crictl" = 1 ]; then
	t0=$SECONDS
	GOBIN=$BINDIR "$GO" install -ldflags "$LDFLAGS" "sigs.k8s.io/cri-tools/cmd/crictl@$CRI_TOOLS_VERSION"
	log "crictl $CRI_TOOLS_VERSION built in $((SECONDS - t0))s"
else
	log "crictl $CRI_TOOLS_VERSION already installed"
fi

if [ "$need_critest" = 1 ]; then
	t0=$SECONDS
	# critest is a test binary (cmd/critest has only cri_test.go), so `go install`
	# cannot build it. Build it inside a writable copy of the released module, whose
	# own go.mod/go.sum pin every dependency.
	src=$(cd / && "$GO" mod download -json "sigs.k8s.io/cri-tools@$CRI_TOOLS_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	[ -d "$src" ] || {
		echo "go mod download of cri-tools failed" >&2
		exit 1
	}
	work=$(mktemp -d)
	trap 'rm -rf "$work"' EXIT
	cp -r "$src/." "$work/"
	chmod -R u+w "$work"
	(cd "$work" && "$GO" test -c -ldflags "$LDFLAGS" -o "$BINDIR/critest" ./cmd/critest)
	log "critest $CRI_TOOLS_VERSION built in $((SECONDS - t0))s"
else
	log "critest $CRI_TOOLS_VERSION already installed"
fi

if [ "$need_ginkgo" = 1 ]; then
	t0=$SECONDS
	GOBIN=$BINDIR "$GO" install -ldflags "-s -w" "github.com/onsi/ginkgo/v2/ginkgo@$GINKGO_VERSION"
	log "ginkgo $GINKGO_VERSION built in $((SECONDS - t0))s"
elif [ "$RUNTIME_ONLY" = 0 ]; then
	log "ginkgo $GINKGO_VERSION already installed"
fi
