"""Three decoder blocks, written out: GPT-2 style, LLaMA style and PaLM style (lesson 07).

  gpt2   LayerNorm (with bias), learned absolute positions, multi-head attention (one K/V per head),
         GELU MLP, biases everywhere; sequential: x + attn(ln(x)), then + mlp(ln(x)).
  llama  RMSNorm, rotary position embeddings (RoPE), grouped-query attention (GQA: heads share K/V
         in groups), SwiGLU MLP, no biases; sequential like GPT-2.
  palm   one LayerNorm without bias, RoPE, multi-query attention (MQA: one K/V for all heads),
         SwiGLU, no biases; *parallel*: x + attn(ln(x)) + mlp(ln(x)) in one step.

`build_lm(kind, vocab_size, ...)` wraps a stack of blocks into a small causal LM (tied input/output
embeddings). Its MLP width is chosen so that every kind has about the same parameter count: SwiGLU
has three matrices instead of two, and GQA/MQA save attention parameters that go back into the MLP.
The model returns an object with `.logits` (like transformers models), so pretrain.train() and
pretrain.evaluate() train and score it; it keeps a KV cache for fast generation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

KINDS = ("gpt2", "llama", "palm")


class RMSNorm(nn.Module):
    """Scale by the root mean square (no mean subtraction, no bias): cheaper than LayerNorm."""

    def __init__(self, d: int, eps: float = 1e-6):
        super().__init__()
        self.eps, self.weight = eps, nn.Parameter(torch.ones(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope(x: torch.Tensor, start: int, base: float = 10000.0) -> torch.Tensor:
    """Rotary position embedding: rotate pairs of channels of q/k by an angle proportional to the
    position, so q·k depends on the *relative* distance. x: [batch, heads, time, head_dim]."""
    half = x.shape[-1] // 2
    freqs = base ** (-torch.arange(half, dtype=torch.float32, device=x.device) / half)
    angles = torch.arange(start, start + x.shape[-2], device=x.device)[:, None] * freqs  # [time, half]
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class Attention(nn.Module):
    """Causal self-attention with `kv_heads` key/value heads: = heads (MHA), a divisor (GQA), 1 (MQA)."""

    def __init__(self, d: int, heads: int, kv_heads: int, bias: bool, use_rope: bool):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim, self.use_rope = heads, kv_heads, d // heads, use_rope
        self.q = nn.Linear(d, d, bias=bias)
        self.kv = nn.Linear(d, 2 * kv_heads * self.head_dim, bias=bias)
        self.out = nn.Linear(d, d, bias=bias)

    def forward(self, x: torch.Tensor, cache: tuple | None = None) -> tuple[torch.Tensor, tuple]:
        b, t, d = x.shape
        q = self.q(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k, v = self.kv(x).view(b, t, 2, self.kv_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        start = 0 if cache is None else cache[0].shape[2]
        if self.use_rope:
            q, k = rope(q, start), rope(k, start)
        if cache is not None:  # the cache holds only kv_heads heads: MQA/GQA keep it small
            k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
        group = self.heads // self.kv_heads  # each K/V head serves `group` query heads
        att = F.scaled_dot_product_attention(q, k.repeat_interleave(group, 1), v.repeat_interleave(group, 1),
                                             is_causal=cache is None and t > 1)
        return self.out(att.transpose(1, 2).reshape(b, t, d)), (k, v)


class GeluMLP(nn.Module):
    def __init__(self, d: int, hidden: int, bias: bool = True):
        super().__init__()
        self.up, self.down = nn.Linear(d, hidden, bias=bias), nn.Linear(hidden, d, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.gelu(self.up(x)))


class SwiGLU(nn.Module):
    """A gated MLP: down(silu(gate(x)) * up(x)). Three matrices, so a narrower hidden layer."""

    def __init__(self, d: int, hidden: int):
        super().__init__()
        self.gate, self.up = nn.Linear(d, hidden, bias=False), nn.Linear(d, hidden, bias=False)
        self.down = nn.Linear(hidden, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


class GPT2Block(nn.Module):
    def __init__(self, d: int, heads: int, hidden: int):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = Attention(d, heads, kv_heads=heads, bias=True, use_rope=False)
        self.mlp = GeluMLP(d, hidden)

    def forward(self, x, cache=None):
        a, cache = self.attn(self.ln1(x), cache)
        x = x + a
        return x + self.mlp(self.ln2(x)), cache


class LlamaBlock(nn.Module):
    def __init__(self, d: int, heads: int, hidden: int):
        super().__init__()
        self.norm1, self.norm2 = RMSNorm(d), RMSNorm(d)
        self.attn = Attention(d, heads, kv_heads=max(1, heads // 2), bias=False, use_rope=True)
        self.mlp = SwiGLU(d, hidden)

    def forward(self, x, cache=None):
        a, cache = self.attn(self.norm1(x), cache)
        x = x + a
        return x + self.mlp(self.norm2(x)), cache


class PalmBlock(nn.Module):
    def __init__(self, d: int, heads: int, hidden: int):
        super().__init__()
        self.norm = nn.LayerNorm(d, bias=False)
        self.attn = Attention(d, heads, kv_heads=1, bias=False, use_rope=True)
        self.mlp = SwiGLU(d, hidden)

    def forward(self, x, cache=None):
        h = self.norm(x)  # one norm; attention and MLP read the same input, side by side
        a, cache = self.attn(h, cache)
        return x + a + self.mlp(h), cache


BLOCKS = {"gpt2": GPT2Block, "llama": LlamaBlock, "palm": PalmBlock}


@dataclass
class LMOutput:
    logits: torch.Tensor
    cache: list | None = None


class TinyLM(nn.Module):
    """Token embedding (+ learned positions for gpt2) -> blocks -> final norm -> tied output layer."""

    def __init__(self, kind: str, vocab_size: int, d: int, layers: int, heads: int, hidden: int, context: int):
        super().__init__()
        self.kind, self.context = kind, context
        self.embed = nn.Embedding(vocab_size, d)
        self.positions = nn.Embedding(context, d) if kind == "gpt2" else None
        self.blocks = nn.ModuleList(BLOCKS[kind](d, heads, hidden) for _ in range(layers))
        self.norm = {"gpt2": nn.LayerNorm(d), "llama": RMSNorm(d), "palm": nn.LayerNorm(d, bias=False)}[kind]
        self.apply(self._init)
        for name, p in self.named_parameters():  # GPT-2's scaled init of the residual projections
            if name.endswith(("out.weight", "down.weight")):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * layers))

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    @property
    def device(self) -> torch.device:
        return self.embed.weight.device

    def forward(self, input_ids: torch.Tensor, cache: list | None = None) -> LMOutput:
        start = 0 if cache is None else cache[0][0].shape[2]
        x = self.embed(input_ids)
        if self.positions is not None:
            x = x + self.positions(torch.arange(start, start + input_ids.shape[1], device=x.device))
        new_cache = []
        for i, block in enumerate(self.blocks):
            x, layer_cache = block(x, None if cache is None else cache[i])
            new_cache.append(layer_cache)
        return LMOutput(self.norm(x) @ self.embed.weight.T, new_cache)

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, max_new_tokens: int, temperature: float = 0.0,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Greedy (temperature 0) or sampled continuation, one token at a time with the KV cache."""
        if input_ids.shape[1] + max_new_tokens > self.context:
            raise ValueError(f"prompt + new tokens must fit in the context of {self.context}")
        out = self(input_ids)
        tokens = [input_ids]
        for _ in range(max_new_tokens):
            logits = out.logits[:, -1].float()
            if temperature > 0:
                nxt = torch.multinomial((logits / temperature).softmax(-1), 1, generator=generator)
            else:
                nxt = logits.argmax(-1, keepdim=True)
            tokens.append(nxt)
            out = self(nxt, out.cache)
        return torch.cat(tokens, dim=1)


def mlp_width(kind: str, d: int, heads: int) -> int:
    """MLP width that gives every kind the parameters of a GPT-2 block (4d GELU MLP + full MHA)."""
    budget = 8 * d * d + 4 * d * d  # GPT-2: MLP 2 x d x 4d, attention q, k, v, out: 4 x d x d
    kv_heads = {"gpt2": heads, "llama": max(1, heads // 2), "palm": 1}[kind]
    attention = 2 * d * d + 2 * d * kv_heads * (d // heads)
    matrices = 2 if kind == "gpt2" else 3
    return round((budget - attention) / (matrices * d))


def build_lm(kind: str, vocab_size: int, d: int = 128, layers: int = 4, heads: int = 4, context: int = 128) -> TinyLM:
    """A TinyLM of `kind` (gpt2, llama or palm); seed torch first for a reproducible init."""
    if kind not in BLOCKS:
        raise ValueError(f"unknown block '{kind}'; choose one of: {', '.join(KINDS)}")
    return TinyLM(kind, vocab_size, d, layers, heads, mlp_width(kind, d, heads), context)


def kv_cache_bytes_per_token(cache: list) -> int:
    """Bytes the KV cache holds per generated position (all layers, K and V), read off the tensors."""
    k, v = cache[0]
    per_layer = (k[0, :, 0].numel() + v[0, :, 0].numel()) * k.element_size()
    return per_layer * len(cache)
