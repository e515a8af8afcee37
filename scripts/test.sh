#!/usr/bin/env bash
# The full test suite (unit tests, the store contract suite, end-to-end tests
# with real processes) after installing what it needs (cmake, redis-server).
# Arguments go to `cargo test --workspace`, e.g. ./scripts/test.sh -p session-gateway-tests
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh all
exec cargo test --workspace "$@"
