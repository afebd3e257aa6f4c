#!/usr/bin/env bash
# README command 2: install, then run every test (unit, integration with real Ray, e2e CLI).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
. .venv/bin/activate
python -m pytest -q "$@"
