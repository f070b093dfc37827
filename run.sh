#!/usr/bin/env bash
# The main job: DP training of the ResNet cancer example (generated tiles), printing test
# accuracy and epsilon. Extra arguments go to `bastion train` (see `--help`).
source "$(dirname "$0")/scripts/env.sh"
cargo build --release --locked -p bastion-runtime --bin bastion
exec target/release/bastion train "$@"
