#!/usr/bin/env bash
# Build .gpu-kit/ here (where pip reaches PyPI) for the GPU machine (Python 3.12, no network;
# it has torch 2.11 + CUDA 13, transformers, numba, tiktoken, onnxruntime, nvidia-ml-py,
# psutil, aiofiles): wheels for what subq, its GPU tests and benchmarks/gpu/check.py import
# and that image lacks, subq and openai-whisper built as wheels, and the Silero VAD ONNX file.
# No faster-whisper or CTranslate2: their CUDA 12 build cannot load there, and subq's VAD
# (engine/asr/vad.py) needs only onnxruntime and the .onnx file.
#
#   bash benchmarks/gpu/prepare.sh        # prints the kit's size; must stay under 60 MiB
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
KIT="${SUBQ_GPU_KIT:-$ROOT/.gpu-kit}"  # the suite builds one in a temp folder
rm -rf "$KIT"
mkdir -p "$KIT/wheels"
cd "$ROOT"

# the versions tested here, so the GPU machine runs what CI ran
version() { "$PY" -c "import importlib.metadata as m; print(m.version('$1'))"; }
PINNED=()
for pkg in av textual rich markdown-it-py mdurl mdit-py-plugins \
           pygments platformdirs more-itertools pytest pluggy iniconfig pytest-timeout \
           jiwer rapidfuzz click; do
  PINNED+=("$pkg==$(version "$pkg")")
done
"$PY" -m pip download --quiet --only-binary=:all: --no-deps -d "$KIT/wheels" \
  --python-version 3.12 --implementation cp --abi cp312 --abi abi3 --abi none \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux_2_28_x86_64 --platform any \
  "${PINNED[@]}"

# openai-whisper is an sdist on PyPI: build its (pure-Python) wheel here
"$PY" -m pip wheel --quiet --no-deps -w "$KIT/wheels" "openai-whisper==$(version openai-whisper)"
# subq itself: its package-dir mapping (engine/ -> subq.engine) needs an install
"$PY" -m pip wheel --quiet --no-deps -w "$KIT/wheels" .

ONNX="$("$PY" -c "from subq.engine.asr import vad; print(vad.model_path())")"
cp "$ONNX" "$KIT/"

ls -la "$KIT/wheels" "$KIT"/*.onnx
BYTES="$(du -sb "$KIT" | cut -f1)"
MIB="$(awk -v b="$BYTES" 'BEGIN { printf "%.1f", b / 1048576 }')"
echo "kit: $KIT, $MIB MiB ($BYTES bytes)"
if (( BYTES > 60 * 1048576 )); then echo "kit over 60 MiB" >&2; exit 1; fi
