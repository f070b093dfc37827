#!/usr/bin/env bash
# Every test of the workspace. Sets up libtorch and Prometheus (for the metrics tests) on first use.
source "$(dirname "$0")/scripts/env.sh"
"$(dirname "$0")/scripts/prometheus.sh" >&2
cargo test --workspace --locked "$@"
