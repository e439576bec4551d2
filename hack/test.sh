#!/usr/bin/env bash
# The whole test suite (README command 2; .ci/run calls it). Run as root on Debian 12:
# installs what it needs, then formatting, lints, unit and integration tests against
# the real daemon, a crictl smoke test, a Python gRPC client and the critest conformance suite.
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
step "local registry and test images"
hack/registry.sh start
hack/build-test-images.sh
step "cargo test"
cargo test --locked 2>&1 | tee /tmp/ferrocri-cargo-test.out
step "crictl smoke test"
hack/crictl-smoke.sh target/debug/ferrocri
step "gRPC clients (Python grpcio with default options)"
hack/grpc-clients.sh target/debug/ferrocri
step "critest (streaming over SPDY)"
hack/critest.sh
# The transport flags change only the Streaming specs.
step "critest (streaming over WebSocket)"
hack/critest.sh -ginkgo.focus Streaming -websocket-exec -websocket-attach -websocket-portforward
