#!/usr/bin/env bash
# The GPU check of psal in one go (under 8 minutes on one GPU): install, the CUDA tests,
# then benchmarks/gpu.py (engine, attention, DeepFill step at 256² to 2048²): one table.
# Without a CUDA device it says so and exits 0. Offline: torch must already be installed.
#   bash benchmarks/gpu.sh            # on the GPU machine, from the repository root
#   PSAL_GPU_DRY_RUN=1 bash benchmarks/gpu.sh   # CPU: the same steps on tiny maps
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
if [ "${PSAL_GPU_DRY_RUN:-0}" = 1 ]; then
    DEVICE=cpu; EXTRA=(--quick); TESTS=(tests/patchmatch/test_patchmatch.py -k "device")
else
    if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
        echo "gpu.sh: no CUDA device here: skipping (PSAL_GPU_DRY_RUN=1 runs the CPU dry run)"
        exit 0
    fi
    DEVICE=cuda; EXTRA=(); TESTS=(tests/patchmatch tests/layers)
    "$PY" -c "import torch; print('GPU:', torch.cuda.get_device_name(0), 'torch', torch.__version__)"
fi
if [ "$DEVICE" = cuda ]; then  # the dry run leaves the local installation alone
    echo "== install"
    "$PY" -m pip install -q --no-deps --no-build-isolation -e . 2>/dev/null \
        || echo "gpu.sh: pip install failed (offline?); running from src/"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
echo "== tests (${TESTS[*]})"
timeout 240 "$PY" -m pytest -q -x -p no:cacheprovider "${TESTS[@]}"
echo "== benchmarks on $DEVICE"
timeout 300 "$PY" benchmarks/gpu.py --device "$DEVICE" "${EXTRA[@]}"
