"""Export a causal language model to ONNX with torch.onnx.export, check it against PyTorch, and generate with it in
onnxruntime (greedy, with the key/value cache as graph inputs and outputs so each new token costs one short step).

The graph: torch.onnx.export cannot pass transformers' cache object (a DynamicCache) through an ONNX graph, so a
small wrapper, DecoderWithPast, takes the cache as plain tensors (past_key_values.{layer}.key/value, shape
[batch, kv_heads, past_sequence, head_dim]), rebuilds a DynamicCache from them, calls the model, and returns the
logits and the grown cache (present.{layer}.key/value). The batch, sequence and past axes are dynamic; an empty
past (length 0) turns the same graph into a full-sequence (prefill) graph. --no-past exports the plain
full-sequence graph instead (input_ids, attention_mask, position_ids -> logits): simpler, but every new token
then re-reads the whole sequence. The exporter is torch's default in torch >= 2.9, the dynamo-based one
(torch.export, then onnxscript translates the ATen graph to ONNX); the TorchScript exporter is deprecated.
optimum-onnx, the usual tool, pins transformers < 4.58, so it cannot run next to transformers 5.

Examples:
  python optimization/export_onnx.py                                # SmolLM2 -> build/onnx/smollm2-135m-instruct
  python optimization/export_onnx.py --int8                         # also model.int8.onnx (dynamic int8)
  python optimization/export_onnx.py --int8 --int8-keep down_proj   # int8, but the MLP down-projections float32
  python optimization/export_onnx.py --no-past --out build/onnx/smollm2-nopast
  python optimization/export_onnx.py --no-optimize                  # twice as fast; onnxruntime optimizes at load
  python optimization/export_onnx.py --prompt "Write a haiku about the sea." --new-tokens 48
  python optimization/export_onnx.py --model runs/pydocs-full --out build/onnx/pydocs   # your fine-tuned model
  python optimization/export_onnx.py --model HuggingFaceTB/SmolLM2-360M-Instruct --opset 20 --threads 4

The output folder holds model.onnx and its weights (model.onnx.data), model.int8.onnx with --int8, the config and
tokenizer (so the folder runs without the PyTorch model) and export.json (settings, max |ONNX - PyTorch| logits).

Python API (the lesson optimization/06_onnx_export.ipynb imports it):
  export(model, out, with_past=True, opset=None, optimize=True) -> Path   write model.onnx (+ .data)
  quantize_int8(src, dst, keep=()) -> Path                             onnxruntime dynamic int8 (MatMul weights)
  module_name(node) -> str                                             the PyTorch module an ONNX node came from
  OrtDecoder(path, threads=2, optimization="all") / TorchDecoder(model)    one forward step each
  greedy(decoder, prompts, max_new_tokens, eos_token_id=None, use_cache=True) -> Generation
  compare(model, decoder) -> float                                     max |logits| difference on a sample batch
  perplexity(decoder, ids) -> float / files_mb(path) -> float
"""

from __future__ import annotations

import argparse
import ast
import json
import logging
import sys
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from common import SMOLLM2, ModelNotAvailable, load_model, load_tokenizer  # noqa: E402

INPUTS = ("input_ids", "attention_mask", "position_ids")
OPSETS = range(18, 24)  # torch's ONNX translations are written for opset 18; it can emit up to 23
OPTIMIZATIONS = ("disable", "basic", "extended", "all")  # onnxruntime's graph optimization levels
TOLERANCE = 1e-3  # max |ONNX - PyTorch| on float32 logits that counts as "the same model"

# transformers imports torchao when it is installed; torchao then logs, with file paths, that its optional CUDA
# kernels did not load and that torch deprecates one of its calls. Harmless on a CPU: keep it out of the output.
for _name in ("torchao", "torch.utils._pytree"):
    logging.getLogger(_name).setLevel(logging.ERROR)


class ExportError(RuntimeError):
    """A problem the user can fix: a model that is not a decoder-only LM, a cache it cannot export, a bad folder."""


# ------------------------------------------------------------------------------ the graph


class DecoderWithPast(torch.nn.Module):
    """model.forward with the KV cache as flat tensors in and out, which an ONNX graph can carry.

    forward(input_ids, attention_mask, position_ids, k0, v0, k1, v1, ...) -> (logits, k0', v0', k1', v1', ...)
    where attention_mask covers past + new tokens and each k', v' is the past with the new tokens appended.
    """

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, position_ids, *past):
        from transformers import DynamicCache

        cache = DynamicCache(ddp_cache_data=list(zip(past[0::2], past[1::2], strict=True)), config=self.model.config)
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, cache=cache,
                         use_cache=True)
        return (out.logits, *[t for layer in out.cache.layers for t in (layer.keys, layer.values)])


class DecoderNoPast(torch.nn.Module):
    """model.forward without a cache: (input_ids, attention_mask, position_ids) -> logits."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, position_ids):
        return self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                          use_cache=False).logits


def cache_layout(model) -> tuple[int, int, int]:
    """(layers, kv_heads, head_dim) of the model's key/value cache, read from one tiny forward pass.

    Raises ExportError when the cache is not a plain growing DynamicCache (sliding-window or hybrid layers, or a
    model that returns no cache): those need --no-past.
    """
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    layers = DynamicCache(config=model.config).layers
    if any(type(layer) is not DynamicLayer for layer in layers):
        kinds = sorted({type(layer).__name__ for layer in layers})
        raise ExportError(f"{type(model).__name__} uses {', '.join(kinds)} cache layers (sliding window or hybrid); "
                          "only plain growing caches are exported with past: use --no-past")
    with torch.no_grad():
        out = model(input_ids=torch.tensor([[1, 2]], device=model.device), use_cache=True)
    cache = getattr(out, "cache", None)
    if not isinstance(cache, DynamicCache) or not cache.layers or cache.layers[0].keys is None:
        raise ExportError(f"{type(model).__name__} returns no key/value cache: use --no-past")
    batch, heads, length, dim = cache.layers[0].keys.shape
    return len(cache.layers), heads, dim


def io_names(layers: int) -> tuple[list[str], list[str]]:
    """Graph input and output names, as optimum and onnxruntime-genai name them."""
    kv = [(i, kind) for i in range(layers) for kind in ("key", "value")]
    return ([*INPUTS, *(f"past_key_values.{i}.{k}" for i, k in kv)],
            ["logits", *(f"present.{i}.{k}" for i, k in kv)])


@contextmanager
def _quiet():
    """Silence the exporter's chatter: warnings about optional packages and deprecations, with file paths in them."""
    names = ("", "torch.onnx", "torch.export", "torch._dynamo", "onnxscript", "transformers")  # "": the root logger
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def export(model, out: str | Path, with_past: bool = True, opset: int | None = None, optimize: bool = True) -> Path:
    """Export `model` (a float32 causal LM) to out/model.onnx, weights in out/model.onnx.data. Returns the path.

    The example inputs (batch 2, 3 new tokens, 5 past tokens) only fix the graph's structure: every axis that
    varies at run time is declared dynamic, and torch.export checks that the code does not depend on its size.
    Sizes 0 and 1 are avoided in the examples because torch.export would specialise on them. `optimize` runs
    onnxscript's graph optimizer (constant folding, dead-code removal) after the translation: a smaller, cleaner
    file, for about as long again as the export itself; onnxruntime optimizes the graph when it loads it anyway.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    batch, new, past_len = 2, 3, 5
    ids = torch.randint(0, model.config.vocab_size, (batch, new))
    mask = torch.ones(batch, past_len + new, dtype=torch.long)
    pos = torch.arange(past_len, past_len + new).expand(batch, new)
    axes = {0: "batch", 1: "sequence"}
    shapes = [axes, {0: "batch", 1: "total_sequence"}, axes]
    if with_past:
        layers, heads, dim = cache_layout(model)
        past = tuple(torch.randn(batch, heads, past_len, dim) for _ in range(2 * layers))
        module, args = DecoderWithPast(model), (ids, mask, pos, *past)
        shapes.append(tuple({0: "batch", 2: "past_sequence"} for _ in past))
        inputs, outputs = io_names(layers)
    else:
        module, args = DecoderNoPast(model), (ids, mask[:, past_len:], pos - past_len)
        shapes[1] = axes
        inputs, outputs = list(INPUTS), ["logits"]
    with _quiet(), torch.no_grad():
        program = torch.onnx.export(module.eval(), args, dynamo=True, dynamic_shapes=tuple(shapes),
                                    input_names=inputs, output_names=outputs, opset_version=opset, optimize=optimize,
                                    verbose=False)
        program.save(str(out / "model.onnx"), external_data=True)
    return out / "model.onnx"


def fold_weight_transposes(model) -> int:
    """Replace each Transpose of a stored weight by the transposed weight; returns how many were folded.

    A model whose output layer shares the embedding matrix (tied weights) is exported as MatMul(x, Transpose(W)),
    and quantize_dynamic only quantizes a MatMul whose weight is a stored constant.
    """
    from onnx import numpy_helper

    weights = {t.name: t for t in model.graph.initializer}
    folded = [n for n in model.graph.node if n.op_type == "Transpose" and n.input[0] in weights]
    for node in folded:
        perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
        array = numpy_helper.to_array(weights[node.input[0]])
        model.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(array.transpose(perm)),
                                                               node.output[0]))
        model.graph.node.remove(node)
    return len(folded)


def module_name(node) -> str:
    """The PyTorch module an exported node came from (e.g. model.model.layers.3.mlp.down_proj), from the metadata
    torch.onnx writes on each node; "" when absent."""
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            return ast.literal_eval(prop.value)[-2]
    return ""


def quantize_int8(src: str | Path, dst: str | Path, keep: tuple[str, ...] = ()) -> Path:
    """Dynamic int8 quantization (onnxruntime.quantization.quantize_dynamic): MatMul weights stored as int8 with one
    scale per tensor; activations are quantized on the fly at each call. No calibration data needed.

    `keep`: MatMuls of modules whose name contains one of these strings stay float32 (e.g. "down_proj").
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(src))  # with its external weights
    fold_weight_transposes(model)
    excluded = [n.name for n in model.graph.node
                if n.op_type == "MatMul" and keep and any(k in module_name(n) for k in keep)]
    if keep and not excluded:
        raise ExportError(f"no MatMul comes from a module whose name contains {' or '.join(keep)}")
    with _quiet():
        quantize_dynamic(model, str(dst), op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8,
                         nodes_to_exclude=excluded)
    return Path(dst)


def files_mb(path: str | Path) -> float:
    """Size on disk of an .onnx file plus its external-data file, in MB."""
    path = Path(path)
    data = path.with_name(path.name + ".data")
    return (path.stat().st_size + (data.stat().st_size if data.exists() else 0)) / 1e6


# ------------------------------------------------------------------------------ running it


class OrtDecoder:
    """One forward step of an exported model in onnxruntime: __call__(ids, mask, pos, past) -> (logits, presents).

    `optimization` is onnxruntime's graph optimization level (constant folding, node fusions...): "all" is its
    default. `threads` is the intra-op thread count (one operator spread over that many cores).
    """

    def __init__(self, path: str | Path, threads: int = 2, optimization: str = "all"):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL, "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[optimization]
        options.log_severity_level = 3  # errors only
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        past = [i for i in self.session.get_inputs() if i.name.startswith("past_key_values.")]
        self.with_past = bool(past)
        self.kv_shape = tuple(past[0].shape[1::2]) if past else None  # (kv_heads, head_dim)
        self.layers = len(past) // 2

    def empty_past(self, batch: int) -> list[np.ndarray]:
        heads, dim = self.kv_shape
        return [np.zeros((batch, heads, 0, dim), np.float32) for _ in range(2 * self.layers)]

    def __call__(self, ids, mask, pos, past=None):
        feed = dict(zip(INPUTS, (ids, mask, pos), strict=True))
        if self.with_past:
            feed |= dict(zip(self.inputs[len(INPUTS):], past if past is not None else self.empty_past(len(ids)),
                             strict=True))
        logits, *presents = self.session.run(None, feed)
        return logits, presents


class TorchDecoder:
    """The same step on the PyTorch model (numpy in, numpy out), so both runtimes share one generation loop."""

    def __init__(self, model):
        self.wrapper = DecoderWithPast(model.eval()).eval()
        self.layers, heads, dim = cache_layout(model)
        self.kv_shape, self.with_past = (heads, dim), True

    def empty_past(self, batch: int) -> list[np.ndarray]:
        heads, dim = self.kv_shape
        return [np.zeros((batch, heads, 0, dim), np.float32) for _ in range(2 * self.layers)]

    def __call__(self, ids, mask, pos, past=None):
        past = past if past is not None else self.empty_past(len(ids))
        with torch.inference_mode():
            logits, *presents = self.wrapper(*(torch.from_numpy(np.ascontiguousarray(a)) for a in (ids, mask, pos)),
                                             *(torch.from_numpy(p) for p in past))
        return logits.numpy(), [p.numpy() for p in presents]


@dataclass
class Generation:
    """New tokens per prompt (up to and including EOS) and the seconds of each forward step."""

    tokens: list[list[int]]
    prefill_s: float = 0.0
    step_s: list[float] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float:
        return sum(map(len, self.tokens)) / (self.prefill_s + sum(self.step_s))

    @property
    def step_ms(self) -> float:
        """Median time of one decoding step (one new token per sequence), in ms."""
        return 1000 * float(np.median(self.step_s)) if self.step_s else float("nan")


def greedy(decoder, prompts: list[list[int]], max_new_tokens: int, eos_token_id: int | list[int] | None = None,
           pad_token_id: int = 0, use_cache: bool = True) -> Generation:
    """Greedy decoding for a batch of prompts (left-padded, like transformers' generate).

    With use_cache the prompt goes through once and each later step feeds one token plus the cache; without, every
    step feeds the whole sequence again (the only way with a --no-past graph).
    """
    eos = set([eos_token_id] if isinstance(eos_token_id, int) else eos_token_id or [])
    width = max(map(len, prompts))
    ids = np.array([[pad_token_id] * (width - len(p)) + list(p) for p in prompts], np.int64)
    mask = np.array([[0] * (width - len(p)) + [1] * len(p) for p in prompts], np.int64)
    use_cache = use_cache and decoder.with_past
    past, new, done = None, [[] for _ in prompts], np.zeros(len(prompts), bool)
    feed_ids, result = ids, Generation(new)
    for step in range(max_new_tokens):
        pos = np.where(mask == 1, mask.cumsum(-1) - 1, 1)  # positions skip the padding; pads get a dummy 1
        start = time.perf_counter()
        logits, presents = decoder(feed_ids, mask, pos[:, -feed_ids.shape[1]:], past)
        token = logits[:, -1].argmax(-1)
        if step == 0:
            result.prefill_s = time.perf_counter() - start
        else:
            result.step_s.append(time.perf_counter() - start)
        token = np.where(done, pad_token_id, token)
        for row, t in enumerate(token):
            if not done[row]:
                new[row].append(int(t))
        done |= np.isin(token, list(eos))
        if done.all():
            break
        ids, mask = np.concatenate([ids, token[:, None]], 1), np.concatenate([mask, np.ones((len(ids), 1), np.int64)], 1)
        past, feed_ids = (presents, token[:, None]) if use_cache else (None, ids)
    return result


def compare(model, decoder) -> float:
    """Max |decoder logits - PyTorch logits| over a sample batch: a left-padded prompt step, then one cached step.

    Padding positions are left out (their logits mean nothing in either runtime).
    """
    torch_step = TorchDecoder(model)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, model.config.vocab_size, (2, 7)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[1, :3] = 0
    pos = np.where(mask == 1, mask.cumsum(-1) - 1, 1)
    ours, past = decoder(ids, mask, pos)
    ref, ref_past = torch_step(ids, mask, pos)
    diff = float(np.abs(ours - ref)[mask == 1].max())
    if decoder.with_past:  # one more token through the cache
        ids2, mask2 = ids[:, :1], np.ones((2, 8), np.int64)
        mask2[1, :3] = 0
        pos2 = pos[:, -1:] + 1
        ours, _ = decoder(ids2, mask2, pos2, past)
        ref, _ = torch_step(ids2, mask2, pos2, ref_past)
        diff = max(diff, float(np.abs(ours - ref).max()))
    return diff


def perplexity(decoder, ids: list[int]) -> float:
    """exp(mean next-token negative log-likelihood) of one sequence, in one forward pass."""
    x = np.array([ids], np.int64)
    logits, _ = decoder(x, np.ones_like(x), np.arange(len(ids))[None])
    logits = logits[0, :-1].astype(np.float64)
    logprobs = logits - logits.max(-1, keepdims=True)
    logprobs -= np.log(np.exp(logprobs).sum(-1, keepdims=True))
    return float(np.exp(-logprobs[np.arange(len(ids) - 1), ids[1:]].mean()))


# ------------------------------------------------------------------------------ command line


def _writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ExportError(f"cannot write to the output folder {out}: {err.strerror or err}") from err


def _load(name: str):
    """The model in float32 (the reference the export is checked against) and its tokenizer."""
    try:
        model = load_model(name, dtype=torch.float32).eval()
    except ModelNotAvailable:
        raise
    except (ValueError, KeyError) as err:  # transformers: "Unrecognized configuration class ... for AutoModelFor..."
        raise ExportError(f"{name} is not a decoder-only causal LM that transformers can load "
                          f"(AutoModelForCausalLM): {str(err).splitlines()[0]}") from err
    if model.config.is_encoder_decoder:
        raise ExportError(f"{type(model).__name__} is an encoder-decoder model; this script exports decoder-only LMs")
    return model, load_tokenizer(name)


def _default_out(model: str) -> Path:
    return ROOT / "build" / "onnx" / Path(model.rstrip("/")).name


def _show(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("--model", default=SMOLLM2, help="short name, local folder or Hub id (default: %(default)s)")
    parser.add_argument("--out", type=Path, help="output folder (default: build/onnx/<model name>)")
    parser.add_argument("--opset", type=int, help=f"ONNX opset, {OPSETS.start}-{OPSETS.stop - 1} "
                                                  "(default: torch's default, 20)")
    past = parser.add_mutually_exclusive_group()
    past.add_argument("--with-past", dest="with_past", action="store_true", default=True,
                      help="graph with the KV cache as inputs/outputs (default)")
    past.add_argument("--no-past", dest="with_past", action="store_false", help="plain full-sequence logits graph")
    parser.add_argument("--no-optimize", dest="optimize", action="store_false",
                        help="skip onnxscript's graph optimizer: about twice as fast, a larger graph that "
                             "onnxruntime optimizes when it loads it")
    parser.add_argument("--int8", action="store_true", help="also write model.int8.onnx (dynamic int8 quantization)")
    parser.add_argument("--int8-keep", nargs="+", default=[], metavar="NAME",
                        help="with --int8: keep the MatMuls of modules whose name contains NAME in float32 "
                             "(e.g. down_proj, whose inputs have outliers that int8 activations clip)")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads (default: 2)")
    parser.add_argument("--prompt", default="What is the capital of France?",
                        help="a user message to answer with the exported model after the check")
    parser.add_argument("--new-tokens", type=int, default=32, help="tokens to generate for --prompt (0: skip)")
    args = parser.parse_args(argv)
    if args.opset is not None and args.opset not in OPSETS:
        parser.error(f"--opset must be between {OPSETS.start} and {OPSETS.stop - 1}, got {args.opset}")
    if args.int8_keep and not args.int8:
        parser.error("--int8-keep only makes sense with --int8")
    if args.threads < 1 or args.new_tokens < 0:
        parser.error("--threads must be at least 1 and --new-tokens at least 0")
    return args


def _prompt_ids(tokenizer, text: str) -> list[int]:
    if tokenizer.chat_template:
        return tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                             return_dict=True)["input_ids"]
    return tokenizer(text)["input_ids"]


def main(argv=None) -> int:
    args = parse_args(argv)
    out = args.out or _default_out(args.model)
    try:
        _writable(out)
        model, tokenizer = _load(args.model)
        start = time.perf_counter()
        path = export(model, out, with_past=args.with_past, opset=args.opset, optimize=args.optimize)
    except (ExportError, ModelNotAvailable) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - start
    model.config.save_pretrained(out)
    model.generation_config.save_pretrained(out)
    tokenizer.save_pretrained(out)
    decoder = OrtDecoder(path, threads=args.threads)
    diff = compare(model, decoder)
    print(f"exported {args.model} to {_show(path)} in {seconds:.0f} s: {files_mb(path):.0f} MB, "
          f"{'with' if args.with_past else 'without'} past key values")
    print(f"max |onnxruntime - torch| logits = {diff:.2e} ({'ok' if diff <= TOLERANCE else 'TOO LARGE'}, "
          f"tolerance {TOLERANCE:g})")
    report = {"model": args.model, "with_past": args.with_past, "opset": args.opset, "optimize": args.optimize, "export_s": round(seconds, 1),
              "max_abs_diff": diff, "mb": round(files_mb(path), 1)}
    decoders = {"float32": decoder}
    if args.int8:
        try:
            int8 = quantize_int8(path, out / "model.int8.onnx", keep=tuple(args.int8_keep))
        except ExportError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        decoders["int8"] = OrtDecoder(int8, threads=args.threads)
        report |= {"int8_mb": round(files_mb(int8), 1), "int8_keep": args.int8_keep}
        print(f"int8: {_show(int8)}, {files_mb(int8):.0f} MB")
    if args.new_tokens:
        eos = model.generation_config.eos_token_id
        for name, dec in decoders.items():
            gen = greedy(dec, [_prompt_ids(tokenizer, args.prompt)], args.new_tokens, eos_token_id=eos,
                         pad_token_id=tokenizer.pad_token_id or 0)
            print(f"{name} ({gen.tokens_per_s:.1f} tok/s): {tokenizer.decode(gen.tokens[0], skip_special_tokens=True)!r}")
    (out / "export.json").write_text(json.dumps(report, indent=2))
    return 0 if diff <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
