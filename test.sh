#!/usr/bin/env bash
# Every test of the workspace. Sets up libtorch on first use.
source "$(dirname "$0")/scripts/env.sh"
cargo test --workspace --locked "$@"
