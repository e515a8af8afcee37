#!/usr/bin/env bash
# The gateway in dev mode (memory store, demo issuer, demo ERP backend) after
# installing what the build needs (cmake). Arguments go to `session-gateway dev`,
# e.g. ./scripts/dev.sh --listen 127.0.0.1:18080
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh build
exec cargo run -p session-gateway -- dev "$@"
