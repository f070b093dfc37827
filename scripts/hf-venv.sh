# Installs Hugging Face transformers, tokenizers and PEFT, and what `import torch` needs, into
# the .libtorch venv that scripts/env.sh creates (torch itself is there already, installed without
# its dependencies for the Rust build). Tests that compare against transformers run this, then
# use .libtorch/bin/python. Idempotent (a marker file per set of pins), quiet, safe to run from
# several processes at once (flock). Source it or run it.
#
# Why all of torch's dependencies: PyPI's Linux torch wheel is the CUDA build, and its Python
# module links the CUDA libraries (cuBLAS, cuDNN, NCCL, ...) even to run on the CPU, so
# `import torch` needs them installed: about 3 GB, once per machine. The Rust build links only
# libtorch's CPU part and never loads them.
set -euo pipefail
hf_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=env.sh
source "$hf_root/scripts/env.sh" >&2
hf_venv="$hf_root/.libtorch"
# The pins that were tested together: transformers 5.24.0 with tokenizers 0.23.3 and PEFT
# 0.21.2 (with accelerate 1.15.0, which PEFT imports) on torch 2.13.0 (the version
# scripts/env.sh installs). The marker's name hashes the pins, so a venv made before a pin was
# added or changed installs again.
hf_pins=(
    "torch==2.13.0"
    "transformers==5.24.0"
    "tokenizers==0.23.3"
    "peft==0.21.2"
    "accelerate==1.15.0"
    "psutil==7.2.2"
    "typing_extensions==4.16.0"
    "sympy==1.14.0"
    "networkx==3.6.1"
    "jinja2==3.1.6"
    "fsspec==2026.9.0"
    "filelock==4.3.1"
    "numpy==2.4.6"
)
hf_marker="$hf_venv/.hf-installed-$(printf '%s\n' "${hf_pins[@]}" | sha256sum | cut -c1-16)"
if [ ! -f "$hf_marker" ]; then
    exec 9>"$hf_venv/.hf-install.lock"
    flock 9
    if [ ! -f "$hf_marker" ]; then
        echo "installing transformers and torch's Python dependencies into $hf_venv (once) ..." >&2
        hf_log="$hf_venv/.hf-install.log"
        if ! "$hf_venv/bin/pip" install --quiet --disable-pip-version-check --progress-bar off \
            "${hf_pins[@]}" >"$hf_log" 2>&1; then
            cat "$hf_log" >&2
            echo "scripts/hf-venv.sh: pip install failed (log: $hf_log)" >&2
            exit 1
        fi
        "$hf_venv/bin/python" -c 'import torch, transformers, tokenizers, peft' >&2
        touch "$hf_marker"
    fi
    flock -u 9
    exec 9>&-
fi
export HF_PYTHON="$hf_venv/bin/python"
