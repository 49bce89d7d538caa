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
# DeepSpeed (fine-tuning/13, align.py --deepspeed) is published only as a source archive whose build imports torch.
# Build it against the torch installed here (an isolated build would download another torch) and without compiling
# its CUDA/C++ ops (they compile on first use, on a GPU machine). Its dependencies are pinned in requirements.txt.
if ! "$PY" -c "import deepspeed" 2>/dev/null; then
  echo "== installing deepspeed 0.19.8 (source archive, ops not compiled)"
  DS_BUILD_OPS=0 "$PY" -m pip install --quiet --disable-pip-version-check --no-build-isolation --no-deps \
      deepspeed==0.19.8 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true
  "$PY" -c "import deepspeed" 2>/dev/null \
    || echo "warning: deepspeed did not install; fine-tuning/13's DeepSpeed runs and their tests will skip" >&2
fi
if ! (cd / && "$OLDPWD/$PY" -c "import common") 2>/dev/null; then
  # makes `import common` work from any folder (notebooks run in their section folder)
  "$PY" -m pip install --quiet --no-deps -e . >/dev/null 2>&1 || "$PY" -m pip install --no-deps -e .
fi
# The chat-page test and deployment/02 drive a headless Chromium: Debian's chromium and chromium-driver.
# Installed with apt only when missing and when we are root (CI) or sudo needs no password; tried once per
# virtualenv (a failure is remembered in $VENV; `make clean` forgets it). Without them, the test skips.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo "sudo -n")
  if [ -f $VENV/.no-chromium ]; then
    echo "warning: no chromium/chromedriver (apt-get failed before); the chat-page test will skip" >&2
  elif command -v apt-get >/dev/null && { [ -z "$SUDO" ] || sudo -n true 2>/dev/null; }; then
    echo "== installing chromium and chromium-driver (apt-get)"
    { $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends chromium chromium-driver; } >/dev/null \
      || { touch $VENV/.no-chromium
           echo "warning: apt-get could not install chromium; the chat-page test will skip" >&2; }
  else
    echo "warning: no chromium/chromedriver; 'sudo apt-get install chromium chromium-driver' enables the" \
         "chat-page test (it skips without them) and deployment/02" >&2
  fi
fi
# llama-cpp-python (deployment/03, optimization/export_gguf.py) is published only as a source archive. Build its
# wheel once per machine (~5 min on 2 cores; it needs a C/C++ compiler, CMake comes from PyPI), keep it in the
# cache under a key of this CPU (the build targets this CPU's instructions), and install it from there. Its
# dependencies are pinned in requirements.txt. A failed build is remembered in $VENV and the tests that need it
# skip, saying so; `make clean` forgets it.
if ! "$PY" -c "import llama_cpp" 2>/dev/null; then
  CPU_KEY=$({ grep -m1 -E '^(flags|Features)' /proc/cpuinfo 2>/dev/null || uname -m; } | sha256sum | cut -c1-10)
  WHEELS="$("$PY" -c "from common.registry import cache_dir; print(cache_dir())")/wheels/llama-cpp-$CPU_KEY"
  if [ -f $VENV/.no-llama-cpp ]; then
    echo "warning: llama-cpp-python did not build before; its tests will skip (delete $VENV/.no-llama-cpp to retry)" >&2
  else
    if ! ls "$WHEELS"/llama_cpp_python-0.3.36-*.whl >/dev/null 2>&1; then
      echo "== building llama-cpp-python 0.3.36 from source (once per machine, ~5 min on 2 cores)"
      LOG=$VENV/llama-cpp-build.log
      SDIST=$("$PY" -c "import sys; sys.path.insert(0, 'optimization'); import export_gguf; print(export_gguf.fetch_sdist())" \
              2>$LOG) || SDIST=""
      [ -n "$SDIST" ] && CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc 2>/dev/null || echo 2)} \
        "$PY" -m pip wheel --no-deps --disable-pip-version-check -w "$WHEELS" "$SDIST" >>$LOG 2>&1 \
        || echo "warning: building llama-cpp-python failed (log: $LOG)" >&2
    fi
    WHEEL=$(ls "$WHEELS"/llama_cpp_python-0.3.36-*.whl 2>/dev/null | head -1) || true
    if [ -n "$WHEEL" ] && "$PY" -m pip install --quiet --no-deps --disable-pip-version-check "$WHEEL" >/dev/null 2>&1 \
        && "$PY" -c "import llama_cpp" 2>/dev/null; then
      echo "== llama-cpp-python 0.3.36 ready (wheel cached in $WHEELS)"
    else
      touch $VENV/.no-llama-cpp
      echo "warning: no llama-cpp-python; deployment/03 and the tests that need it will skip" >&2
    fi
  fi
fi
"$PY" -m tools.prepare
