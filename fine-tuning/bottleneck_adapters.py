"""Houlsby-style bottleneck adapters for LLaMA-like decoders, in one small readable module.

An adapter is a tiny two-layer network with a skip connection, h + up(act(down(h))), inserted after the attention
output projection and after the MLP of every decoder layer (Houlsby et al. 2019, "Parameter-Efficient Transfer
Learning for NLP"). Only the adapters train; the base model stays frozen. The up-projection starts at zero, so an
adapted model computes exactly what the base model computes until the first optimizer step.

Why our own: AdapterHub's `adapters` package is the usual library for this, but it pins transformers 4.57 and this
project uses transformers 5; peft has no bottleneck adapters. The method is small enough to write out in full.

Python API (import it from fine-tuning/):
  BottleneckAdapter(hidden_size, bottleneck)   h -> h + up(gelu(down(h))), up initialised to zero
  add_adapters(model, bottleneck=64)           insert 2 adapters per decoder layer, freeze the rest; -> adapters
  adapter_state_dict(model)                    only the adapter weights (a small state dict to save)
  load_adapter_state_dict(model, state_dict)   put saved adapter weights back into an adapted model
"""

import torch
from torch import nn


class BottleneckAdapter(nn.Module):
    """Down-project to `bottleneck`, GELU, up-project back, add the input (a residual)."""

    def __init__(self, hidden_size: int, bottleneck: int = 64):
        super().__init__()
        self.down = nn.Linear(hidden_size, bottleneck)
        self.act = nn.GELU()
        self.up = nn.Linear(bottleneck, hidden_size)
        nn.init.zeros_(self.up.weight)  # zero update at the start: the adapter is the identity
        nn.init.zeros_(self.up.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden + self.up(self.act(self.down(hidden)))


class Adapted(nn.Module):
    """A frozen module followed by an adapter: adapter(base(x))."""

    def __init__(self, base: nn.Module, adapter: BottleneckAdapter):
        super().__init__()
        self.base, self.adapter = base, adapter

    def forward(self, *args, **kwargs):
        out = self.base(*args, **kwargs)
        if isinstance(out, tuple):  # some MLPs (e.g. mixture-of-experts) also return router logits
            return (self.adapter(out[0]), *out[1:])
        return self.adapter(out)


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """Every submodule that looks like a LLaMA-style decoder layer: it has `self_attn.o_proj` and `mlp`."""
    return [m for m in model.modules()
            if hasattr(m, "mlp") and hasattr(getattr(m, "self_attn", None), "o_proj")]


def add_adapters(model: nn.Module, bottleneck: int = 64) -> list[nn.Module]:
    """Insert an adapter after the attention output projection and after the MLP of every decoder layer.

    Works on transformers LLaMA/Mistral/Qwen/Gemma-like decoders (layers with `self_attn.o_proj` and `mlp`).
    Freezes every other parameter and returns the adapters (2 per layer), which are the only trainable weights.
    """
    layers = decoder_layers(model)
    if not layers:
        raise ValueError(f"add_adapters found no decoder layers with `self_attn.o_proj` and `mlp` in "
                         f"{type(model).__name__}; it supports LLaMA-style decoders (LLaMA, Mistral, Qwen, Gemma).")
    if any(isinstance(m, Adapted) for m in model.modules()):
        raise ValueError("this model already has adapters")
    for p in model.parameters():
        p.requires_grad_(False)
    adapters = []
    for layer in layers:
        weight = layer.self_attn.o_proj.weight
        for parent, name in [(layer.self_attn, "o_proj"), (layer, "mlp")]:
            adapter = BottleneckAdapter(weight.shape[0], bottleneck).to(weight.device, weight.dtype)
            setattr(parent, name, Adapted(getattr(parent, name), adapter))
            adapters.append(adapter)
    return adapters


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter weights only, keyed as in model.state_dict() (a few MB instead of the whole model)."""
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()
            if ".adapter." in name}


def load_adapter_state_dict(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> None:
    """Load weights saved by adapter_state_dict into a model that went through add_adapters (same bottleneck)."""
    expected = set(adapter_state_dict(model))
    if not expected:
        raise ValueError("the model has no adapters: call add_adapters(model, bottleneck) first")
    if set(state_dict) != expected:
        missing, extra = sorted(expected - set(state_dict)), sorted(set(state_dict) - expected)
        raise ValueError(f"adapter weights do not match this model: missing {missing[:3]}, unexpected {extra[:3]}")
    model.load_state_dict(state_dict, strict=False)
