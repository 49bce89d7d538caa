"""optimization/paged_attention.c: attention read in place from a paged KV cache equals PyTorch's on a gathered copy."""

import shutil
import sys

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "optimization"))
import paged_attention  # noqa: E402

needs_cc = pytest.mark.skipif(not (shutil.which("cc") or shutil.which("gcc")), reason="no C compiler here")


def reference(q, keys, values, table, lengths):
    """Gather each query's blocks, keep its first `length` tokens, and run PyTorch's attention in float32."""
    rows = []
    for query, blocks, length in zip(q, table, lengths.tolist(), strict=True):
        k, v = (paged_attention.gather(pool, blocks)[:, :length].float() for pool in (keys, values))  # (K, L, D)
        rows.append(F.scaled_dot_product_attention(query, k, v))  # query: (K, G, D)
    return torch.stack(rows)


@needs_cc
@pytest.mark.parametrize("cache_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("group", "head_dim", "block_size"), [(3, 64, 16), (1, 32, 4), (4, 128, 8), (2, 80, 5)])
def test_kernel_matches_pytorch_attention(group, head_dim, block_size, cache_dtype):
    kernel, status = paged_attention.load(group, head_dim, cache_dtype)
    assert kernel is not None, status
    torch.manual_seed(0)
    kv_heads, blocks, width = 2, 40, 7
    lengths = torch.tensor([1, block_size, block_size + 1, 3 * block_size - 1, width * block_size])  # ragged
    table = torch.stack([torch.randperm(blocks)[:width] for _ in lengths])  # scattered blocks
    q = torch.randn(len(lengths), kv_heads, group, head_dim)
    keys, values = (torch.randn(blocks, kv_heads, block_size, head_dim).to(cache_dtype) for _ in "kv")
    got = kernel(q, keys, values, table, lengths, head_dim ** -0.5)
    torch.testing.assert_close(got, reference(q, keys, values, table, lengths), atol=1e-5, rtol=1e-4)


@needs_cc
def test_kernel_refuses_tensors_it_cannot_read():
    kernel, status = paged_attention.load(3, 64)
    assert kernel is not None, status
    q, pool = torch.randn(2, 1, 3, 64), torch.randn(4, 1, 16, 64)
    table, lengths = torch.zeros(2, 1, dtype=torch.long), torch.tensor([3, 5])
    with pytest.raises(ValueError, match="float32"):
        kernel(q.bfloat16(), pool, pool, table, lengths, 0.125)
    with pytest.raises(ValueError, match="torch.float32 keys"):  # this build reads a float32 cache
        kernel(q, pool.bfloat16(), pool.bfloat16(), table, lengths, 0.125)
    with pytest.raises(ValueError, match="contiguous"):
        kernel(q.transpose(2, 3).contiguous().transpose(2, 3), pool, pool, table, lengths, 0.125)
    with pytest.raises(ValueError, match="shapes"):
        kernel(torch.randn(2, 1, 2, 64), pool, pool, table, lengths, 0.125)


def test_without_a_compiler_the_engine_says_why(monkeypatch, tmp_path):
    from engine import Engine

    from common import load_model
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setattr(paged_attention, "_loaded", {})  # forget kernels built earlier in this process
    model = load_model("tiny-llama")
    assert Engine(model, kv_cache_tokens=32).kernel is None  # the default quietly keeps the PyTorch path
    with pytest.raises(RuntimeError, match="attention_kernel=True, but the C kernel could not be used"):
        Engine(model, kv_cache_tokens=32, attention_kernel=True)
