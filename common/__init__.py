"""Shared helpers for every lesson and script: models, data, device/seed, measuring."""

import logging
import warnings

# tqdm falls back to text bars in notebooks without ipywidgets; its warning only adds noise.
warnings.filterwarnings("ignore", message="IProgress not found")
# bitsandbytes logs, on its first 4-bit matmul on a CPU, that an optional faster kernel package ("kernels") is
# missing; its own kernel works.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

from common.data import DATASETS, corpus_text, load_dataset
from common.env import measure, pick_device, pick_dtype, seed_everything, setup, versions
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
           "resolve_model", "seed_everything", "setup", "tiny_config", "versions"]
