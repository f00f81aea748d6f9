#!/usr/bin/env bash
# Create .venv (if missing) and install mrisynth into it; $1 names extra extras (e.g. `test`).
#
# Torch comes first and pinned, and the build is chosen here, saying which and why:
# - MRISYNTH_TORCH set: those pip arguments, as given
#   (e.g. MRISYNTH_TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128");
# - an NVIDIA driver (nvidia-smi works, or /proc/driver/nvidia exists): PyPI's torch==2.13.0,
#   which on Linux is the CUDA build (several GB with its nvidia-* packages);
# - otherwise the CPU build from PyTorch's CPU wheel index (about 200 MB); when that index
#   cannot be reached (an offline mirror, a proxy), plain torch==2.13.0 from the configured
#   indexes, with a note: on Linux that is the CUDA build unless a local mirror offers the CPU one.
# MRISYNTH_INSTALL_DRY_RUN=1 prints the choice and the pip commands and installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
PIN="torch==2.13.0"
CPU_INDEX=${MRISYNTH_TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}
NVIDIA_PROC=${MRISYNTH_NVIDIA_PROC:-/proc/driver/nvidia}

has_nvidia_driver() {
    { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; } || [ -e "$NVIDIA_PROC" ]
}

index_reachable() {  # the index page of torch answers (10 s at most)
    "$PY" - "$1/torch/" <<'EOF' >/dev/null 2>&1
import os, sys, urllib.parse, urllib.request
url = urllib.parse.urlparse(sys.argv[1])
if url.scheme == "file":  # a local mirror (a folder per project)
    sys.exit(not os.path.isdir(urllib.request.url2pathname(url.path)))
urllib.request.urlopen(sys.argv[1], timeout=10).close()
EOF
}

# The interpreter that will run mrisynth: an existing .venv's, or the one that makes it.
if [ -x .venv/bin/python ]; then VPY=.venv/bin/python; else VPY=$PY; fi
if ! command -v "$VPY" >/dev/null 2>&1; then
    echo "Error: $VPY not found; install Python >= 3.11 or set PYTHON=/path/to/python3.11" >&2
    exit 1
fi
if ! "$VPY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then
    FIX="run again with PYTHON=python3.11 (or newer)"
    [ "$VPY" = "$PY" ] || FIX="delete .venv and $FIX"
    echo "Error: mrisynth needs Python >= 3.11, $VPY is $("$VPY" --version 2>&1); $FIX" >&2
    exit 1
fi

if [ -n "${MRISYNTH_TORCH:-}" ]; then
    TORCH=$MRISYNTH_TORCH
    echo "torch: $TORCH (from MRISYNTH_TORCH)"
elif has_nvidia_driver; then
    TORCH=$PIN
    echo "torch: $TORCH from PyPI, the CUDA build (an NVIDIA driver is present)"
elif index_reachable "$CPU_INDEX"; then
    TORCH="$PIN --index-url $CPU_INDEX"
    echo "torch: $PIN, the CPU build from $CPU_INDEX (no NVIDIA driver found)"
else
    TORCH=$PIN
    echo "torch: $PIN from the configured pip indexes (no NVIDIA driver found, but $CPU_INDEX" \
        "cannot be reached; on Linux PyPI's build is the CUDA one unless your mirror has the CPU" \
        "build; set MRISYNTH_TORCH to choose)"
fi

EXTRAS="codecs${1:+,$1}"
if [ "${MRISYNTH_INSTALL_DRY_RUN:-0}" = 1 ]; then
    echo "would run: .venv/bin/python -m pip install -q $TORCH"
    echo "would run: .venv/bin/python -m pip install -q -e .[$EXTRAS]"
    exit 0
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# shellcheck disable=SC2086  # TORCH holds several pip arguments
.venv/bin/python -m pip install -q $TORCH
.venv/bin/python -m pip install -q -e ".[$EXTRAS]"
