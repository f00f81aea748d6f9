#!/usr/bin/env bash
# Create .venv (if missing) and install mrisynth into it. Torch comes first and pinned: an
# unpinned `torch` makes pip fetch a multi-GB CUDA build. Set MRISYNTH_TORCH to choose another
# (e.g. MRISYNTH_TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128").
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# shellcheck disable=SC2086
.venv/bin/python -m pip install -q ${MRISYNTH_TORCH:-torch==2.13.0}
.venv/bin/python -m pip install -q -e ".[codecs${1:+,$1}]"
