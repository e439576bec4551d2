#!/usr/bin/env bash
# The whole test suite (README command 2; .ci/run calls it). Run as root on Debian 12:
# installs what it needs, then formatting, lints, unit and integration tests against
# the real daemon, a crictl smoke test, a Python gRPC client, the critest conformance suite,
# a real kubelet running static pods, the image builder matrix, and critest's image,
# container and security-context specs again on the test images written by umoci.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$HOME/.cargo/bin:/usr/local/go/bin:$PATH

step() { echo "=== $* ($(date +%T))"; }

step "install dependencies"
hack/install-deps.sh

step "cargo fmt"
cargo fmt --all -- --check
step "cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
step "layer order (ARCHITECTURE.md, Layers)"
hack/check-layers.py
step "local registry and test images"
hack/registry.sh start
hack/build-test-images.sh
# The matrix images (one per builder) are inputs of cargo test's image volume tests and of
# the kubelet e2e, so the matrix runs first.
step "cargo build"
cargo build --locked
step "image builder matrix (Docker, buildah, podman, umoci, crane, ko, skopeo; trees checked against containerd)"
hack/image-matrix.sh
step "cargo test"
cargo test --locked 2>&1 | tee /tmp/ferrocri-cargo-test.out
step "crictl smoke test"
hack/crictl-smoke.sh target/debug/ferrocri
step "Debian package (release build, lintian, apt install, crictl info, a pod, remove, purge)"
hack/package-test.sh
step "gRPC clients (Python grpcio with default options)"
hack/grpc-clients.sh target/debug/ferrocri
step "soak (50 pod cycles, a daemon SIGKILL every 20)"
JOBS=2 KILL_EVERY=20 PHASE=25 hack/soak.sh 50 target/debug/ferrocri
step "critest (streaming over SPDY)"
hack/critest.sh
# The transport flags change only the Streaming specs.
step "critest (streaming over WebSocket)"
hack/critest.sh -ginkgo.focus Streaming -websocket-exec -websocket-attach -websocket-portforward
# A real kubelet v1.36 (standalone, static pods) on a private ferrocri: one pass with the
# default feature gates, one with EventedPLEG + PodAndContainerStatsFromCRI (container events,
# CRI stats and metrics).
step "kubelet e2e (kubelet v1.36.3, static pods, default and evented/CRI-stats gates)"
hack/kubelet-e2e.sh --gates both
# The same critest image set written by a second tool: the image, container and
# security-context specs and the smoke test must pass with umoci's layers, configs and
# manifests too. The default set is put back afterwards, pass or fail (a later build.py
# run would re-push it anyway).
step "critest and crictl smoke test with the test images written by umoci"
second=0
FERROCRI_TEST_IMAGE_BUILDER=umoci hack/critest.sh \
	-ginkgo.focus '\[k8s\.io\] (Image Manager|Image Consistency|Image Identifier|Container runtime|Container Mount|Security Context)' || second=1
hack/crictl-smoke.sh target/debug/ferrocri || second=1
step "restore the default test images"
hack/build-test-images.sh >/dev/null
[ "$second" = 0 ]
