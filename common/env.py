"""Device, dtype, seeding, versions, and a meter for wall time and peak memory."""

from __future__ import annotations

import os
import platform
import random
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata

import numpy as np
import psutil
import torch

LIBRARIES = ("torch", "transformers", "tokenizers", "datasets", "accelerate", "peft", "trl")


def pick_device(prefer: str | None = None) -> str:
    """'cuda', 'mps' or 'cpu': $LLM_PATH_DEVICE or `prefer` wins, else the best available."""
    choice = prefer or os.environ.get("LLM_PATH_DEVICE")
    if choice:
        if choice.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(f"Device '{choice}' was requested but torch sees no CUDA GPU "
                               f"(torch {torch.__version__}). Use 'cpu', or install a CUDA build of torch.")
        return choice
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(device: str) -> torch.dtype:
    """bfloat16 on GPUs that support it, float32 elsewhere (safe for training on CPU)."""
    if device.startswith("cuda") and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so a lesson gives the same numbers on a rerun."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def versions() -> dict[str, str]:
    """Python, platform and the installed versions of the main libraries."""
    info = {"python": platform.python_version(), "platform": platform.machine()}
    for lib in LIBRARIES:
        try:
            info[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            info[lib] = "not installed"
    return info


def setup(seed: int = 0, device: str | None = None) -> str:
    """A lesson's first line: seed, choose the device, print versions. Returns the device."""
    import transformers

    transformers.utils.logging.disable_progress_bar()  # keep notebook outputs readable
    seed_everything(seed)
    device = pick_device(device)
    info = versions()
    info.update(device=device, threads=str(torch.get_num_threads()), seed=str(seed))
    print("  ".join(f"{k}={v}" for k, v in info.items()))
    return device


@dataclass
class Measurement:
    seconds: float = 0.0
    peak_rss_mb: float = 0.0  # peak resident memory of this process during the block
    peak_gpu_mb: float = 0.0

    def __str__(self) -> str:
        gpu = f", GPU peak {self.peak_gpu_mb:,.0f} MB" if self.peak_gpu_mb else ""
        return f"{self.seconds:.2f} s, peak RSS {self.peak_rss_mb:,.0f} MB{gpu}"


@contextmanager
def measure(interval: float = 0.05):
    """Time a block and sample this process's memory while it runs.

    >>> with measure() as m:
    ...     work()
    >>> print(m)   # 1.23 s, peak RSS 812 MB
    """
    result, proc, stop = Measurement(), psutil.Process(), threading.Event()

    def sample():
        while True:
            result.peak_rss_mb = max(result.peak_rss_mb, proc.memory_info().rss / 2**20)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=sample, daemon=True)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    thread.start()
    try:
        yield result
    finally:
        result.seconds = time.perf_counter() - start
        stop.set()
        thread.join()
        if torch.cuda.is_available():
            result.peak_gpu_mb = torch.cuda.max_memory_allocated() / 2**20
