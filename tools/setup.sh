#!/usr/bin/env bash
# One-time, idempotent set-up: a virtualenv in .venv, torch, the pinned requirements, then the
# embedded models and data sets in the cache ($LLM_PATH_CACHE, default .cache/). A second run
# finds everything in place and downloads nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv
PY=$VENV/bin/python

if [ ! -x "$PY" ]; then
  echo "== creating $VENV with $(python3 --version)"
  python3 -m venv "$VENV"
fi
if ! "$PY" -c "import torch" 2>/dev/null; then
  # CPU machines: torch 2.13.0. A GPU user installs a CUDA build of torch into .venv first,
  # and this step is skipped. On Linux without a GPU, set TORCH_INDEX_URL to PyTorch's CPU
  # index (see README) so pip does not fetch the multi-GB CUDA build.
  echo "== installing torch==2.13.0"
  "$PY" -m pip install --quiet ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} torch==2.13.0
fi
STAMP=$VENV/.requirements-$(sha256sum requirements.txt | cut -c1-12)
if [ ! -f "$STAMP" ]; then
  echo "== installing requirements.txt"
  "$PY" -m pip install --quiet --disable-pip-version-check -r requirements.txt 2>&1 \
    | grep -v "is ignored: it is neither a file nor a directory" || true
  "$PY" -c "import transformers, datasets, papermill" # fail here, not later, if pip failed
  rm -f $VENV/.requirements-* && touch "$STAMP"
fi
if ! (cd / && "$OLDPWD/$PY" -c "import common") 2>/dev/null; then
  # makes `import common` work from any folder (notebooks run in their section folder)
  "$PY" -m pip install --quiet --no-deps -e . >/dev/null 2>&1 || "$PY" -m pip install --no-deps -e .
fi
"$PY" -m tools.prepare
