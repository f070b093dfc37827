#!/usr/bin/env bash
# The GPU path on a machine with an NVIDIA GPU: builds against CUDA libtorch, runs the GPU
# tests (the `#[ignore]`d ones included), one `bastion train --device cuda:0` and the DP step
# bench on cuda:0, and prints one JSON line per result on stdout (build and test output goes
# to log files, named on stderr). Exits non-zero if anything failed.
#
#   deploy/gpu-check.sh            # from the repository root, or anywhere
#
# Needs: the NVIDIA driver (nvidia-smi), Rust, Python 3 with venv and pip, about 5 GB of disk
# for CUDA PyTorch 2.13.0 from PyPI (into .libtorch-cuda/, once) and the CUDA build
# (target-cuda/). The CPU build in .libtorch/ and target/ is left alone.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
torch_version="2.13.0"
venv="$root/.libtorch-cuda"
work="$root/target-cuda/gpu-check"
failures=0

# One JSON object per line: json KEY VALUE [KEY VALUE ...]; a value that parses as JSON
# (numbers, objects) is kept as such, anything else is a string.
json() {
    python3 - "$@" <<'PY'
import json, sys
args = sys.argv[1:]
out = {}
for key, value in zip(args[::2], args[1::2]):
    try:
        out[key] = json.loads(value)
    except ValueError:
        out[key] = value
print(json.dumps(out), flush=True)
PY
}

fail() {
    json check gpu-check status fail reason "$1"
    echo "gpu-check: $1" >&2
    exit 1
}

# 1. A GPU, before downloading anything.
command -v nvidia-smi >/dev/null ||
    fail "nvidia-smi not found: this machine has no NVIDIA driver (and probably no NVIDIA GPU); the GPU path cannot run here"
nvidia-smi -L >/dev/null 2>&1 || fail "nvidia-smi finds no GPU: $(nvidia-smi -L 2>&1 | head -n 1)"
command -v cargo >/dev/null || fail "cargo not found: install Rust first (rustup.rs)"
mkdir -p "$work"
echo "gpu-check: logs in $work" >&2

# 2. What the machine is.
while IFS=, read -r index name driver memory capability; do
    json kind gpu index "$index" name "${name# }" driver "${driver# }" \
        memory "${memory# }" compute_capability "${capability# }"
done < <(nvidia-smi --query-gpu=index,name,driver_version,memory.total,compute_cap \
    --format=csv,noheader)
# Confidential-computing mode (H100 and later): whether GPU memory and transfers are
# protected from the host. "unknown" where the driver has no such query.
cc="$(nvidia-smi conf-compute -f 2>/dev/null | tr -s ' \n' ' ' | sed 's/ $//' || true)"
json kind gpu_confidential_computing state "${cc:-unknown}"

# 3. CUDA libtorch: PyPI's torch wheel for Linux is the CUDA build; its dependencies bring
# the CUDA runtime, cuDNN, cuBLAS and NCCL libraries that libtorch_cuda loads.
find_torch() {
    for dir in "$venv"/lib/python3*/site-packages/torch; do
        if [ -d "$dir" ]; then echo "$dir"; return; fi
    done
}
if [ ! -f "$venv/.installed-$torch_version" ]; then
    echo "gpu-check: installing CUDA torch $torch_version into $venv (several GB) ..." >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "torch==$torch_version" \
        >"$work/pip.log" 2>&1 || fail "pip install torch==$torch_version failed: see $work/pip.log"
    touch "$venv/.installed-$torch_version"
fi
torch_dir="$(find_torch)"
[ -n "$torch_dir" ] || fail "no torch package in $venv; delete $venv and run again"
[ -f "$torch_dir/lib/libtorch_cuda.so" ] ||
    fail "$torch_dir/lib has no libtorch_cuda.so: the installed torch is a CPU-only build"
export LIBTORCH="$torch_dir"
export CARGO_TARGET_DIR="$root/target-cuda"
json kind libtorch path "$LIBTORCH" \
    version "$("$venv/bin/python" -c 'import torch; print(torch.__version__)' 2>/dev/null || echo unknown)"
# cudarc (the NCCL test) opens libnccl.so by that name; PyPI ships libnccl.so.2.
nccl_dir="$work/nccl-lib"
mkdir -p "$nccl_dir"
for lib in "$torch_dir"/../nvidia/nccl/lib/libnccl.so*; do
    [ -e "$lib" ] && ln -sf "$lib" "$nccl_dir/libnccl.so"
done

# 4. Tests. Each `test NAME ... ok|FAILED|ignored` line becomes one JSON line.
run_tests() { # LABEL CARGO-ARGS...
    local label="$1" log
    shift
    log="$work/$label.log"
    echo "gpu-check: $label: cargo $*" >&2
    local status=0
    cargo "$@" >"$log" 2>&1 || status=$?
    local seen=0
    while read -r name result; do
        seen=$((seen + 1))
        json kind test suite "$label" name "$name" status "$result"
        [ "$result" = ok ] || [ "$result" = ignored ] || failures=$((failures + 1))
    done < <(sed -n 's/^test \(.*\) \.\.\. \(ok\|FAILED\|ignored\).*/\1 \2/p' "$log")
    if [ "$status" -ne 0 ] && [ "$seen" -eq 0 ]; then
        json kind test suite "$label" name build status FAILED log "$log"
        failures=$((failures + 1))
    fi
}

# The device tests, GPU ones included, with libtorch's CUDA library linked (feature cuda).
run_tests actors-devices test -p bastion-actors --features cuda --test devices -- --include-ignored
# NCCL across this machine's GPUs against the host sum.
LD_LIBRARY_PATH="$nccl_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
    run_tests collective-nccl test -p bastion-collective --features nccl --test nccl -- --include-ignored
# Everything else of the Trainer's crate with CUDA linked (device = "cpu" unchanged).
run_tests actors-all test -p bastion-actors --features cuda

# 5. A whole job on cuda:0: node, Trainer, ledger, noise on the host, release.
echo "gpu-check: bastion train --device cuda:0" >&2
if cargo build -p bastion-runtime --features cuda --bin bastion >"$work/build-bastion.log" 2>&1; then
    started=$SECONDS
    if "$CARGO_TARGET_DIR/debug/bastion" train --device cuda:0 --fresh --dir "$work/train" \
        --records 256 --epochs 1 --max-steps 4 --threads 4 >"$work/train.log" 2>&1; then
        status=ok
    else
        status=FAILED
        failures=$((failures + 1))
    fi
    json kind train device cuda:0 status "$status" \
        seconds "$((SECONDS - started))" log "$work/train.log"
else
    json kind train device cuda:0 status FAILED reason build log "$work/build-bastion.log"
    failures=$((failures + 1))
fi

# 6. The DP step bench on cuda:0: its JSON rows, one line each.
echo "gpu-check: cargo bench -p bastion-models --bench dp_step -- --json --device cuda:0" >&2
if cargo bench -p bastion-models --features cuda --bench dp_step -- --json --device cuda:0 \
    >"$work/bench.out" 2>"$work/bench.log"; then
    while read -r row; do
        json kind bench device cuda:0 row "$row"
    done < <(grep '^{' "$work/bench.out")
else
    json kind bench device cuda:0 status FAILED log "$work/bench.log"
    failures=$((failures + 1))
fi

json kind summary failures "$failures"
[ "$failures" -eq 0 ]
