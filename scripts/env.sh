# Sourced by run.sh, test.sh and .ci/run: installs libtorch from PyPI into .libtorch/ once
# (idempotent) and exports LIBTORCH for tch's build. Binaries find libtorch through an rpath
# written by each crate's build.rs, so nothing sets LD_LIBRARY_PATH.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.libtorch"
torch_version="2.13.0"
find_torch() { ls -d "$venv"/lib/python3*/site-packages/torch 2>/dev/null | head -n 1; }
torch_dir="$(find_torch || true)"
if [ -z "$torch_dir" ] || [ ! -f "$venv/.installed-$torch_version" ]; then
    echo "setting up libtorch $torch_version (CPU) in $venv ..." >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps \
        "torch==$torch_version" nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85
    torch_dir="$(find_torch)"
    touch "$venv/.installed-$torch_version"
fi
export LIBTORCH="$torch_dir"
cd "$root"
