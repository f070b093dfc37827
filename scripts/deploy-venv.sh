# Installs the deploy tools from PyPI into .deploy-venv/ (gitignored): sev-snp-measure (the
# expected SEV-SNP launch digest of deploy/snp's image) and kubernetes-validate (deploy/k8s's
# manifests against a Kubernetes version's schema). deploy/snp/measure, deploy/k8s/validate
# and runtime/tests/deploy.rs run this first. Idempotent (a marker file per set of pins),
# quiet, safe to run from several processes at once (flock). Source it or run it; sourced, it
# exports DEPLOY_PYTHON and DEPLOY_VENV.
set -euo pipefail
deploy_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
deploy_venv="$deploy_root/.deploy-venv"
# Tested together on Python 3.11. The marker's name hashes the pins, so changing one installs
# again.
deploy_pins=(
    "sev-snp-measure==0.0.13"
    "cryptography==50.0.2"
    "cffi==2.1.1"
    "pycparser==3.12"
    "typing_extensions==4.16.0"
    "kubernetes-validate==1.37.0"
    "jsonschema==4.26.0"
    "jsonschema-specifications==2025.9.1"
    "referencing==0.37.0"
    "rpds-py==2026.9.1"
    "attrs==26.1.0"
    "importlib_resources==7.1.0"
    "packaging==26.4"
    "PyYAML==6.0.4"
)
deploy_marker="$deploy_venv/.installed-$(printf '%s\n' "${deploy_pins[@]}" | sha256sum | cut -c1-16)"
if [ ! -f "$deploy_marker" ]; then
    mkdir -p "$deploy_venv"
    exec 8>"$deploy_venv/.install.lock"
    flock 8
    if [ ! -f "$deploy_marker" ]; then
        echo "installing sev-snp-measure and kubernetes-validate into $deploy_venv (once) ..." >&2
        deploy_log="$deploy_venv/.install.log"
        if ! { python3 -m venv "$deploy_venv" &&
            "$deploy_venv/bin/pip" install --quiet --disable-pip-version-check \
                --progress-bar off "${deploy_pins[@]}"; } >"$deploy_log" 2>&1; then
            cat "$deploy_log" >&2
            echo "scripts/deploy-venv.sh: pip install failed (log: $deploy_log)" >&2
            exit 1
        fi
        "$deploy_venv/bin/python" -c 'import sevsnpmeasure, kubernetes_validate, yaml' >&2
        touch "$deploy_marker"
    fi
    flock -u 8
    exec 8>&-
fi
export DEPLOY_VENV="$deploy_venv"
export DEPLOY_PYTHON="$deploy_venv/bin/python"
