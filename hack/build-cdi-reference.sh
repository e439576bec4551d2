#!/bin/sh
# Builds hack/cdi-reference (CDI's own Go library resolving devices, for tests/cdi.rs) from
# the Go module proxy, once; prints the binary's path. The version is pinned here.
set -eu
VERSION=v1.1.2
OUT=${FERROCRI_TOOLS:-/var/cache/ferrocri-tools}/cdi-reference-$VERSION
BIN=$OUT/cdi-reference
if [ -x "$BIN" ]; then echo "$BIN"; exit 0; fi
SRC=$(cd "$(dirname "$0")/cdi-reference" && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cp "$SRC/main.go" "$WORK/"
cd "$WORK"
{
  go mod init ferrocri.test/cdi-reference
  go get "tags.cncf.io/container-device-interface@$VERSION"
  go mod tidy
  mkdir -p "$OUT"
  CGO_ENABLED=0 go build -o "$BIN.tmp" .
} >&2
mv "$BIN.tmp" "$BIN"
echo "$BIN"
