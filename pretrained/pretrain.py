"""Pretrain a small GPT-2, LLaMA, BERT, RoBERTa, ELECTRA or T5 model from scratch on a text corpus.

Examples:
  python pretrained/pretrain.py --arch gpt2 --steps 300 --output runs/gpt2
  python pretrained/pretrain.py --arch llama --corpus my_notes.txt --output runs/llama   # your own text
  python pretrained/pretrain.py --arch bert --steps 200 --output runs/bert              # MLM, static masks
  python pretrained/pretrain.py --arch roberta --output runs/roberta                    # MLM, dynamic masks
  python pretrained/pretrain.py --arch electra --output runs/electra     # replaced-token detection
  python pretrained/pretrain.py --arch t5 --output runs/t5              # span corruption
  python pretrained/pretrain.py --arch gpt2 --train-tokenizer 4096 --output runs/gpt2-bpe4k
  python pretrained/pretrain.py --arch gpt2 --layers 6 --hidden 256 --heads 8 --context 256 --output runs/big
  python pretrained/pretrain.py --arch gpt2 --steps 1000 --save-every 100 --output runs/long
  python pretrained/pretrain.py --arch gpt2 --steps 1000 --save-every 100 --output runs/long --resume

--corpus is a data set name from common.load_dataset with a `text` column (default shakespeare:
its validation split is held out) or a .txt file (its last 10% is held out). The tokenizer is the
one the tiny model borrows (SmolLM2's BPE for gpt2/llama/t5, MiniLM's WordPiece for the encoders),
a tokenizer folder, or a new byte-level BPE trained on the corpus (--train-tokenizer VOCAB).
The output folder holds the model (load it with from_pretrained; for ELECTRA the discriminator),
the tokenizer, loss_log.jsonl, metrics.json and checkpoints/ (for --resume). A resumed run ends
with the same weights and losses as an uninterrupted one: batches are a function of the step.

Python API (import it from pretrained/, e.g. `from pretrain import build_model, train`):
  ARCHS, OBJECTIVES, KINDS                    architectures; objective and common.load_model kind of each
  load_corpus(corpus) -> (train_docs, validation_docs)
  load_pretrain_tokenizer(arch, name=None) -> tokenizer          borrowed default, folder or name
  train_tokenizer(docs, vocab_size) -> tokenizer                 byte-level BPE with all specials
  prepare_tokenizer(arch, tokenizer) -> tokenizer                adds pad/mask/sentinels if missing
  build_model(arch, tokenizer, layers=4, hidden=128, heads=4, context=128) -> model (random init)
  tokenize(docs, tokenizer) -> LongTensor                        one stream, </s> between documents
  make_examples(ids, arch, tokenizer, context) -> LongTensor [N, context]
  batch_indices(n, batch_size, step, seed) / make_batches(examples, batch_size, seed, start_step, steps)
  row_seeds(arch, seed, step, index) -> seeds for the objective (static vs dynamic masking)
  compute_loss(arch, model, batch, tokenizer, seeds)   (objectives.py: causal_lm_loss, mlm_loss,
                                                        electra_loss, span_corruption_loss, ...)
  evaluate(arch, model, tokenizer, examples, batch_size=16, max_examples=256) -> mean loss
  train(arch, model, tokenizer, train_examples, steps=..., ...) -> TrainResult (log, final_loss, ...)
  save_model(model, tokenizer, output)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import transformers
from objectives import OBJECTIVES, ElectraPair, causal_lm_loss, mix_seed  # noqa: F401  (re-exported)
from tqdm.auto import tqdm

from common import ModelNotAvailable, load_dataset, load_tokenizer, pick_device, seed_everything, tiny_config

ARCHS = tuple(OBJECTIVES)
ENCODERS = ("bert", "roberta", "electra")
# common.load_model(output_folder, kind=KINDS[arch]) reloads a saved model; ELECTRA's discriminator
# needs transformers.AutoModelForPreTraining (kind "encoder" gives its body without the head).
KINDS = {"gpt2": "causal-lm", "llama": "causal-lm", "bert": "masked-lm", "roberta": "masked-lm",
         "electra": "encoder", "t5": "seq2seq"}
N_SENTINELS = 100
EVAL_SEED = 12345  # held-out masks/spans depend on the example only, the same for every run


# ------------------------------------------------------------------------------------ data

def load_corpus(corpus: str) -> tuple[list[str], list[str]]:
    """Training and held-out documents: a load_dataset name (train/validation splits) or a .txt file."""
    path = Path(corpus).expanduser()
    if corpus.endswith(".txt") or path.exists():
        if not path.is_file():
            raise ValueError(f"corpus file not found: {corpus}" if not path.exists() else f"corpus is not a file: {corpus}")
        text = path.read_text(encoding="utf-8", errors="replace").strip()
        if not text:
            raise ValueError(f"corpus file is empty: {corpus}")
        cut = text.rfind("\n", 0, int(len(text) * 0.9))
        cut = cut if cut > len(text) * 0.5 else int(len(text) * 0.9)
        return [text[:cut]], [text[cut:]]
    try:
        data = load_dataset(corpus)
    except (KeyError, ValueError) as err:
        raise ValueError(f"unknown corpus '{corpus}': give a data set name or a .txt file ({err})") from None
    if "text" not in data["train"].column_names or "validation" not in data:
        raise ValueError(f"data set '{corpus}' has no text column or no validation split")
    return list(data["train"]["text"]), list(data["validation"]["text"])


def tokenize(docs: list[str], tokenizer) -> torch.Tensor:
    """All documents as one stream of token ids, with the end-of-text token between documents."""
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    backend = getattr(tokenizer, "backend_tokenizer", None)  # Rust tokenizer: 2x faster without offsets
    if backend is not None:  # a copy without the padding/truncation a tokenizer.json may carry (MiniLM: 128)
        backend = type(backend).from_str(backend.to_str())
        backend.no_padding()
        backend.no_truncation()
    ids: list[int] = []
    for doc in docs:  # the lines of a document in one batch call (run in parallel)
        lines = doc.splitlines(keepends=True)
        if backend is not None and hasattr(backend, "encode_batch_fast"):
            encoded = [e.ids for e in backend.encode_batch_fast(lines, add_special_tokens=False)]
        else:
            encoded = tokenizer(lines, add_special_tokens=False)["input_ids"]
        for line_ids in encoded:
            ids += line_ids
        ids.append(eos)
    return torch.tensor(ids, dtype=torch.long)


def make_examples(ids: torch.Tensor, arch: str, tokenizer, context: int, name: str = "text") -> torch.Tensor:
    """Cut the stream into non-overlapping rows of `context` tokens (encoders: [CLS] ... [SEP])."""
    body = context - 2 if arch in ENCODERS else context
    n = len(ids) // body
    if n == 0:
        raise ValueError(f"the {name} has only {len(ids)} tokens, fewer than one example of {body}; "
                         f"use more text or a smaller --context")
    rows = ids[: n * body].view(n, body)
    if arch in ENCODERS:
        cls = torch.full((n, 1), tokenizer.cls_token_id)
        sep = torch.full((n, 1), tokenizer.sep_token_id)
        rows = torch.cat([cls, rows, sep], dim=1)
    return rows


def batch_indices(n_examples: int, batch_size: int, step: int, seed: int) -> torch.Tensor:
    """Example indices for training step `step` (0-based): a seeded shuffle per epoch.

    A pure function of (step, seed), so a resumed run draws exactly the same batches."""
    positions = torch.arange(step * batch_size, (step + 1) * batch_size)
    out = torch.empty(batch_size, dtype=torch.long)
    for epoch in positions.div(n_examples, rounding_mode="floor").unique().tolist():
        order = torch.randperm(n_examples, generator=torch.Generator().manual_seed(mix_seed(seed, epoch)))
        here = positions // n_examples == epoch
        out[here] = order[positions[here] % n_examples]
    return out


def make_batches(examples: torch.Tensor, batch_size: int, seed: int, start_step: int = 0,
                 steps: int | None = None) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """Yield (step, example_indices, batch) from `start_step` on (forever when `steps` is None)."""
    step = start_step
    while steps is None or step < steps:
        index = batch_indices(len(examples), batch_size, step, seed)
        yield step, index, examples[index]
        step += 1


def row_seeds(arch: str, seed: int, step: int | None, index: torch.Tensor) -> list[int]:
    """Seeds of the objective's randomness, one per row. BERT (static masking): one mask per example,
    fixed for the whole run. Others (dynamic): new per step. step=None: held-out, fixed per example."""
    if step is None:
        return [mix_seed(EVAL_SEED, i) for i in index.tolist()]
    if arch == "bert":
        return [mix_seed(seed, i) for i in index.tolist()]
    return [mix_seed(seed, step, row) for row in range(len(index))]


# ------------------------------------------------------------------------------- tokenizer/model

def load_pretrain_tokenizer(arch: str, name: str | None = None):
    """The tokenizer the tiny `arch` borrows (name=None), or a tokenizer folder / name; prepared."""
    check_arch(arch)
    return prepare_tokenizer(arch, load_tokenizer(name or f"tiny-{arch}"))


def train_tokenizer(docs: list[str], vocab_size: int = 4096):
    """A byte-level BPE trained on `docs` (a few seconds), with <s> </s> <pad> <unk> <mask>;
    <s>/</s> double as [CLS]/[SEP], so the same tokenizer serves every architecture."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # RoBERTa's order and ids
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(docs, vocab_size=vocab_size, special_tokens=specials, show_progress=False)
    return PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>", unk_token="<unk>", mask_token="<mask>",
                                   cls_token="<s>", sep_token="</s>")


def prepare_tokenizer(arch: str, tokenizer):
    """Add what `arch`'s objective needs and the tokenizer lacks (in place, idempotent): a pad token,
    [CLS]/[SEP]/[MASK] for encoders, </s> and 100 <extra_id_N> sentinels for T5. build_model sizes
    the embeddings to len(tokenizer), so added tokens get rows of their own."""
    if tokenizer.eos_token is None and arch in ("t5", "gpt2", "llama"):
        tokenizer.add_special_tokens({"eos_token": "</s>"})
    if tokenizer.pad_token is None:
        tokenizer.add_special_tokens({"pad_token": tokenizer.eos_token or "<pad>"})
    if arch in ENCODERS:
        for key, default in [("cls_token", tokenizer.bos_token or "<s>"), ("sep_token", tokenizer.eos_token or "</s>"),
                             ("mask_token", "<mask>")]:
            if getattr(tokenizer, key) is None:
                tokenizer.add_special_tokens({key: default})
    if arch == "t5" and "<extra_id_0>" not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"extra_special_tokens": [f"<extra_id_{i}>" for i in range(N_SENTINELS)]},
                                     replace_extra_special_tokens=False)
    return tokenizer


def check_arch(arch: str) -> None:
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture '{arch}'; choose one of: {', '.join(ARCHS)}")


def model_config(arch: str, tokenizer, layers: int = 4, hidden: int = 128, heads: int = 4, context: int = 128):
    """A transformers config of `arch` with this size, sized to the tokenizer (len(tokenizer)).

    The feed-forward layer is 4 x hidden wide. Decoders train without dropout (as LLaMA does; it
    slows short runs down), the encoders and T5 keep their papers' dropout of 0.1."""
    check_arch(arch)
    if hidden % heads:
        raise ValueError(f"--hidden {hidden} must be a multiple of --heads {heads}")
    ids = dict(pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
               bos_token_id=tokenizer.bos_token_id)
    encoder = dict(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                   intermediate_size=4 * hidden, max_position_embeddings=context)
    size = {
        "gpt2": dict(n_embd=hidden, n_layer=layers, n_head=heads, n_inner=4 * hidden, n_positions=context,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0),  # one pass over the data: no dropout
        "llama": dict(encoder, num_key_value_heads=heads // 2 if heads % 2 == 0 else heads),
        # RoBERTa numbers positions from pad_token_id + 1 (pad 1: 2, 3, ...), so it needs that many more
        "bert": encoder, "roberta": dict(encoder, max_position_embeddings=context + tokenizer.pad_token_id + 1),
        "electra": dict(encoder, embedding_size=hidden),
        "t5": dict(d_model=hidden, num_layers=layers, num_decoder_layers=layers, num_heads=heads,
                   d_kv=hidden // heads, d_ff=4 * hidden, decoder_start_token_id=tokenizer.pad_token_id),
    }[arch]
    return tiny_config(arch, vocab_size=len(tokenizer), **ids, **size)


def build_model(arch: str, tokenizer, layers: int = 4, hidden: int = 128, heads: int = 4, context: int = 128):
    """A randomly initialised model of `arch` (seed torch first for a reproducible init).

    gpt2/llama: *ForCausalLM, bert/roberta: *ForMaskedLM, t5: T5ForConditionalGeneration,
    electra: an objectives.ElectraPair (generator at half the width + discriminator)."""
    prepare_tokenizer(arch, tokenizer)
    config = model_config(arch, tokenizer, layers, hidden, heads, context)
    if arch == "electra":
        gen_heads = max(1, heads // 2) if (hidden // 2) % max(1, heads // 2) == 0 else 1
        gen_config = config.__class__(**{**config.to_dict(), "hidden_size": hidden // 2,
                                         "num_attention_heads": gen_heads, "intermediate_size": 2 * hidden})
        return ElectraPair(transformers.ElectraForMaskedLM(gen_config), transformers.ElectraForPreTraining(config))
    auto = {"t5": "AutoModelForSeq2SeqLM", "bert": "AutoModelForMaskedLM", "roberta": "AutoModelForMaskedLM"}
    return getattr(transformers, auto.get(arch, "AutoModelForCausalLM")).from_config(config)


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # tied/shared weights counted once


def save_model(model, tokenizer, output: str | Path) -> None:
    """Save a folder that from_pretrained loads: weights, config and tokenizer."""
    model.save_pretrained(output)
    tokenizer.save_pretrained(output)


# ---------------------------------------------------------------------------------- training

def compute_loss(arch: str, model, batch: torch.Tensor, tokenizer, seeds: list[int]) -> torch.Tensor:
    """The pretraining loss of `arch` on one batch (see objectives.OBJECTIVES)."""
    return OBJECTIVES[arch](model, batch, tokenizer, seeds)


@torch.no_grad()
def evaluate(arch: str, model, tokenizer, examples: torch.Tensor, batch_size: int = 16,
             max_examples: int | None = 256) -> float:
    """Mean loss over up to `max_examples` evenly spaced examples, with masks fixed per example.
    For causal LMs and T5, exp(loss) is the perplexity of the predicted tokens."""
    was_training = model.training
    model.eval()
    count = len(examples) if max_examples is None else min(max_examples, len(examples))
    index = torch.linspace(0, len(examples) - 1, count).round().long()
    losses, weights = [], []
    for part in index.split(batch_size):
        losses.append(compute_loss(arch, model, examples[part], tokenizer, row_seeds(arch, 0, None, part)).item())
        weights.append(len(part))
    model.train(was_training)
    return float(np.average(losses, weights=weights))


@dataclass
class TrainResult:
    log: list[dict] = field(default_factory=list)  # one row per step: step, loss, lr, tokens (+ val_loss)
    seconds: float = 0.0  # wall time of the steps run in this call
    tokens_per_second: float = 0.0

    @property
    def final_loss(self) -> float:
        return self.log[-1]["loss"]

    @property
    def val_log(self) -> list[tuple[int, float]]:
        return [(row["step"], row["val_loss"]) for row in self.log if "val_loss" in row]


def make_scheduler(optimizer: torch.optim.Optimizer, steps: int, warmup: float = 0.1) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over `warmup` of the steps, then cosine decay to 10 % of the peak."""
    warm = max(1, int(steps * warmup))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, steps - warm)))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _checkpoint_dir(output: Path) -> Path:
    return output / "checkpoints"


def save_checkpoint(output: Path, step: int, model, optimizer, scheduler, settings: dict) -> Path:
    """Everything a resume needs after `step` steps; written atomically, older checkpoints removed."""
    folder = _checkpoint_dir(output)
    folder.mkdir(parents=True, exist_ok=True)
    state = dict(step=step, model=model.state_dict(), optimizer=optimizer.state_dict(),
                 scheduler=scheduler.state_dict(), settings=settings, torch_rng=torch.get_rng_state(),
                 python_rng=random.getstate(), numpy_rng=np.random.get_state(),
                 cuda_rng=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)
    path = folder / f"step-{step:06d}.pt"
    torch.save(state, path.with_suffix(".tmp"))
    os.replace(path.with_suffix(".tmp"), path)
    for old in folder.glob("step-*.pt"):
        if old != path:
            old.unlink()
    return path


def latest_checkpoint(output: Path) -> Path | None:
    found = sorted(_checkpoint_dir(output).glob("step-*.pt"))
    return found[-1] if found else None


def _resume(output: Path, model, optimizer, scheduler, settings: dict) -> int:
    """Load the last checkpoint into model/optimizer/scheduler/RNGs; return its step."""
    path = latest_checkpoint(output)
    if path is None:
        raise ValueError(f"--resume: no checkpoint in {output.name}/checkpoints (run with --save-every first)")
    state = torch.load(path, map_location="cpu", weights_only=False)
    changed = {k: (v, state["settings"].get(k)) for k, v in settings.items() if state["settings"].get(k) != v}
    if changed:
        raise ValueError("--resume needs the settings of the run it continues; different: "
                         + ", ".join(f"{k}={new} (was {old})" for k, (new, old) in changed.items()))
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    random.setstate(state["python_rng"])
    np.random.set_state(state["numpy_rng"])
    if state["cuda_rng"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return state["step"]


def _read_log(path: Path, upto: int) -> list[dict]:
    """The log rows of steps already done (a killed run may have logged past its last checkpoint)."""
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [row for row in rows if row["step"] <= upto]


def train(arch: str, model, tokenizer, train_examples: torch.Tensor, steps: int, batch_size: int = 16,
          lr: float = 1e-3, seed: int = 0, val_examples: torch.Tensor | None = None, eval_every: int = 0,
          eval_examples: int = 64, output: str | Path | None = None, save_every: int = 0, resume: bool = False,
          progress: bool = True, stop_after: int | None = None, settings: dict | None = None) -> TrainResult:
    """Pretrain `model` in place with AdamW (warm-up + cosine) and gradient clipping at 1.0.

    Steps are numbered 1..steps; batch of step s = make_batches' batch s-1. With `val_examples` and
    `eval_every`, the held-out loss on `eval_examples` examples is logged every `eval_every` steps.
    With `output`: writes loss_log.jsonl, and every `save_every` steps a checkpoint that
    `resume=True` continues from (same settings required). `stop_after` (for tests) ends the
    process abruptly with os._exit(3) after that step, as a kill would."""
    check_arch(arch)
    settings = dict(settings or {}, arch=arch, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                    n_examples=len(train_examples))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.01)
    scheduler = make_scheduler(optimizer, steps)
    output = Path(output) if output is not None else None
    done, log = 0, []
    if output is not None:
        output.mkdir(parents=True, exist_ok=True)
        if resume:
            done = _resume(output, model, optimizer, scheduler, settings)
            log = _read_log(output / "loss_log.jsonl", done)
        else:  # a fresh run must never be resumed from an older run's checkpoint
            shutil.rmtree(_checkpoint_dir(output), ignore_errors=True)
        (output / "loss_log.jsonl").write_text("".join(json.dumps(row) + "\n" for row in log))
    model.train()
    tokens_per_batch = batch_size * train_examples.shape[1]
    bar = tqdm(total=steps, initial=done, disable=not progress, desc=f"pretrain {arch}", unit="step")
    start = time.perf_counter()
    for index_step, index, batch in make_batches(train_examples, batch_size, seed, done, steps):
        step = index_step + 1
        loss = compute_loss(arch, model, batch, tokenizer, row_seeds(arch, seed, index_step, index))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        row = dict(step=step, loss=round(loss.item(), 6), lr=scheduler.get_last_lr()[0], tokens=step * tokens_per_batch)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if val_examples is not None and eval_every and (step % eval_every == 0 or step == steps):
            row["val_loss"] = round(evaluate(arch, model, tokenizer, val_examples, batch_size, eval_examples), 6)
        log.append(row)
        bar.update(1)
        bar.set_postfix(loss=f"{row['loss']:.3f}")
        if output is not None:
            with open(output / "loss_log.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")
            if save_every and (step % save_every == 0 or step == steps):
                save_checkpoint(output, step, model, optimizer, scheduler, settings)
        if stop_after is not None and step >= stop_after:
            bar.close()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(3)
    bar.close()
    seconds = time.perf_counter() - start
    ran = steps - done
    return TrainResult(log=log, seconds=seconds, tokens_per_second=ran * tokens_per_batch / max(seconds, 1e-9))


# ------------------------------------------------------------------------------------- CLI

def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="gpt2", help=f"one of {', '.join(ARCHS)} (default gpt2)")
    parser.add_argument("--corpus", default="shakespeare", help="data set name or .txt file (default shakespeare)")
    tok = parser.add_mutually_exclusive_group()
    tok.add_argument("--tokenizer", help="tokenizer folder or model name (default: the one the tiny arch borrows)")
    tok.add_argument("--train-tokenizer", type=int, metavar="VOCAB", help="train a byte-level BPE of VOCAB tokens")
    parser.add_argument("--layers", type=int, default=4, help="transformer blocks (default 4)")
    parser.add_argument("--hidden", type=int, default=128, help="model width (default 128)")
    parser.add_argument("--heads", type=int, default=4, help="attention heads (default 4)")
    parser.add_argument("--context", type=int, default=128, help="tokens per example (default 128)")
    parser.add_argument("--steps", type=int, default=200, help="optimizer steps (default 200)")
    parser.add_argument("--batch-size", type=int, default=16, help="examples per step (default 16)")
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (default 1e-3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the init, data order and masks")
    parser.add_argument("--output", required=True, help="folder for the model, tokenizer, logs, checkpoints")
    parser.add_argument("--save-every", type=int, default=0, help="checkpoint every N steps (0: only at the end)")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --output")
    parser.add_argument("--eval-examples", type=int, default=256, help="held-out examples to score (default 256)")
    parser.add_argument("--device", help="cpu, cuda, mps (default: the best available)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--stop-after", type=int, help=argparse.SUPPRESS)  # tests: exit abruptly after step N
    args = parser.parse_args(argv)
    for name in ("layers", "hidden", "heads", "context", "steps", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.lr <= 0 or args.save_every < 0 or (args.train_tokenizer is not None and args.train_tokenizer < 300):
        parser.error("need --lr > 0, --save-every >= 0 and --train-tokenizer >= 300")
    if args.hidden % args.heads:
        parser.error(f"--hidden {args.hidden} must be a multiple of --heads {args.heads}")
    if args.arch not in ARCHS:
        parser.error(f"unknown architecture '{args.arch}'; choose one of: {', '.join(ARCHS)}")
    return args


def run(args: argparse.Namespace) -> dict:
    """The whole CLI pipeline; returns the metrics written to metrics.json."""
    transformers.utils.logging.disable_progress_bar()  # no "Writing model shards" bar
    output = Path(args.output)
    if args.resume and latest_checkpoint(output) is None:
        raise ValueError(f"--resume: no checkpoint in {output.name}/checkpoints (run with --save-every first)")
    train_docs, val_docs = load_corpus(args.corpus)
    if args.train_tokenizer:
        tokenizer = prepare_tokenizer(args.arch, train_tokenizer(train_docs, args.train_tokenizer))
    else:
        tokenizer = load_pretrain_tokenizer(args.arch, args.tokenizer)
    train_ex = make_examples(tokenize(train_docs, tokenizer), args.arch, tokenizer, args.context, "training text")
    val_ex = make_examples(tokenize(val_docs, tokenizer), args.arch, tokenizer, args.context, "held-out text")
    seed_everything(args.seed)
    device = pick_device(args.device)
    size = dict(layers=args.layers, hidden=args.hidden, heads=args.heads, context=args.context)
    model = build_model(args.arch, tokenizer, **size).to(device)
    untrained = evaluate(args.arch, model, tokenizer, val_ex, args.batch_size, args.eval_examples)
    settings = dict(size, corpus=args.corpus, tokenizer=args.tokenizer, train_tokenizer=args.train_tokenizer)
    result = train(args.arch, model, tokenizer, train_ex, args.steps, args.batch_size, args.lr, args.seed,
                   output=output, save_every=args.save_every or args.steps, resume=args.resume,
                   progress=not args.no_progress, stop_after=args.stop_after, settings=settings)
    held_out = evaluate(args.arch, model, tokenizer, val_ex, args.batch_size, args.eval_examples)
    save_model(model, tokenizer, output)
    perplexity = args.arch != "electra"  # the discriminator predicts no tokens
    metrics = dict(arch=args.arch, objective=OBJECTIVES[args.arch].__name__, parameters=count_parameters(model),
                   vocab_size=len(tokenizer), train_examples=len(train_ex), held_out_examples=min(len(val_ex), args.eval_examples),
                   steps=args.steps, tokens_seen=args.steps * args.batch_size * args.context,
                   final_train_loss=result.final_loss, untrained_val_loss=round(untrained, 6),
                   val_loss=round(held_out, 6), seconds_this_run=round(result.seconds, 1),
                   tokens_per_second=round(result.tokens_per_second))
    if perplexity:
        metrics.update(untrained_val_perplexity=round(math.exp(untrained), 2), val_perplexity=round(math.exp(held_out), 2))
    (output / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        metrics = run(args)
    except (ValueError, ModelNotAvailable, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    ppl = f", perplexity {metrics['untrained_val_perplexity']} -> {metrics['val_perplexity']}" if "val_perplexity" in metrics else ""
    print(f"{metrics['arch']}: {metrics['parameters']:,} parameters, {metrics['steps']} steps; held-out loss "
          f"{metrics['untrained_val_loss']:.3f} (untrained) -> {metrics['val_loss']:.3f}{ppl}. Saved to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
