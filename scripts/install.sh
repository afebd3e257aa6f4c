#!/usr/bin/env bash
# Create .venv and install trial with its test extra.
# torch==2.13.0 resolves to the local CPU wheel where the machine offers one (no multi-GB
# CUDA download on a CPU box) and to PyPI's default build elsewhere; a torch that is
# already installed in the venv is kept, so a CUDA install is never replaced.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
if ! python -c "import torch" 2>/dev/null; then
  pip install --quiet "torch==2.13.0"
fi
pip install --quiet -e ".[test]"
