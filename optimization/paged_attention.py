"""Build, check and call paged_attention.c: attention read straight from the paged KV cache, for decoding and prompt
tokens alike.

`load(group, head_dim, cache_dtype)` compiles the C file with the system compiler (`cc`, well under a second) for
one model shape and cache dtype (float32 or bfloat16; queries and outputs are float32), caches the library under
$LLM_PATH_CACHE/kernels (default <repo>/.cache/kernels), loads it with ctypes and checks it against PyTorch's
scaled_dot_product_attention on random data before anyone uses it. Where any step fails (no compiler, an
unsupported flag, a result that does not match), it returns None and the reason, and the engine keeps its
pure-PyTorch path: the kernel makes the engine faster, never necessary.

The library links the OpenMP runtime by its usual name (libgomp.so.1); loaded after PyTorch, it shares PyTorch's
runtime and thread pool instead of starting a second one. ctypes releases the GIL during the call."""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import torch
import torch.nn.functional as F

SOURCE = Path(__file__).with_name("paged_attention.c")
# (compiler flags, libraries), tried in order. -ffast-math lets the compiler vectorise expf (with glibc's libmvec);
# the last set is for compilers without OpenMP or -march=native (the kernel then runs on one thread).
FLAG_SETS = (
    (["-O3", "-march=native", "-ffast-math", "-fopenmp"], ["-lmvec", "-lm"]),
    (["-O3", "-march=native", "-ffast-math", "-fopenmp"], ["-lm"]),
    (["-O3"], ["-lm"]),
)
CACHE_DTYPES = {torch.float32: [], torch.bfloat16: ["-DCACHE_BF16"]}
_loaded: dict[tuple, tuple[AttentionKernel | None, str]] = {}


class AttentionKernel:
    """The compiled kernel for one (group, head_dim, cache dtype): queries (B, K, G, D) float32 -> attention output,
    same shape; each query attends to the first `length` tokens of its block table."""

    def __init__(self, library: ctypes.CDLL, group: int, head_dim: int, cache_dtype: torch.dtype):
        self.group, self.head_dim, self.cache_dtype = group, head_dim, cache_dtype
        self._fn = library.paged_attention
        self._fn.restype = None
        self._fn.argtypes = [ctypes.c_void_p] * 6 + [ctypes.c_int64] * 4 + [ctypes.c_float, ctypes.c_int]

    def __call__(self, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, table: torch.Tensor,
                 lengths: torch.Tensor, scale: float) -> torch.Tensor:
        """q: (B, K, G, D); keys, values: (blocks, K, S, D) pools; table: (B, W) block ids; lengths: (B,) tokens.

        Every table entry a request uses (the first ceil(length / S)) must be a block id of the pool: the C code
        trusts it. The engine builds the table from its own pool, so that holds by construction.
        """
        b, k, g, d = q.shape
        if (g, d) != (self.group, self.head_dim) or keys.dim() != 4 or keys.shape[1] != k or keys.shape[3] != d \
                or keys.shape != values.shape:
            raise ValueError(f"shapes do not fit this kernel (group {self.group}, head_dim {self.head_dim}): "
                             f"q {tuple(q.shape)}, keys {tuple(keys.shape)}, values {tuple(values.shape)}")
        tensors = (q, keys, values, table, lengths)
        if not all(t.is_contiguous() and t.device.type == "cpu" for t in tensors) or q.dtype != torch.float32 \
                or keys.dtype != self.cache_dtype or values.dtype != self.cache_dtype \
                or table.dtype != torch.int64 or lengths.dtype != torch.int64 or tuple(lengths.shape) != (b,):
            raise ValueError(f"the kernel takes contiguous CPU tensors: float32 q, {self.cache_dtype} keys/values, "
                             "int64 table/lengths")
        out = torch.empty_like(q)
        with torch.profiler.record_function("paged_attention (C)"):  # so PyTorch's profiler sees the call
            self._fn(q.data_ptr(), keys.data_ptr(), values.data_ptr(), table.data_ptr(), lengths.data_ptr(),
                     out.data_ptr(), b, k, keys.shape[2], table.shape[1], scale, torch.get_num_threads())
        return out


def load(group: int, head_dim: int, cache_dtype: torch.dtype = torch.float32) -> tuple[AttentionKernel | None, str]:
    """The kernel for this shape, compiled and checked on first use; (None, why) where it cannot be used."""
    if cache_dtype not in CACHE_DTYPES:
        return None, f"no C kernel for a {cache_dtype} cache (float32 or bfloat16)"
    if (group, head_dim, cache_dtype) not in _loaded:
        _loaded[group, head_dim, cache_dtype] = _build_and_check(group, head_dim, cache_dtype)
    return _loaded[group, head_dim, cache_dtype]


def _build_and_check(group: int, head_dim: int, cache_dtype: torch.dtype) -> tuple[AttentionKernel | None, str]:
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None, "no C compiler found (install gcc, or set CC)"
    errors = []
    for flags, libraries in FLAG_SETS:
        try:
            library = _compile(compiler, flags, libraries, [f"-DGROUP={group}", f"-DHEAD_DIM={head_dim}",
                                                             *CACHE_DTYPES[cache_dtype]])
            kernel = AttentionKernel(ctypes.CDLL(str(library)), group, head_dim, cache_dtype)
        except (OSError, subprocess.SubprocessError) as error:  # flag unsupported, libmvec missing, ...
            errors.append(str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__)
            continue
        mismatch = _check(kernel)
        if mismatch is None:
            return kernel, f"compiled with {Path(compiler).name} {' '.join(flags)}"
        errors.append(mismatch)
    return None, "the C kernel could not be used: " + "; ".join(errors)


def _compile(compiler: str, flags: list[str], libraries: list[str], defines: list[str]) -> Path:
    """Compile once per (source, compiler, flags, CPU, defines) into the cache; later calls reuse the library."""
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30).stdout
    key = hashlib.sha256("\n".join([SOURCE.read_text(), compiler, version, _cpu(), *flags, *defines]).encode())
    folder = Path(os.environ.get("LLM_PATH_CACHE", Path(__file__).resolve().parents[1] / ".cache")) / "kernels"
    target = folder.expanduser() / f"paged_attention_{key.hexdigest()[:16]}.so"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(f".{os.getpid()}.tmp")  # then renamed: parallel builds never see half a file
        command = [compiler, *flags, "-shared", "-fPIC", *defines, str(SOURCE), "-o", str(partial), *libraries]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise OSError(done.stderr or f"{compiler} failed")
        os.replace(partial, target)
    return target


def _cpu() -> str:
    """What -march=native compiles for: a library built on another CPU (shared home folder) is not reused."""
    try:
        return next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return os.uname().machine if hasattr(os, "uname") else ""


def _check(kernel: AttentionKernel) -> str | None:
    """Compare with gather + scaled_dot_product_attention on random paged data; None when they agree."""
    generator = torch.Generator().manual_seed(0)
    kv_heads, block_size, blocks, width = 2, 4, 12, 4
    lengths = torch.tensor([1, 7, 16])
    table = torch.randperm(blocks, generator=generator)[:3 * width].view(3, width)
    q = torch.randn(3, kv_heads, kernel.group, kernel.head_dim, generator=generator)
    keys, values = (torch.randn(blocks, kv_heads, block_size, kernel.head_dim, generator=generator)
                    .to(kernel.cache_dtype) for _ in "kv")
    got = kernel(q, keys, values, table, lengths, kernel.head_dim ** -0.5)
    for row, length in enumerate(lengths.tolist()):
        k, v = (gather(pool, table[row])[:, :length].float() for pool in (keys, values))  # (K, L, D)
        want = F.scaled_dot_product_attention(q[row], k, v)  # the K kv heads as the batch, G queries each
        if not torch.allclose(got[row], want, atol=1e-5, rtol=1e-4):
            return f"results differ from PyTorch by {float((got[row] - want).abs().max()):.1e}"
    return None


def gather(pool: torch.Tensor, blocks: torch.Tensor) -> torch.Tensor:
    """A request's keys (or values) as one (K, len(blocks) * S, D) tensor: a copy, what the kernel avoids."""
    return pool[blocks].transpose(0, 1).flatten(1, 2)
