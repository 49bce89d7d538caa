"""Shared helpers for every lesson and script: models, data, device/seed, measuring, intervals."""

import logging
import warnings

# tqdm falls back to text bars in notebooks without ipywidgets; its warning only adds noise.
warnings.filterwarnings("ignore", message="IProgress not found")

from common.data import DATASETS, corpus_text, load_dataset, read_jsonl, write_jsonl
from common.env import measure, pick_device, pick_dtype, seed_everything, setup, versions
from common.stats import wilson

# Library notices that say nothing about a lesson and print install paths. Set after torch is imported (its
# logging set-up resets its own loggers): transformers imports torchao, when installed, on every model load, and
# torchao logs that its CUDA kernels cannot load on a CPU and triggers a torch.compile deprecation notice;
# bitsandbytes logs, on its first 4-bit matmul on a CPU, that an optional faster kernel package is missing.
for _name in ("torchao", "torch.utils._pytree", "bitsandbytes.backends.cpu.ops"):
    logging.getLogger(_name).setLevel(logging.ERROR)

# DeepSpeed, when installed, is imported by every Trainer run and logs "Setting accelerator to CPU" when it finds
# no GPU. Naming the CPU up front is what it would pick anyway, without the notice.
import os as _os

import torch as _torch

if not _torch.cuda.is_available():
    _os.environ.setdefault("DS_ACCELERATOR", "cpu")
from common.models import (
                           EMBEDDED,
                           MINILM,
                           SMOLLM2,
                           ModelNotAvailable,
                           load_model,
                           load_tokenizer,
                           resolve_model,
                           tiny_config,
)

__all__ = ["DATASETS", "EMBEDDED", "MINILM", "SMOLLM2", "ModelNotAvailable", "corpus_text",
           "load_dataset", "load_model", "load_tokenizer", "measure", "pick_device", "pick_dtype",
           "read_jsonl", "resolve_model", "seed_everything", "setup", "tiny_config", "versions", "wilson", "write_jsonl"]
