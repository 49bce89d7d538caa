"""Inspect any transformers model: family, parameters by component, config highlights and memory needs.

Examples:
  python pretrained/inspect_model.py                       # the embedded SmolLM2-135M-Instruct
  python pretrained/inspect_model.py minilm-l6             # an encoder (BERT family)
  python pretrained/inspect_model.py tiny-t5 --json        # machine-readable output
  python pretrained/inspect_model.py ./my-finetuned-model  # a folder saved with save_pretrained()
  python pretrained/inspect_model.py Qwen/Qwen2.5-7B-Instruct   # Hub id: needs the Hub (or its cache)

The model is built on PyTorch's "meta" device from its config alone: tensors get shapes but no
memory and no values, so even a 70B model is inspected in seconds without downloading its weights
(a Hub id still needs its config.json, so offline it fails unless it is in the local cache).
Tied weights (an output layer that reuses the input embedding matrix) are counted once. Memory
estimates cover the weights only: add activations, the KV cache (shown per 1,000 tokens for
decoders) and, when training, gradients and optimizer state.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch
import transformers
from transformers import AutoConfig
from transformers.models.auto.modeling_auto import (
    MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
    MODEL_FOR_MASKED_LM_MAPPING_NAMES,
)

from common import SMOLLM2, ModelNotAvailable, resolve_model, tiny_config

COMPONENTS = ("embeddings", "attention", "mlp", "norms", "head", "other")
BYTES_PER_PARAM = {"fp32": 4, "bf16": 2, "int8": 1, "4-bit": 0.5}
HEAD_PREFIXES = ("lm_head", "cls", "pooler", "classifier", "score", "qa_outputs", "head")


def load_config(name: str):
    """Config for a short name (tiny-* built in code), a local folder or a Hub id."""
    if name.startswith("tiny-"):
        return tiny_config(name.removeprefix("tiny-"))
    return AutoConfig.from_pretrained(resolve_model(name))


def family(config) -> str:
    """decoder-only, encoder-only or encoder-decoder."""
    if getattr(config, "is_encoder_decoder", False):
        return "encoder-decoder"
    causal, masked = config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, \
        config.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES
    return "decoder-only" if causal and not masked else "encoder-only"


def build_on_meta(config) -> torch.nn.Module:
    """The model with shapes but no data (the 'meta' device): fast and memory-free at any size."""
    arch = (getattr(config, "architectures", None) or [None])[0]
    auto = {"decoder-only": "AutoModelForCausalLM", "encoder-decoder": "AutoModelForSeq2SeqLM"}.get(
        family(config), "AutoModelForMaskedLM")
    with torch.device("meta"):
        if arch and hasattr(transformers, arch):
            return getattr(transformers, arch)(config)
        return getattr(transformers, auto).from_config(config)


def component(name: str) -> str:
    """Which part of the network a parameter belongs to, from its name."""
    parts = name.lower().split(".")
    if parts[0] in HEAD_PREFIXES:
        return "head"
    if any("norm" in p or p.startswith("ln") for p in parts[:-1]):
        return "norms"
    if any("embed" in p or p in ("wte", "wpe", "shared") for p in parts):
        return "embeddings"
    if any("attn" in p or "attention" in p for p in parts):
        return "attention"
    mlp_words = ("mlp", "ffn", "feed_forward", "densereludense", "intermediate", "experts", "moe", "fc")
    if any(any(w in p for w in mlp_words) for p in parts) or (len(parts) > 2 and parts[-3] == "output"):
        return "mlp"  # BERT's layer.N.output.dense is the second MLP matrix
    return "other"


def count_parameters(model: torch.nn.Module) -> dict[str, int]:
    """Parameters per component; named_parameters() lists a tied (shared) tensor only once."""
    counts = dict.fromkeys(COMPONENTS, 0)
    for name, p in model.named_parameters():
        counts[component(name)] += p.numel()
    counts["total"] = sum(counts[c] for c in COMPONENTS)
    return counts


def positional_encoding(config, model: torch.nn.Module) -> str:
    rope = getattr(config, "rope_parameters", None) or {}
    theta = rope.get("rope_theta", getattr(config, "rope_theta", None))
    if theta is not None:
        kind = rope.get("rope_type", "default")
        return f"RoPE (theta={theta:g}{'' if kind == 'default' else ', ' + kind + ' scaling'})"
    names = [n for n, _ in model.named_parameters()]
    if any("relative_attention_bias" in n for n in names):
        return "relative position bias (T5)"
    if any(n.endswith(("position_embeddings.weight", "wpe.weight", "embed_positions.weight")) for n in names):
        return "learned absolute"
    return "ALiBi" if getattr(config, "alibi", False) or config.model_type == "bloom" else "none found"


def activation(config, model: torch.nn.Module) -> str:
    act = next((getattr(config, a) for a in ("hidden_act", "activation_function", "hidden_activation",
                                              "feed_forward_proj") if getattr(config, a, None)), "unknown")
    gates = ("gate_proj.weight", "wi_0.weight", "w1.weight")  # LLaMA, T5 v1.1, Mixtral names
    gated = any(n.endswith(gates) for n, _ in model.named_parameters())
    if gated:
        base = str(act).removeprefix("gated-")
        return f"{base}, gated ({ {'silu': 'SwiGLU', 'swish': 'SwiGLU'}.get(base, base + '-GLU') })"
    return str(act)


def norm_type(model: torch.nn.Module) -> str:
    kinds = {type(m).__name__ for m in model.modules() if "norm" in type(m).__name__.lower()}
    return ", ".join(sorted(kinds)) or "none"


def kv_cache_bytes_per_token(config, bytes_per_value: float = 2) -> float | None:
    """K and V for every layer, per token: 2 x layers x KV heads x head size x bytes."""
    heads = getattr(config, "num_attention_heads", None)
    if family(config) == "encoder-only" or not heads:
        return None
    kv = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return 2 * config.num_hidden_layers * kv * head_dim * bytes_per_value


def highlights(config, model: torch.nn.Module) -> dict:
    heads = getattr(config, "num_attention_heads", None)
    kv = getattr(config, "num_key_value_heads", None) or heads
    out = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    tied = out is not None and out.weight is model.get_input_embeddings().weight
    info = {
        "layers": getattr(config, "num_hidden_layers", None),
        "hidden_size": getattr(config, "hidden_size", None),
        "heads": heads,
        "kv_heads": kv,
        "attention": "MHA" if kv == heads else "MQA" if kv == 1 else f"GQA ({heads // kv} heads per KV)",
        "head_dim": getattr(config, "head_dim", None) or (config.hidden_size // heads if heads else None),
        "vocab_size": getattr(config, "vocab_size", None),
        "context_length": getattr(config, "max_position_embeddings", None),
        "positional_encoding": positional_encoding(config, model),
        "activation": activation(config, model),
        "norm": norm_type(model),
        "tied_embeddings": tied,
    }
    if family(config) == "encoder-decoder":  # num_hidden_layers counts the encoder's
        info["decoder_layers"] = getattr(config, "num_decoder_layers", info["layers"])
    return info


def inspect_model(name: str) -> dict:
    """Everything this script reports, as a JSON-ready dict."""
    config = load_config(name)
    model = build_on_meta(config)
    counts = count_parameters(model)
    kv = kv_cache_bytes_per_token(config)
    return {
        "model": name,
        "model_type": config.model_type,
        "architecture": type(model).__name__,
        "family": family(config),
        "parameters": counts,
        "config": highlights(config, model),
        "memory_mb": {k: round(counts["total"] * b / 2**20, 1) for k, b in BYTES_PER_PARAM.items()},
        "kv_cache_mb_per_1k_tokens_bf16": None if kv is None else round(kv * 1000 / 2**20, 2),
    }


def report(info: dict) -> str:
    """Human-readable text version of inspect_model()."""
    counts, total = info["parameters"], info["parameters"]["total"]
    lines = [f"{info['model']}: {info['architecture']} ({info['model_type']}, {info['family']}), "
             f"{total / 1e6:,.1f} M parameters", "", "Parameters by component:"]
    lines += [f"  {c:<11} {n:>15,}  {100 * n / total:5.1f} %" for c in COMPONENTS if (n := counts[c])]
    lines += ["", "Config:"] + [f"  {k:<20} {v}" for k, v in info["config"].items()]
    lines += ["", "Memory for the weights:"]
    lines += [f"  {k:<6} {mb / 1024:8.2f} GB" if mb >= 1024 else f"  {k:<6} {mb:8.1f} MB"
              for k, mb in info["memory_mb"].items()]
    if info["kv_cache_mb_per_1k_tokens_bf16"] is not None:
        kv = info["kv_cache_mb_per_1k_tokens_bf16"]
        lines.append(f"  KV cache, bf16: {kv} MB per 1,000 tokens per sequence")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", default=SMOLLM2,
                        help=f"short name, folder or Hub id (default {SMOLLM2})")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    args = parser.parse_args(argv)
    transformers.utils.logging.set_verbosity_error()
    try:
        info = inspect_model(args.model)
    except ModelNotAvailable as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (OSError, ValueError, KeyError) as err:  # no config.json, unknown architecture, ...
        message = (str(err).strip() or type(err).__name__).splitlines()[0]
        print(f"error: cannot inspect '{args.model}': {message}", file=sys.stderr)
        return 2
    print(json.dumps(info, indent=2) if args.json else report(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
