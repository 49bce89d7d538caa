r"""Prune a causal language model and measure what it costs and what it buys: parameters, size, perplexity, speed.

Three methods. `magnitude` (unstructured) sets the smallest-magnitude weights of the decoder's linear layers to zero,
per layer or with one global threshold: the matrices keep their shape, so the model is no smaller and no faster on
dense hardware. `neurons` (structured) removes MLP neurons: rows of gate_proj and up_proj and the matching columns of
down_proj, the same number in every layer, so `intermediate_size` in the config shrinks and the model is really
smaller and faster. `heads` removes attention heads: query heads inside every key/value group (GQA), or with
--head-unit group whole key/value groups (which also shrinks the KV cache). Structured methods rank units by
importance: `activation` (default) is the average size of what a unit writes into the residual stream on calibration
text; `weight` uses weight norms only. The pruned model is saved with its changed config, so from_pretrained loads it.

Examples:
  python optimization/prune.py --method magnitude --amount 0.5             # SmolLM2, 50 % zeros, per layer
  python optimization/prune.py --method magnitude --amount 0.5 --scope global
  python optimization/prune.py --method neurons --amount 0.25 --out build/smollm2-n25   # a loadable, smaller model
  python optimization/prune.py --method heads --amount 0.34                # 1 of the 3 query heads in every group
  python optimization/prune.py --method heads --head-unit group --amount 0.34   # 1 of the 3 KV groups per layer
  python optimization/prune.py --method neurons --amount 0.3 --recover-steps 50 --out build/smollm2-n30-ft
  python optimization/prune.py --method neurons --importance weight --amount 0.25      # no calibration pass
  python optimization/prune.py --model runs/my-llama --calibration notes.txt --data notes.txt --amount 0.2

Data (--calibration, --data): a name from common.load_dataset (its train split for calibration, its held-out split
for evaluation, as evaluation/evaluate_model.py chooses) or a .txt/.jsonl/.json/.csv file. Structured pruning needs
a LLaMA-style model (gate/up/down_proj and q/k/v/o_proj); magnitude pruning works on any causal LM.

Python API (optimization/03_pruning.ipynb uses it):
  decoder_linears(model) -> {name: nn.Linear};  linear_weights(model) -> (nonzero, total);  count_parameters(model)
  magnitude_prune(model, amount, scope="layer"|"global") -> {name: sparsity}
  neuron_scores(model, batches, importance) / head_scores(model, batches, importance) -> [Tensor per layer]
  prune_neurons(model, amount, scores) / prune_heads(model, amount, scores, unit="query"|"group") -> config changes
  calibration_batches(tokenizer, text, seq_len, n) -> Tensor;  perplexity_of(model, tokenizer, text, window, stride)
  speed(model, prompt_tokens, new_tokens, repeats) -> {prefill_tokens_per_s, decode_tokens_per_s}
  finetune(model, batches, steps, lr, keep_zeros) -> [loss per step]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "evaluation")]
from evaluate_model import (  # noqa: E402
    DataError,
    encode,
    join_text,
    load_rows,
    model_size_mb,
    perplexity,
    sliding_window_nll,
)

from common import DATASETS, SMOLLM2, ModelNotAvailable, load_model, load_tokenizer  # noqa: E402

# Loading a model imports torchao through transformers; on a CPU-only machine it logs, with file paths, GPU kernels
# it cannot load, and torch logs a deprecation about its enums. Neither concerns pruning.
logging.getLogger("torchao").setLevel(logging.ERROR)
logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)

METHODS = ("magnitude", "neurons", "heads")
IMPORTANCE = ("activation", "weight")


# ------------------------------------------------------------------------------------------------ counting

def decoder_linears(model) -> dict[str, nn.Linear]:
    """The linear layers of the transformer blocks: every nn.Linear except the output layer (lm_head)."""
    head = model.get_output_embeddings()
    return {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear) and m is not head}


def linear_weights(model) -> tuple[int, int]:
    """(non-zero, total) weights of the decoder's linear layers: what the pruning methods act on."""
    weights = [m.weight for m in decoder_linears(model).values()]
    return sum(int(w.count_nonzero()) for w in weights), sum(w.numel() for w in weights)


def count_parameters(model) -> int:
    """All parameters, a tied embedding / output layer counted once."""
    return sum(p.numel() for p in model.parameters())


def check_amount(amount: float) -> None:
    if not 0 <= amount < 1:
        raise DataError(f"--amount is the fraction to remove and must be in [0, 1), got {amount}")


# ------------------------------------------------------------------------------ unstructured: magnitude

def _kth_smallest(flat: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th smallest value (1-based) of a 1-D tensor, exactly; several times faster than kthvalue on big ones.

    A strided sample brackets the answer; only the values inside the bracket go through kthvalue. If the bracket
    misses (it cannot be wrong, only miss), fall back to kthvalue over everything.
    """
    n = flat.numel()
    if n < 100_000:
        return flat.kthvalue(k).values
    sample = flat[::100]
    m, q = sample.numel(), k / n
    low = sample.kthvalue(max(1, int((q - 0.01) * m))).values
    high = sample.kthvalue(min(m, int((q + 0.01) * m) + 1)).values
    below = int((flat < low).sum())
    inside = flat[(flat >= low) & (flat <= high)]
    if below < k <= below + inside.numel():
        return inside.kthvalue(k - below).values
    return flat.kthvalue(k).values


@torch.no_grad()
def _zero_smallest(weights: list[torch.Tensor], k: int) -> None:
    """Set exactly the k smallest |w| over all these tensors to zero (ties at the threshold: the first ones)."""
    if k == 0:
        return
    flat = torch.cat([w.abs().flatten() for w in weights]) if len(weights) > 1 else weights[0].abs().flatten()
    threshold = _kth_smallest(flat, k)
    ties = k - int((flat < threshold).sum())  # how many magnitudes equal to the threshold must go too (>= 1)
    del flat
    for w in weights:
        a = w.abs()
        mask = a < threshold
        if ties > 0:
            at = a == threshold
            mask |= at & (at.flatten().cumsum(0).view_as(at) <= ties)  # the first `ties` of them
            ties -= min(ties, int(at.sum()))
        w.masked_fill_(mask, 0.0)


def magnitude_prune(model, amount: float, scope: str = "layer") -> dict[str, float]:
    """Zero the `amount` fraction of smallest-magnitude weights of the decoder's linear layers, in place.

    scope "layer": the same fraction in every matrix. scope "global": one threshold over all matrices, so layers
    with small weights lose more. Direct masking (no torch.nn.utils.prune hooks): the zeros are in the weights.
    Returns each layer's sparsity.
    """
    check_amount(amount)
    if scope not in ("layer", "global"):
        raise DataError(f"scope must be 'layer' or 'global', got {scope!r}")
    layers = decoder_linears(model)
    weights = [m.weight.data for m in layers.values()]
    if scope == "layer":
        for w in weights:
            _zero_smallest([w], round(amount * w.numel()))
    else:
        _zero_smallest(weights, round(amount * sum(w.numel() for w in weights)))
    return {name: 1 - int(m.weight.count_nonzero()) / m.weight.numel() for name, m in layers.items()}


# ------------------------------------------------------------------------- structured: neurons and heads

def _blocks(model) -> list[nn.Module]:
    """The decoder layers of a LLaMA-style model; a clear error for other architectures."""
    layers = getattr(getattr(model, "model", None), "layers", None)
    ok = layers is not None and all(
        all(hasattr(layer.mlp, n) for n in ("gate_proj", "up_proj", "down_proj"))
        and all(hasattr(layer.self_attn, n) for n in ("q_proj", "k_proj", "v_proj", "o_proj")) for layer in layers)
    if not ok:
        raise DataError(f"structured pruning needs a LLaMA-style model (model.layers[i].mlp.gate_proj/up_proj/"
                        f"down_proj, self_attn.q/k/v/o_proj); {type(model).__name__} is not. Use --method magnitude")
    return list(layers)


def calibration_batches(tokenizer, text: str, seq_len: int = 256, n: int = 8) -> torch.Tensor:
    """Up to n consecutive windows of seq_len tokens of the text, as a (n, seq_len) tensor of ids."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    n = min(n, len(ids) // seq_len)
    if n == 0:
        raise DataError(f"the calibration text has {len(ids)} tokens; it needs at least {seq_len}")
    return torch.tensor(ids[:n * seq_len]).view(n, seq_len)


@torch.inference_mode()
def _collect_inputs(model, batches: torch.Tensor, modules: list[nn.Module], reduce) -> list[torch.Tensor]:
    """Run the calibration batches once; for each module, sum reduce(module, its input) over all batches."""
    totals: list[torch.Tensor | float] = [0.0] * len(modules)

    def hook(i):
        def fn(module, args):
            totals[i] = totals[i] + reduce(module, args[0].float())
        return fn

    handles = [m.register_forward_pre_hook(hook(i)) for i, m in enumerate(modules)]
    try:
        for row in batches:
            model(input_ids=row[None].to(model.device), logits_to_keep=1)
    finally:
        for h in handles:
            h.remove()
    return [t / batches.numel() for t in totals]  # mean per token


def neuron_scores(model, batches: torch.Tensor | None = None, importance: str = "activation") -> list[torch.Tensor]:
    """Importance of every MLP neuron, one tensor of intermediate_size scores per layer.

    activation: mean over calibration tokens of |h_j| * ||down_proj[:, j]||, where h = act(gate(x)) * up(x) is the
    input of down_proj: exactly the size of what neuron j adds to the residual stream.
    weight: ||gate_proj[j]|| * ||up_proj[j]|| * ||down_proj[:, j]||, no data needed.
    """
    mlps = [b.mlp for b in _blocks(model)]
    out_norms = [m.down_proj.weight.detach().float().norm(dim=0) for m in mlps]
    if importance == "weight":
        return [m.gate_proj.weight.detach().float().norm(dim=1) * m.up_proj.weight.detach().float().norm(dim=1) * o
                for m, o in zip(mlps, out_norms, strict=True)]
    if importance != "activation" or batches is None:
        raise DataError("importance must be 'weight', or 'activation' with calibration batches")
    sums = _collect_inputs(model, batches, [m.down_proj for m in mlps], lambda m, x: x.abs().sum(dim=(0, 1)))
    return [s * o for s, o in zip(sums, out_norms, strict=True)]


def head_scores(model, batches: torch.Tensor | None = None, importance: str = "activation") -> list[torch.Tensor]:
    """Importance of every query head, one tensor of num_attention_heads scores per layer.

    activation: mean over calibration tokens of ||o_proj[:, head] @ a_head||, the size of what the head adds to the
    residual stream. weight: ||q_proj[head rows]|| * ||o_proj[:, head columns]||.
    """
    attns = [b.self_attn for b in _blocks(model)]
    d = attns[0].head_dim
    if importance == "weight":
        return [a.q_proj.weight.detach().float().view(-1, d, a.q_proj.in_features).norm(dim=(1, 2))
                * a.o_proj.weight.detach().float().view(a.o_proj.out_features, -1, d).norm(dim=(0, 2)) for a in attns]
    if importance != "activation" or batches is None:
        raise DataError("importance must be 'weight', or 'activation' with calibration batches")

    def contribution(o_proj, x):  # x: (batch, tokens, heads * d) -> summed norm per head
        w = o_proj.weight.float().view(o_proj.out_features, -1, d)  # (hidden, heads, d)
        per_head = torch.einsum("bthd,ohd->btho", x.view(*x.shape[:2], -1, d), w)
        return per_head.norm(dim=-1).sum(dim=(0, 1))

    return _collect_inputs(model, batches, [a.o_proj for a in attns], contribution)


def _slice_linear(linear: nn.Linear, rows: torch.Tensor | None = None, cols: torch.Tensor | None = None) -> nn.Linear:
    """A new nn.Linear with only the given output rows and/or input columns (same dtype and device)."""
    w = linear.weight.data
    w = w[rows] if rows is not None else w
    w = w[:, cols] if cols is not None else w
    new = nn.Linear(w.shape[1], w.shape[0], bias=linear.bias is not None, dtype=w.dtype, device=w.device)
    new.weight.data.copy_(w)
    if linear.bias is not None:
        new.bias.data.copy_(linear.bias.data[rows] if rows is not None else linear.bias.data)
    return new


def _keep_top(scores: torch.Tensor, keep: int) -> torch.Tensor:
    """Indices of the `keep` highest scores, in their original order (order matters for heads and groups)."""
    return scores.topk(keep).indices.sort().values


@torch.no_grad()
def prune_neurons(model, amount: float, scores: list[torch.Tensor]) -> dict:
    """Remove the lowest-scoring round(amount * intermediate_size) MLP neurons of every layer, in place."""
    check_amount(amount)
    blocks = _blocks(model)
    size = model.config.intermediate_size
    keep = size - round(amount * size)
    if keep < 1:
        raise DataError(f"--amount {amount} would remove all {size} neurons of each layer")
    for block, s in zip(blocks, scores, strict=True):
        idx = _keep_top(s, keep).to(block.mlp.gate_proj.weight.device)
        mlp = block.mlp
        mlp.gate_proj, mlp.up_proj = _slice_linear(mlp.gate_proj, rows=idx), _slice_linear(mlp.up_proj, rows=idx)
        mlp.down_proj = _slice_linear(mlp.down_proj, cols=idx)
        mlp.intermediate_size = keep
    model.config.intermediate_size = keep  # the layers share this config; save_pretrained writes it
    return {"intermediate_size": [size, keep]}


@torch.no_grad()
def prune_heads(model, amount: float, scores: list[torch.Tensor], unit: str = "query") -> dict:
    """Remove attention heads in place; `scores` holds one score per query head per layer (head_scores).

    unit "query": remove round(amount * group size) query heads from every key/value group (GQA: query heads
    i*g .. i*g+g-1 share key/value head i), keeping all key/value heads. unit "group": remove round(amount *
    num_key_value_heads) whole groups, their key/value heads included, which also shrinks the KV cache.
    """
    check_amount(amount)
    if unit not in ("query", "group"):
        raise DataError(f"head unit must be 'query' or 'group', got {unit!r}")
    config, blocks = model.config, _blocks(model)
    heads, kv = config.num_attention_heads, config.num_key_value_heads
    group, d = heads // kv, blocks[0].self_attn.head_dim
    new_heads, new_kv = (heads - kv * round(amount * group), kv) if unit == "query" else \
        (heads - group * round(amount * kv), kv - round(amount * kv))
    if new_kv < 1 or new_heads < new_kv:
        raise DataError(f"--amount {amount} would remove every {'query head of a group' if unit == 'query' else 'group'}"
                        f" ({heads} query heads in {kv} groups)")
    if config.hidden_size % new_heads:  # transformers refuses such a config when loading or saving
        raise DataError(f"{new_heads} heads do not divide hidden_size {config.hidden_size}, which transformers "
                        f"requires; choose another --amount")
    for block, s in zip(blocks, scores, strict=True):
        s = s.view(kv, group)
        if unit == "query":  # the best heads of each group, groups in order
            kept_heads = torch.cat([g * group + _keep_top(s[g], new_heads // kv) for g in range(kv)])
            kept_kv = torch.arange(kv)
        else:
            kept_kv = _keep_top(s.sum(dim=1), new_kv)
            kept_heads = (kept_kv[:, None] * group + torch.arange(group)).flatten()
        attn = block.self_attn
        q_rows = (kept_heads[:, None] * d + torch.arange(d)).flatten().to(attn.q_proj.weight.device)
        kv_rows = (kept_kv[:, None] * d + torch.arange(d)).flatten().to(attn.k_proj.weight.device)
        attn.q_proj, attn.o_proj = _slice_linear(attn.q_proj, rows=q_rows), _slice_linear(attn.o_proj, cols=q_rows)
        attn.k_proj, attn.v_proj = _slice_linear(attn.k_proj, rows=kv_rows), _slice_linear(attn.v_proj, rows=kv_rows)
        attn.num_key_value_groups = new_heads // new_kv
    config.head_dim = d  # explicit: hidden_size // num_attention_heads is no longer the head size
    config.num_attention_heads, config.num_key_value_heads = new_heads, new_kv
    return {"num_attention_heads": [heads, new_heads], "num_key_value_heads": [kv, new_kv]}


def prune(model, method: str, amount: float, batches: torch.Tensor | None = None, importance: str = "activation",
          scope: str = "layer", head_unit: str = "query") -> dict:
    """Apply one method in place; returns what changed (config fields or the sparsity reached)."""
    if method == "magnitude":
        sparsity = magnitude_prune(model, amount, scope)
        return {"max_layer_sparsity": max(sparsity.values()), "min_layer_sparsity": min(sparsity.values())}
    if method == "neurons":
        return prune_neurons(model, amount, neuron_scores(model, batches, importance))
    if method == "heads":
        return prune_heads(model, amount, head_scores(model, batches, importance), head_unit)
    raise DataError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")


# ------------------------------------------------------------------------------------------- measuring

def perplexity_of(model, tokenizer, text: str, window: int = 512, stride: int = 512) -> float:
    """Perplexity of the text with evaluation/evaluate_model.py's sliding window."""
    nll, n = sliding_window_nll(model, encode(tokenizer, text), window, stride)
    return perplexity(nll, n)


@torch.inference_mode()
def speed(model, prompt_tokens: int = 256, new_tokens: int = 32, repeats: int = 3, seed: int = 0,
          warmup: bool = True) -> dict:
    """Median tokens/s of one forward pass over a prompt (prefill) and of greedy decoding after it (batch 1)."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(100, model.config.vocab_size, (1, prompt_tokens), generator=generator).to(model.device)
    mask = torch.ones_like(ids)

    def gen(n):
        return model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n,
                              do_sample=False, pad_token_id=0)

    if warmup:
        gen(2)  # allocations and kernel choices
    prefill, decode = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        model(input_ids=ids, logits_to_keep=1)
        prefill.append(time.perf_counter() - start)
        start = time.perf_counter()
        gen(new_tokens + 1)
        decode.append(time.perf_counter() - start - prefill[-1])  # the first new token costs one prefill
    return {"prefill_tokens_per_s": prompt_tokens / statistics.median(prefill),
            "decode_tokens_per_s": new_tokens / statistics.median(decode)}


def finetune(model, batches: torch.Tensor, steps: int, lr: float = 1e-4, batch_size: int = 4,
             keep_zeros: bool = False) -> list[float]:
    """A short recovery fine-tune (AdamW, next-token loss) on rows of `batches`; returns the loss of every step.

    keep_zeros: re-apply the sparsity mask after every step, so a magnitude-pruned model stays pruned.
    """
    masks = {m: m.weight != 0 for m in decoder_linears(model).values()} if keep_zeros else {}
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0, foreach=False)  # less peak memory
    model.train()
    losses = []
    for step in range(steps):
        rows = torch.arange(step * batch_size, (step + 1) * batch_size) % len(batches)
        ids = batches[rows].to(model.device)
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            for m, mask in masks.items():
                m.weight.mul_(mask)
        losses.append(loss.item())
    model.eval()
    return losses


def describe(model, tokenizer, text: str, window: int, stride: int, new_tokens: int, repeats: int) -> dict:
    """Parameters, non-zero linear weights, size, perplexity and speed of a model, for the JSON report."""
    nonzero, total = linear_weights(model)
    return {"parameters": count_parameters(model), "linear_weights": total, "nonzero_linear_weights": nonzero,
            "size_mb": round(model_size_mb(model), 1),
            "perplexity": round(perplexity_of(model, tokenizer, text, window, stride), 3),
            **{k: round(v, 1) for k, v in speed(model, min(256, window), new_tokens, repeats).items()}}


# ------------------------------------------------------------------------------------------------- CLI

def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:4]))
    parser.add_argument("--model", default=SMOLLM2, help="short name, local folder or Hub id (default: %(default)s)")
    parser.add_argument("--method", choices=METHODS, default="neurons", help="default: %(default)s")
    parser.add_argument("--amount", type=float, default=0.25, help="fraction to remove, in [0, 1) (default: 0.25)")
    parser.add_argument("--scope", choices=("layer", "global"), default="layer", help="magnitude: threshold per "
                        "matrix or one for all (default: %(default)s)")
    parser.add_argument("--head-unit", choices=("query", "group"), default="query",
                        help="heads: remove query heads inside each KV group, or whole KV groups")
    parser.add_argument("--importance", choices=IMPORTANCE, default="activation",
                        help="neurons/heads: how units are ranked (default: %(default)s)")
    parser.add_argument("--calibration", default="shakespeare", help="text for activation importance and "
                        "recovery: data set name (train split) or file (default: %(default)s)")
    parser.add_argument("--calibration-samples", type=int, default=16, help="windows of --seq-len tokens")
    parser.add_argument("--seq-len", type=int, default=256, help="tokens per calibration/fine-tune window")
    parser.add_argument("--data", default="shakespeare", help="held-out evaluation text: data set name or file")
    parser.add_argument("--max-chars", type=int, default=8000, help="characters of --data scored (default: 8000)")
    parser.add_argument("--window", type=int, default=512, help="perplexity window and stride, tokens")
    parser.add_argument("--new-tokens", type=int, default=32, help="greedy tokens per speed measurement")
    parser.add_argument("--repeats", type=int, default=3, help="speed measurements (median reported)")
    parser.add_argument("--recover-steps", type=int, default=0, help="recovery fine-tune steps after pruning")
    parser.add_argument("--lr", type=float, default=1e-4, help="recovery learning rate (default: %(default)s)")
    parser.add_argument("--out", type=Path, help="save the pruned model and tokenizer to this folder")
    parser.add_argument("--json", type=Path, help="also write the report here")
    parser.add_argument("--seed", type=int, default=0, help="seed for the speed prompt and any sampling")
    args = parser.parse_args(argv)
    if not 0 <= args.amount < 1:
        parser.exit(2, f"error: --amount is the fraction to remove and must be in [0, 1), got {args.amount}\n")
    for name in ("calibration_samples", "seq_len", "max_chars", "window", "new_tokens", "repeats"):
        if getattr(args, name) < 1:
            parser.exit(2, f"error: --{name.replace('_', '-')} must be at least 1\n")
    if args.recover_steps < 0:
        parser.exit(2, "error: --recover-steps must be 0 or more\n")
    return args


def run(args: argparse.Namespace) -> dict:
    """The whole CLI job; raises DataError / ModelNotAvailable for problems the user can fix."""
    torch.manual_seed(args.seed)
    eval_rows, eval_source = load_rows(args.data)  # held-out split (test, else validation)
    text = join_text(eval_rows, "text", args.max_chars)
    calib_rows, calib_source = load_rows(args.calibration, "train" if args.calibration in DATASETS else None)
    tokenizer = load_tokenizer(args.model)
    model = load_model(args.model, dtype=torch.float32).eval()
    need_batches = args.recover_steps > 0 or (args.method != "magnitude" and args.importance == "activation")
    windows = max(args.calibration_samples, 4 * args.recover_steps)  # fine-tuning uses 4 windows per step
    calib_text = join_text(calib_rows, "text", 6 * args.seq_len * windows)  # about 4 characters per token
    batches = calibration_batches(tokenizer, calib_text, args.seq_len, args.calibration_samples) \
        if need_batches else None
    measure = (args.window, args.window, args.new_tokens, args.repeats)
    report = {"model": args.model, "method": args.method, "amount": args.amount, "data": eval_source,
              "calibration": calib_source if need_batches else None,
              "original": describe(model, tokenizer, text, *measure)}
    settings = {"magnitude": {"scope": args.scope}, "neurons": {"importance": args.importance},
                "heads": {"importance": args.importance, "head_unit": args.head_unit}}[args.method]
    report["changes"] = prune(model, args.method, args.amount, batches, args.importance, args.scope, args.head_unit)
    report.update(settings)
    if args.recover_steps:
        train = calibration_batches(tokenizer, calib_text, args.seq_len, 4 * args.recover_steps)
        losses = finetune(model, train, args.recover_steps, args.lr, keep_zeros=args.method == "magnitude")
        report["recovery"] = {"steps": args.recover_steps, "first_loss": losses[0], "last_loss": losses[-1]}
    report["pruned"] = describe(model, tokenizer, text, *measure)
    nonzero, total = report["pruned"]["nonzero_linear_weights"], report["original"]["linear_weights"]
    report["fraction_of_linear_weights_removed"] = round(1 - nonzero / total, 4)
    if args.out:
        model.save_pretrained(args.out)
        tokenizer.save_pretrained(args.out)
        report["saved"] = str(args.out)
    return report


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        report = run(args)
    except (DataError, ModelNotAvailable) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
