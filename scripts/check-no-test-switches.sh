#!/usr/bin/env bash
# Checks that a `bastion` binary built without test switches (as `./run.sh` and release builds
# are) has none: the wire tap's variable makes it refuse to start, and a config naming a
# test-only setting is refused as unknown. Usage: scripts/check-no-test-switches.sh BINARY
set -uo pipefail
bin="$1"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
fail() { echo "check-no-test-switches: $*" >&2; exit 1; }

printf 'name = "n"\nstate_dir = "%s/state"\n' "$work" > "$work/plain.toml"
out="$(BASTION_DANGER_WIRE_TAP_FOR_TESTS="$work/tap" timeout 60 "$bin" node --config "$work/plain.toml" 2>&1)"
[ $? -ne 0 ] || fail "the binary started with the wire tap variable set"
grep -q "release build without test switches" <<<"$out" || fail "no clear refusal of the tap: $out"
[ ! -e "$work/tap" ] || fail "the tap directory was written"

for switch in 'danger_allow_unnoised_plans_for_tests = true' '[job]
danger_deterministic_for_tests = true'; do
    printf 'name = "n"\nstate_dir = "%s/state"\n%s\n' "$work" "$switch" > "$work/switch.toml"
    out="$(timeout 60 "$bin" node --config "$work/switch.toml" 2>&1)"
    [ $? -ne 0 ] || fail "the binary accepted a config with: $switch"
    grep -q "unknown field" <<<"$out" || fail "no unknown-field refusal for $switch: $out"
done
echo "check-no-test-switches: $bin has no test switches (3 refusals checked)"
