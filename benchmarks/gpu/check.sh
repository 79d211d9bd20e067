#!/usr/bin/env bash
# The one command to run on the GPU machine, with .gpu-kit carried (benchmarks/gpu/prepare.sh
# builds it here):
#
#   bash benchmarks/gpu/check.sh OUT_DIR            # within 9 minutes on one H200
#   bash benchmarks/gpu/check.sh --smoke OUT_DIR    # on the CPU here, tiny dimensions
#
# Installs the kit's wheels into a temporary folder (no network there: --no-index, and
# --no-deps because the image already has torch, transformers, numba, tiktoken, onnxruntime,
# nvidia-ml-py, psutil, aiofiles), then runs `pytest -m gpu` on its own 90 s budget and
# benchmarks/gpu/check.py, which runs each measured part on its own budget and writes
# OUT_DIR/gpu.md and OUT_DIR/gpu.json. --smoke skips pytest -m gpu and runs tiny dimensions
# on the CPU; it installs the kit too when there is one for this Python (3.12), and
# otherwise uses the current environment as it is (CI has no kit).
set -euo pipefail

SMOKE=""
if [[ "${1:-}" == "--smoke" ]]; then SMOKE="--smoke"; shift; fi
OUT="${1:?usage: check.sh [--smoke] OUT_DIR}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
KIT="${SUBQ_GPU_KIT:-$ROOT/.gpu-kit}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
cd "$ROOT"

USE_KIT=""
if [[ -d "$KIT/wheels" ]] && "$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))'; then
  USE_KIT=1
elif [[ -z "$SMOKE" ]]; then
  echo "no kit for this Python at $KIT: run benchmarks/gpu/prepare.sh first" >&2
  exit 2
fi
if [[ -n "$USE_KIT" ]]; then
  SITE="$(mktemp -d -t subq-kit-XXXX)"
  trap 'rm -rf "$SITE"' EXIT
  t0=$SECONDS
  if "$PY" -m pip --version >/dev/null 2>&1; then
    "$PY" -m pip install --quiet --no-index --no-deps --target "$SITE" "$KIT"/wheels/*.whl
  else  # no pip in the image: a wheel is a zip laid out for site-packages
    "$PY" -c 'import sys, zipfile; [zipfile.ZipFile(w).extractall(sys.argv[1]) for w in sys.argv[2:]]' \
      "$SITE" "$KIT"/wheels/*.whl
  fi
  echo "kit installed into $SITE in $((SECONDS - t0)) s"
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
  export SUBQ_SILERO_VAD="$(ls "$KIT"/silero_vad*.onnx | tail -1)"
fi
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
"$PY" -c "import subq.engine, whisper, av; print('subq.engine from', subq.engine.__file__)"

PYTEST_RC=""
if [[ -z "$SMOKE" ]]; then
  # only the files that hold GPU tests: the others import faster-whisper, absent here
  mapfile -t GPU_TESTS < <(grep -l "pytest.mark.gpu" tests/test_*.py)
  set +e
  timeout 90 "$PY" -m pytest -m gpu -q -p no:cacheprovider "${GPU_TESTS[@]}" \
    >"$OUT/pytest-gpu.txt" 2>&1
  PYTEST_RC=$?
  set -e
  tail -5 "$OUT/pytest-gpu.txt"
fi

"$PY" benchmarks/gpu/check.py $SMOKE ${PYTEST_RC:+--pytest-rc "$PYTEST_RC"} "$OUT"
