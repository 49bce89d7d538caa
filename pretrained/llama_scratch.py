"""A LLaMA decoder from scratch in plain PyTorch, able to load SmolLM2's (or any LLaMA's) real weights.

Pieces, in the order lesson 05 explains them: RMSNorm, rotary position embeddings (RoPE), grouped-query
attention with a causal mask, the SwiGLU MLP, the decoder block, the model, and greedy generation.
Module names match transformers' LlamaForCausalLM, so a real checkpoint loads with `load_state_dict`
once the "model." prefix is dropped (`Llama.from_hf`).

Shapes in the comments: B batch, T tokens, D hidden size, H query heads, K key/value heads,
Dh head size, F MLP width, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Config:
    vocab_size: int = 49152  # V
    hidden_size: int = 576  # D
    intermediate_size: int = 1536  # F
    num_layers: int = 30
    num_heads: int = 9  # H query heads
    num_kv_heads: int = 3  # K key/value heads; each serves H // K query heads
    head_dim: int = 64  # Dh
    rope_theta: float = 100_000.0  # base of the rotary frequencies
    rms_eps: float = 1e-5
    tie_embeddings: bool = True  # the output layer reuses the input embedding matrix

    @classmethod
    def from_hf(cls, c) -> Config:
        """Read a transformers LlamaConfig (only what this implementation supports)."""
        rope = getattr(c, "rope_parameters", None) or {"rope_theta": getattr(c, "rope_theta", 10_000.0)}
        if rope.get("rope_type", "default") != "default" or c.attention_bias or c.mlp_bias:
            raise ValueError("only plain RoPE and bias-free linear layers are implemented here")
        return cls(vocab_size=c.vocab_size, hidden_size=c.hidden_size, intermediate_size=c.intermediate_size,
                   num_layers=c.num_hidden_layers, num_heads=c.num_attention_heads,
                   num_kv_heads=c.num_key_value_heads, rope_theta=rope["rope_theta"], rms_eps=c.rms_norm_eps,
                   head_dim=getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads,
                   tie_embeddings=c.tie_word_embeddings)


class RMSNorm(nn.Module):
    """x / rms(x) * weight: LayerNorm without subtracting the mean and without a bias."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, T, D)
        x32 = x.float()  # normalise in fp32 even when the model runs in bf16
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)


def rope_angles(positions: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of position * frequency, each (T, Dh); pair i rotates with frequency theta^(-2i/Dh)."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, device=positions.device).float() / head_dim)
    angles = positions.float()[:, None] * inv_freq[None, :]  # (T, Dh/2)
    angles = torch.cat([angles, angles], dim=-1)  # (T, Dh): dim i and dim i + Dh/2 form one pair
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each (x_i, x_{i+Dh/2}) pair by its angle: (B, heads, T, Dh) -> same shape."""
    x1, x2 = x.chunk(2, dim=-1)  # two halves, (B, heads, T, Dh/2) each
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


class Attention(nn.Module):
    """Grouped-query self-attention: H query heads share K key/value heads."""

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        d, h, kv, dh = cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        self.q_proj = nn.Linear(d, h * dh, bias=False)
        self.k_proj = nn.Linear(d, kv * dh, bias=False)  # K < H: a smaller KV cache than full multi-head
        self.v_proj = nn.Linear(d, kv * dh, bias=False)
        self.o_proj = nn.Linear(h * dh, d, bias=False)

    def forward(self, x, cos, sin, mask):  # x (B, T, D); mask (B or 1, 1, T, T), True = may attend
        B, T, _ = x.shape
        h, kv, dh = self.cfg.num_heads, self.cfg.num_kv_heads, self.cfg.head_dim
        q = self.q_proj(x).view(B, T, h, dh).transpose(1, 2)  # (B, H, T, Dh)
        k = self.k_proj(x).view(B, T, kv, dh).transpose(1, 2)  # (B, K, T, Dh)
        v = self.v_proj(x).view(B, T, kv, dh).transpose(1, 2)  # (B, K, T, Dh)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)  # positions enter here, and only here
        k, v = k.repeat_interleave(h // kv, dim=1), v.repeat_interleave(h // kv, dim=1)  # (B, H, T, Dh)
        scores = q @ k.transpose(-2, -1) * dh**-0.5  # (B, H, T, T)
        scores = scores.masked_fill(~mask, float("-inf"))  # no looking ahead (or at padding)
        out = scores.softmax(dim=-1) @ v  # (B, H, T, Dh)
        return self.o_proj(out.transpose(1, 2).reshape(B, T, h * dh))  # (B, T, D)


class MLP(nn.Module):
    """SwiGLU: a SiLU-activated gate multiplies a linear 'up' projection."""

    def __init__(self, cfg: Config):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, T, F) -> (B, T, D)
        return self.down_proj(nn.functional.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    """Pre-norm residual block: x + attention(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, cfg: Config):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_eps)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin, mask):  # (B, T, D) -> (B, T, D)
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class Llama(nn.Module):
    """Token embeddings -> N blocks -> final RMSNorm -> logits over the vocabulary."""

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_eps)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight  # one (V, D) matrix, used twice

    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """ids (B, T) -> logits (B, T, V). attention_mask (B, T): 1 = token, 0 = right padding."""
        T = ids.shape[1]
        cos, sin = rope_angles(torch.arange(T, device=ids.device), self.cfg.head_dim, self.cfg.rope_theta)
        mask = torch.ones(T, T, dtype=torch.bool, device=ids.device).tril()[None, None]  # (1, 1, T, T)
        if attention_mask is not None:
            mask = mask & attention_mask.bool()[:, None, None, :]  # (B, 1, T, T): padding keys hidden
        x = self.embed_tokens(ids)  # (B, T, D)
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        return self.lm_head(self.norm(x))  # (B, T, V)

    @classmethod
    def from_hf(cls, hf_model: nn.Module) -> Llama:
        """Build from a transformers LlamaForCausalLM and copy its weights (same names, minus 'model.')."""
        model = cls(Config.from_hf(hf_model.config))
        state = {name.removeprefix("model."): t for name, t in hf_model.state_dict().items()}
        model.load_state_dict(state)  # strict: every weight must find its place, and vice versa
        return model.to(next(hf_model.parameters()).dtype).eval()


@torch.no_grad()
def generate(model: Llama, ids: torch.Tensor, max_new_tokens: int, eos_token_id: int | None = None):
    """Greedy decoding without a KV cache: rerun the whole sequence, append the most likely token."""
    for _ in range(max_new_tokens):
        next_id = model(ids)[:, -1].argmax(dim=-1, keepdim=True)  # (B, 1)
        ids = torch.cat([ids, next_id], dim=1)
        if eos_token_id is not None and (next_id == eos_token_id).all():
            break
    return ids
