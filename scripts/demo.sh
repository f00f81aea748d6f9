#!/usr/bin/env bash
# Install mrisynth into .venv and run the whole pipeline on built-in phantom data.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
.venv/bin/mrisynth demo --outdir "${1:-demo-out}"
