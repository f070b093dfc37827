#!/usr/bin/env bash
# The main job: three hospitals train the ResNet cancer example together, each on its own node
# (a local process on the simulated TEE, attested by the others), with DP-SGD and a durable
# privacy ledger. Prints the job report (test accuracy, epsilon per dataset).
# Extra arguments go to `bastion cluster up` (see `--help`); the state lands in ./bastion-cluster.
source "$(dirname "$0")/scripts/env.sh"
cargo build --release --locked -p bastion-runtime --bin bastion
exec target/release/bastion cluster up --nodes 3 --fresh "$@"
