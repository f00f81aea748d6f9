#!/usr/bin/env bash
# Install mrisynth with its test extras into .venv, lint, and run the whole test suite on CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh test
.venv/bin/ruff check .
.venv/bin/python -m pytest -q -n 2 --dist loadgroup "$@"
