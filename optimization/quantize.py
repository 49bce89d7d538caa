"""Quantize a causal language model to a chosen format and report its size, speed and perplexity, as JSON.

Each format is written to --out where it can be saved, then measured the same way: MB on disk (the weight files
written), MB in memory (the weights as the runtime holds them), generation tokens/s (the median of --repeats runs
of the same greedy workload, end-of-sequence ignored) and perplexity and bits per byte on the same held-out text
with the same sliding window (evaluation/evaluate_model.py scores the transformers formats; llama.cpp scores the
GGUF files from its own logits, on the token ids of the GGUF's own tokenizer, which is checked against the
transformers tokenizer). Everything runs on the CPU, one format after the other, so only one copy is in memory.

Examples:
  python optimization/quantize.py --format nf4 --out build/quantized                  # SmolLM2 -> NF4
  python optimization/quantize.py --format bf16 int8 torchao-int8 gguf-q4_k_m --out build/quantized
  python optimization/quantize.py --format gguf-f16 gguf-q8_0 gguf-q4_0 --out build/gguf --data python_docs
  python optimization/quantize.py --model runs/pydocs-full --format bnb-int8 --json build/pydocs-int8.json
  python optimization/quantize.py --model HuggingFaceTB/SmolLM2-360M-Instruct --format gguf-q4_k_m
  python optimization/quantize.py --format fp32 int8 --data notes.txt --max-chars 4000 --repeats 5

Formats (--format, one or more):
  fp32, bf16        float weights; saved with save_pretrained (safetensors)
  int8              torch.ao dynamic int8: int8 weights, one scale per output row; each layer's input is
                    quantized on the fly with ONE scale per tensor. transformers cannot save it: written as a
                    state dict (model.int8.pt) beside config.json; load_saved() rebuilds it
  torchao-int8      torchao int8 weight-only (weights int8 per row, computed in float); safetensors
  torchao-int8-dyn  torchao int8 weights + int8 activations with one scale per token; safetensors
  bnb-int8          bitsandbytes LLM.int8(): int8 weights, input columns with outliers (> 6) kept in float
  nf4               bitsandbytes 4-bit NormalFloat, blocks of 64 weights, bf16 compute (QLoRA's format)
  gguf-f16, gguf-q8_0, gguf-q4_k_m, gguf-q4_0, ...   llama.cpp files via optimization/export_gguf.py; a later
                    GGUF type is quantized from the F16 file already in --out (exported first when missing)

Python API (optimization/01_quantization.ipynb uses it):
  FORMATS {name: description};  quantize(model, fmt, out, tokenizer=None) -> Quantized(format, model, files)
  disk_mb(q), memory_mb(q), tokens_per_s(q, items, repeats, threads) -> (median, runs)
  score(q, tokenizer, text, window, stride, threads) -> {"perplexity", "bits_per_byte", "tokens", "same_ids", ...}
  load_saved(path) -> model (a saved folder of any torch format, or a GGUF file as llama_cpp.Llama)
  report(model, fmt, out, text, items, ...) -> one row of the table (all of the above for one format)
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for folder in (ROOT, ROOT / "optimization", ROOT / "evaluation"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

import torch  # noqa: E402

# Library notices that say nothing about the result (and print install paths): torchao's optional CUDA kernels,
# a torch.compile deprecation torchao triggers, bitsandbytes' optional CPU kernel hub and its fp16 input cast.
# Set after importing torch: its logging set-up resets the levels of its own loggers.
for _name in ("torchao", "torch.utils._pytree", "bitsandbytes"):
    logging.getLogger(_name).setLevel(logging.ERROR)

import bench_generate  # noqa: E402
import evaluate_model as em  # noqa: E402
import export_gguf  # noqa: E402

from common import SMOLLM2, ModelNotAvailable, load_model, load_tokenizer, resolve_model  # noqa: E402

FORMATS = {
    "fp32": "float32 weights (the reference)",
    "bf16": "bfloat16 weights: float32's range, 8 bits of mantissa",
    "int8": "torch.ao dynamic int8: weights per row, activations per tensor",
    "torchao-int8": "torchao int8 weight-only, float compute",
    "torchao-int8-dyn": "torchao int8 weights, int8 activations per token",
    "bnb-int8": "bitsandbytes LLM.int8(): int8 per token, outlier columns in float",
    "nf4": "bitsandbytes 4-bit NormalFloat, blocks of 64",
    **{f"gguf-{t}": f"llama.cpp GGUF {t.upper()}" for t in export_gguf.TYPES},
}
TORCH_FORMATS = ("fp32", "bf16", "int8", "torchao-int8", "torchao-int8-dyn", "bnb-int8", "nf4")
WEIGHT_FILES = ("*.safetensors", "*.bin", "*.pt", "*.gguf")


class QuantizeError(ValueError):
    """A problem the user can fix: the CLI prints it on one line and exits with code 2."""


@dataclass
class Quantized:
    """One format of a model: `model` is a torch model, or the GGUF file's path (llama.cpp loads it itself)."""

    format: str
    model: object
    files: list[Path] = field(default_factory=list)
    memory: float | None = None  # MB of weights in memory, measured before the first forward pass (see memory_mb)

    @property
    def is_gguf(self) -> bool:
        return self.format.startswith("gguf-")


# ------------------------------------------------------------------------------------------ quantize

def _check(model: str, fmt: str) -> None:
    if fmt not in FORMATS:
        raise QuantizeError(f"unknown format '{fmt}'; choose from: {', '.join(FORMATS)}")
    if model.startswith("tiny-") and fmt in ("torchao-int8", "torchao-int8-dyn", "bnb-int8", "nf4"):
        raise QuantizeError(f"{fmt} quantizes while loading pretrained weights; a tiny-* model is built from a "
                            "config: save it with save_pretrained and pass the folder")


def _torchao_config(fmt: str):
    try:
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig
    except ImportError:
        raise QuantizeError(f"{fmt} needs torchao: pip install torchao (see requirements.txt)") from None
    from transformers import TorchAoConfig

    return TorchAoConfig(Int8WeightOnlyConfig() if fmt == "torchao-int8" else Int8DynamicActivationInt8WeightConfig())


def load_format(model: str, fmt: str):
    """The model in a torch format, in eval mode on the CPU (quantized while it loads, except torch.ao int8)."""
    _check(model, fmt)
    if model.startswith("tiny-"):
        torch.manual_seed(0)  # random-init: the same seed gives every format (and export_gguf) the same weights
    if fmt in ("fp32", "bf16", "int8", "nf4"):  # evaluation/evaluate_model.py knows these
        dtype = {"fp32": "float32", "bf16": "bfloat16"}.get(fmt, fmt)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # bitsandbytes' notes on its CPU kernels
            return em.load_variant(model, dtype)
    if fmt == "bnb-int8":
        from transformers import BitsAndBytesConfig

        config = BitsAndBytesConfig(load_in_8bit=True)  # llm_int8_threshold=6.0: larger input columns stay float
    else:
        config = _torchao_config(fmt)
    return load_model(model, quantization_config=config, device_map="cpu").eval()


def _name(model: str) -> str:
    return Path(model).name or "model"


def quantize(model: str, fmt: str, out: str | Path, tokenizer=None) -> Quantized:
    """`model` (short name, folder or Hub id) in format `fmt`, written under `out` (see the module doc)."""
    _check(model, fmt)
    out = Path(out)
    if fmt.startswith("gguf-"):
        path = _gguf(model, fmt.removeprefix("gguf-"), out)
        return Quantized(fmt, path, [path])
    loaded = load_format(model, fmt)
    memory = em.model_size_mb(loaded)  # now: after a forward pass, bitsandbytes NF4's state dict is unsafe
    folder = out / f"{_name(model)}-{fmt}"
    folder.mkdir(parents=True, exist_ok=True)
    for old in [f for pattern in WEIGHT_FILES for f in folder.glob(pattern)]:
        old.unlink()  # a previous run's weights would be counted as this one's
    if fmt == "int8":  # torch.ao quantized modules have no save_pretrained: their state dict and the config
        torch.save(loaded.state_dict(), folder / "model.int8.pt")
        loaded.config.save_pretrained(folder)
    else:
        loaded.save_pretrained(folder)
    (tokenizer or load_tokenizer(model)).save_pretrained(folder)
    return Quantized(fmt, loaded, sorted(f for pattern in WEIGHT_FILES for f in folder.glob(pattern)), memory)


def _gguf(model: str, gguf_type: str, out: Path) -> Path:
    """Export one GGUF type; reuse a fresh F16 file in `out` as the quantizer's input when there is one."""
    name = _name(model)
    f16 = out / export_gguf.gguf_name(name, "f16")
    folder = Path(resolve_model(model)) if not model.startswith("tiny-") else None
    fresh = f16.exists() and folder is not None and folder.exists() and \
        f16.stat().st_mtime > max(f.stat().st_mtime for f in folder.iterdir())
    try:
        if gguf_type in export_gguf.QUANT_TYPES and fresh:
            return export_gguf.quantize(f16, out / export_gguf.gguf_name(name, gguf_type), gguf_type)
        return export_gguf.export(model, out, [gguf_type], name=name)[gguf_type]
    except export_gguf.ExportError as err:
        raise QuantizeError(str(err).splitlines()[0]) from err


def load_saved(path: str | Path):
    """Load what quantize() wrote: a GGUF file (llama_cpp.Llama) or a folder of any torch format."""
    path = Path(path)
    if path.suffix == ".gguf":
        return _llama(path, n_ctx=512)
    if not (path / "model.int8.pt").exists():
        return load_model(str(path), device_map="cpu").eval()
    from torch.ao.quantization import per_channel_dynamic_qconfig
    from transformers import AutoConfig, AutoModelForCausalLM

    # the float model from its config, quantized as evaluate_model.load_variant does, then the saved int8 weights
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path)).eval()
    spec = {n: per_channel_dynamic_qconfig for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quantize_dynamic is deprecated in favour of torchao, still in torch
        model = torch.ao.quantization.quantize_dynamic(model, spec, dtype=torch.qint8)
        model.load_state_dict(torch.load(path / "model.int8.pt", weights_only=False))  # packed int8 params
    return model


# ------------------------------------------------------------------------------------------ measure

def _llama(path: str | Path, **kwargs):
    """llama_cpp.Llama without llama.cpp's context notes on stderr (verbose=False leaves some through)."""
    from llama_cpp import Llama
    from llama_cpp._utils import suppress_stdout_stderr

    with suppress_stdout_stderr(disable=False):
        return Llama(model_path=str(path), verbose=False, **kwargs)


def disk_mb(q: Quantized) -> float:
    """MB of the weight files written (a GGUF file also holds the tokenizer, a few MB)."""
    return sum(f.stat().st_size for f in q.files) / 1e6


def memory_mb(q: Quantized) -> float:
    """MB of weights the runtime holds: the state dict as torch serializes it, or llama.cpp's tensor bytes.

    A trap this avoids: on a CPU with AVX512-BF16, bitsandbytes 0.50 repacks NF4 weights for its CPU kernel at the
    first forward pass, and calling state_dict() (or save_pretrained) after that breaks the model (perplexity in
    the millions). So quantize() measures and saves before any forward pass, and this returns that figure."""
    if q.memory is not None:
        return q.memory
    if not q.is_gguf:
        return em.model_size_mb(q.model)
    import llama_cpp

    llm = _llama(q.model, n_ctx=16)
    size = llama_cpp.llama_model_size(llm.model)
    llm.close()
    return size / 1e6


GGUF_NAMES = {"down_proj": "ffn_down", "up_proj": "ffn_up", "gate_proj": "ffn_gate", "q_proj": "attn_q",
              "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output"}


def storage(q: Quantized, layer: str = "down_proj") -> str:
    """How the first block's `layer` matrix is held: module class and element type, or the GGUF tensor type."""
    if q.is_gguf:
        name = f"blk.0.{GGUF_NAMES.get(layer, layer)}.weight"
        return next((kind for n, kind, _ in export_gguf.tensor_types(q.model) if n == name), "?")
    module = next((m for n, m in q.model.named_modules() if n.endswith(layer)), None)
    if module is None:
        return "?"
    weight = module.weight() if callable(module.weight) else module.weight  # torch.ao modules: a method
    element = str(getattr(weight, "qdata", weight).dtype).removeprefix("torch.")  # torchao: the float it stands for
    kind = f"{type(module).__module__.split('.modules')[0]}.{type(module).__name__}"  # e.g. bitsandbytes.nn.Linear4bit
    if getattr(weight, "quant_type", None):  # bitsandbytes 4-bit: two values per byte
        return f"{kind}, {weight.quant_type} (2 per {element})"
    subclass = f" in {type(weight).__name__}" if type(weight).__module__.startswith("torchao") else ""
    return f"{kind}, {element}{subclass}"


def tokens_per_s(q: Quantized, items: list, repeats: int = 3, threads: int = 2) -> tuple[float, list[float]]:
    """Generation tokens/s on bench_generate's workload `items`: the median of `repeats` runs, and every run."""
    runs = []
    for _ in range(repeats):
        if q.is_gguf:
            result = bench_generate.run("llamacpp", items=items, gguf=str(q.model), threads=threads)
        else:
            torch.set_num_threads(threads)
            result = bench_generate.run("hf", q.model, items=items, warmup=not runs)
        runs.append(result.summary()["tokens_per_s"])
    return statistics.median(runs), runs


def gguf_nll(path: str | Path, ids: list[int], window: int, stride: int, threads: int = 2) -> tuple[float, int]:
    """Total NLL (nats) and tokens scored, with llama.cpp's logits and evaluate_model's sliding window."""
    import numpy as np

    llm = _llama(path, n_ctx=window, n_batch=window, n_threads=threads, logits_all=True)
    total, count = 0.0, 0
    for start, first, last in em.window_spans(len(ids), window, stride):
        llm.reset()
        llm.eval(ids[start:last - 1])
        logits = np.asarray(llm.scores[first - 1 - start:last - 1 - start], dtype=np.float64)
        logits -= logits.max(-1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        total -= float(logp[np.arange(last - first), ids[first:last]].sum())
        count += last - first
    llm.close()
    return total, count


def score(q: Quantized, tokenizer, text: str, window: int = 512, stride: int = 256, threads: int = 2) -> dict:
    """Perplexity and bits per byte of `text` (sliding window). GGUF files tokenize it with their own tokenizer;
    same_ids says whether that gave the transformers tokenizer's ids."""
    ids = em.encode(tokenizer, text)
    start = time.perf_counter()
    if q.is_gguf:
        vocab = _llama(q.model, vocab_only=True)
        gguf_ids = ids[:1] + vocab.tokenize(text.encode(), add_bos=False, special=False)
        same = gguf_ids == ids
        nll, n = gguf_nll(q.model, gguf_ids, window, stride, threads)
    else:
        torch.set_num_threads(threads)
        nll, n = em.sliding_window_nll(q.model, ids, window, stride)
        same = True
    return {"perplexity": em.perplexity(nll, n), "bits_per_byte": em.bits_per_byte(nll, len(text.encode())),
            "tokens": n, "same_ids": same, "score_s": time.perf_counter() - start}


def report(model: str, fmt: str, out: str | Path, text: str, items: list, tokenizer=None, window: int = 512,
           stride: int = 256, repeats: int = 3, threads: int = 2) -> dict:
    """Quantize, save and measure one format; the model is dropped before returning (one in memory at a time)."""
    tokenizer = tokenizer or load_tokenizer(model)
    start = time.perf_counter()
    q = quantize(model, fmt, out, tokenizer)
    made_s = time.perf_counter() - start
    speed, runs = tokens_per_s(q, items, repeats, threads)
    row = {"format": fmt, "description": FORMATS[fmt], "disk_mb": disk_mb(q), "memory_mb": memory_mb(q),
           "tokens_per_s": speed, "tokens_per_s_runs": runs, **score(q, tokenizer, text, window, stride, threads),
           "quantize_s": made_s, "files": [str(f) for f in q.files]}
    del q
    return row


# ------------------------------------------------------------------------------------------ CLI

def parse_args(argv=None) -> argparse.Namespace:
    doc = __doc__.split("\n\n")
    parser = argparse.ArgumentParser(description=doc[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(doc[2:4]))
    parser.add_argument("--model", default=SMOLLM2, help="short name, local folder or Hub id (default: %(default)s)")
    parser.add_argument("--format", nargs="+", default=["int8"], metavar="FORMAT",
                        help="one or more of: " + ", ".join(FORMATS) + " (default: int8)")
    parser.add_argument("--out", default="build/quantized", help="folder for the artefacts (default: %(default)s)")
    parser.add_argument("--data", default="shakespeare", help="held-out text: a data set name or a .txt/.jsonl/"
                        ".json/.csv file (default: %(default)s, its held-out plays)")
    parser.add_argument("--column", default="text", help="column holding the text (default: %(default)s)")
    parser.add_argument("--max-chars", type=int, default=8000, help="characters scored (default: %(default)s)")
    parser.add_argument("--window", type=int, default=512, help="tokens per forward pass (default: %(default)s)")
    parser.add_argument("--stride", type=int, help="tokens the window moves by (default: window / 2)")
    parser.add_argument("--requests", type=int, default=2, help="prompts per speed run (default: %(default)s)")
    parser.add_argument("--new-tokens", type=int, default=32, help="tokens generated per prompt (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="speed runs; the median is reported (default: 3)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="CPU threads for torch and llama.cpp (default: torch's choice, %(default)s here)")
    parser.add_argument("--json", type=Path, help="write the results here (default: OUT/report.json)")
    args = parser.parse_args(argv)
    for name in ("max_chars", "window", "requests", "new_tokens", "repeats", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    args.stride = args.stride or max(1, args.window // 2)
    if args.stride > args.window:
        parser.error(f"--stride {args.stride} is larger than --window {args.window}: tokens would be skipped")
    return args


def run(args: argparse.Namespace) -> list[dict]:
    """The CLI job: the held-out text and workload once, then every format in turn."""
    rows, _ = em.load_rows(args.data)
    text = em.join_text(rows, args.column, args.max_chars)
    tokenizer = load_tokenizer(args.model)
    items = bench_generate.workload(tokenizer, args.requests, (64, 64), (args.new_tokens, args.new_tokens))
    return [report(args.model, fmt, args.out, text, items, tokenizer, args.window, args.stride, args.repeats,
                   args.threads) for fmt in args.format]


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        for fmt in args.format:
            _check(args.model, fmt)  # a typo fails in a second, before anything loads
        results = run(args)
    except (QuantizeError, em.DataError, ModelNotAvailable) as err:
        print(f"error: {str(err).splitlines()[0]}", file=sys.stderr)
        return 2
    except ImportError as err:  # an optional library: llama-cpp-python, bitsandbytes, torchao
        print(f"error: {err}. See requirements.txt; llama-cpp-python is built by `make setup`.", file=sys.stderr)
        return 2
    print(f"{'format':17} {'disk MB':>8} {'memory MB':>10} {'tokens/s':>9} {'perplexity':>11} {'bits/byte':>10}")
    for r in results:
        print(f"{r['format']:17} {r['disk_mb']:8.1f} {r['memory_mb']:10.1f} {r['tokens_per_s']:9.1f} "
              f"{r['perplexity']:11.3f} {r['bits_per_byte']:10.4f}")
    path = args.json or Path(args.out) / "report.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    settings = {k: v for k, v in vars(args).items() if k not in ("json", "format")}
    path.write_text(json.dumps({"settings": settings, "results": results}, indent=1, default=str))
    print(f"results written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
