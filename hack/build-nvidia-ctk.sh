#!/bin/sh
# Builds NVIDIA's nvidia-ctk and nvidia-cdi-hook (github.com/NVIDIA/nvidia-container-toolkit)
# from the Go module proxy, once, for tests/cdi.rs: `nvidia-ctk cdi generate --mode=csv`
# writes a real CDI spec from a fake driver root, and the spec's hooks are nvidia-cdi-hook.
# Prints the folder holding both.
set -eu
VERSION=v1.17.8
OUT=${FERROCRI_TOOLS:-/var/cache/ferrocri-tools}/nvidia-ctk-$VERSION
if [ -x "$OUT/nvidia-ctk" ] && [ -x "$OUT/nvidia-cdi-hook" ]; then echo "$OUT"; exit 0; fi
mkdir -p "$OUT"
for cmd in nvidia-ctk nvidia-cdi-hook; do
  GOBIN="$OUT" go install "github.com/NVIDIA/nvidia-container-toolkit/cmd/$cmd@$VERSION" >&2
done
echo "$OUT"
