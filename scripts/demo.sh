#!/usr/bin/env bash
# Install mrisynth into .venv and run the whole pipeline on built-in phantom data.
# Arguments go to `mrisynth demo` (e.g. --quick, --kimg 8); a first one that is not an option
# is the output folder (default demo-out), as in `bash scripts/demo.sh my-demo --quick`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
    set -- --outdir "$@"
fi
.venv/bin/mrisynth demo "$@"
