r"""Knowledge distillation: train a smaller student LLM from a teacher's next-token distributions (or hard labels).

The student is the teacher with fewer decoder layers (DistilBERT-style initialisation: the kept layers, the
embeddings, the final norm and the output head are copied from the teacher; --pick ends keeps the first quarter
of them from the bottom and the rest from the top, spread keeps them evenly spaced, first keeps the first N). The
embeddings (tied to the output head) stay frozen unless --train-embeddings. It is trained on text with one of:
  ce   hard labels: next-token cross entropy on the text, no teacher needed
  kd   logit distillation: KL(teacher || student) between the distributions softened at --temperature T,
       multiplied by T^2 so its gradients keep their size when T changes (Hinton et al., 2015)
  mix  alpha * kd + (1 - alpha) * ce
The teacher's logits over the whole vocabulary are computed on the fly for each batch under no_grad (a batch of
4 x 128 tokens over SmolLM2's 49,152-token vocabulary is 100 MB of float32: too big to store for a whole run).
Matmuls run in --dtype (bfloat16 by default: the teacher in bf16, the student with autocast and float32 master
weights). The student is saved with save_pretrained (loadable with from_pretrained or load_model), together with
the tokenizer and metrics.json: the losses at every step, and for student and teacher the held-out perplexity,
top-1 accuracy, top-1 agreement and KL divergence with the teacher, size and generation speed.

Examples:
  python optimization/distill.py --out runs/distill-kd                      # SmolLM2 -> 14 layers, KD on Shakespeare
  python optimization/distill.py --method ce --out runs/distill-ce          # the same budget on hard labels
  python optimization/distill.py --method mix --alpha 0.5 --temperature 2 --steps 200 --out runs/distill-mix
  python optimization/distill.py --student-layers 20 --data python_docs --out runs/distill-py   # Python docs
  python optimization/distill.py --data notes.txt --steps 100 --out runs/distill-notes   # your own text file
  python optimization/distill.py --steps 400 --save-every 50 --out runs/distill-kd --resume   # continue a run
  python optimization/distill.py --teacher HuggingFaceTB/SmolLM2-360M --student-layers 8 --out runs/d360m

Data: a name from common.load_dataset (trained on its train split, scored on its test or validation split) or a
.txt, .jsonl, .json or .csv file (--column names the text field; the last 10% of the text is held out). Any
LLaMA-style causal LM (its decoder layers in model.model.layers: LLaMA, SmolLM, Qwen, Mistral, ...) can be the
teacher. --resume continues from <out>/checkpoint.pt (written every --save-every steps) with the same batches.

Python API (optimization/02_distillation.ipynb imports it):
  pick_layers(total, keep, how) -> [layer indices];  make_student(teacher, layers, freeze_embeddings) -> model
  kd_loss(student_logits, teacher_logits, temperature);  ce_loss(student_logits, ids);  METHODS
  load_text(data, column, max_chars) -> (train_text, heldout_text, source)
  batch_at(ids, step, batch_size, seq_len, seed) -> LongTensor (batch_size, seq_len)
  Run(name, student, method, temperature, alpha, lr);  train(runs, teacher, ids, steps, ...)  (lockstep runs)
  score(model, ids, window, reference=None, keep_logprobs=False) -> {perplexity, top1_accuracy, agreement,
                                                                      kl_to_teacher, predictions, logprobs, ...}
  generation_speed(model, prompt_ids, new_tokens, repeats) -> tokens/s;  cast(model, dtype) -> eval copy
  continuation(model, tokenizer, prompt, new_tokens) -> greedy text;  parameter_count(model)
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "evaluation")]
import evaluate_model as em  # noqa: E402  (perplexity, data loading: one implementation for the project)

from common import SMOLLM2, ModelNotAvailable, load_model, load_tokenizer  # noqa: E402

DataError = em.DataError
METHODS = ("ce", "kd", "mix")
PICKS = ("ends", "spread", "first")
DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32}


# ------------------------------------------------------------------------------------------ student

def pick_layers(total: int, keep: int, how: str = "spread") -> list[int]:
    """Indices of the teacher layers the student keeps, in order.

    ends: the first quarter of them from the bottom of the teacher, the rest from the top (the layers next to the
    output matter most: see 02_distillation.ipynb); spread: evenly spaced from the first layer to the last
    (DistilBERT's every-other-layer); first: the first `keep` layers (an early exit).
    """
    if not 1 <= keep <= total:
        raise DataError(f"the student needs between 1 and {total} layers (the teacher's depth), got {keep}")
    if how not in PICKS:
        raise DataError(f"unknown layer pick '{how}'; choose one of: {', '.join(PICKS)}")
    if how == "first":
        return list(range(keep))
    if how == "ends":
        bottom = round(keep / 4)
        return list(range(bottom)) + list(range(total - (keep - bottom), total))
    if keep == 1:
        return [total - 1]
    return [round(i * (total - 1) / (keep - 1)) for i in range(keep)]


def _decoder_layers(model) -> torch.nn.ModuleList:
    layers = getattr(model.base_model, "layers", None)
    if not isinstance(layers, torch.nn.ModuleList):
        raise DataError(f"{type(model).__name__} is not a LLaMA-style decoder (no model.layers): use a LLaMA, "
                        "SmolLM, Qwen or Mistral model as the teacher")
    return layers


def make_student(teacher, layers: list[int], freeze_embeddings: bool = False):
    """A float32 copy of `teacher` with only the given decoder layers (renumbered 0..k-1), same embeddings and head.

    `freeze_embeddings` leaves the token embeddings (and the output head, when tied to them) untrained: a third
    of SmolLM2's weights that the student can keep as the teacher learned them, and a cheaper backward pass.
    """
    total = len(_decoder_layers(teacher))
    if not layers or sorted(set(layers)) != list(layers) or not 0 <= layers[0] <= layers[-1] < total:
        raise DataError(f"layers must be increasing indices between 0 and {total - 1}, got {layers}")
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = len(layers)
    if getattr(config, "layer_types", None):  # per-layer attention kinds (sliding/full) follow their layers
        config.layer_types = [config.layer_types[i] for i in layers]
    config.dtype = torch.float32
    student = type(teacher)(config).to(torch.float32)
    prefix = f"{teacher.base_model_prefix}.layers."
    state = {}
    for name, tensor in teacher.state_dict().items():
        if name.startswith(prefix):
            index, rest = name[len(prefix):].split(".", 1)
            if int(index) not in layers:
                continue
            name = f"{prefix}{layers.index(int(index))}.{rest}"
        state[name] = tensor.float()
    missing, unexpected = student.load_state_dict(state, strict=False)
    missing = [m for m in missing if not m.endswith("lm_head.weight")]  # tied to the embeddings
    if missing or unexpected:
        raise DataError(f"could not copy the teacher's weights into the student: missing {missing[:3]}, "
                        f"unexpected {unexpected[:3]}")
    student.generation_config = copy.deepcopy(teacher.generation_config)
    if freeze_embeddings:
        student.get_input_embeddings().weight.requires_grad_(False)
    return student


def cast(model, dtype: torch.dtype):
    """An eval-mode copy of `model` in `dtype` (for scoring and timing; training keeps float32 weights)."""
    return copy.deepcopy(model).to(dtype).eval()


def parameter_count(model) -> int:
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())  # tied weights once


# ------------------------------------------------------------------------------------------ losses

def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """T^2 * mean over tokens of KL(p_teacher || p_student), both softmaxes at temperature T (last dim: vocab)."""
    log_p = F.log_softmax(teacher_logits.float() / temperature, dim=-1)  # teacher, softened
    log_q = F.log_softmax(student_logits.float() / temperature, dim=-1)  # student, softened
    kl = (log_p.exp() * (log_p - log_q)).sum(-1)  # one KL per token position
    return kl.mean() * temperature**2


def ce_loss(student_logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Next-token cross entropy: the logits at position i predict ids[i + 1] (the last position has no label)."""
    return F.cross_entropy(student_logits[:, :-1].float().flatten(0, 1), ids[:, 1:].flatten())


# ------------------------------------------------------------------------------------------ data

def load_text(data: str, column: str = "text", max_chars: int | None = None,
              heldout_chars: int | None = None) -> tuple[str, str, str]:
    """(train text, held-out text, source): a data set's train and test/validation splits, or a file split 90/10."""
    train_rows, source = em.load_rows(data, None)  # a file, or a data set's first held-out split
    if not source.endswith("/train") and source.startswith(f"{data}/"):  # a data set with a held-out split
        rows, train_source = em.load_rows(data, "train")
        return (em.join_text(rows, column, max_chars), em.join_text(train_rows, column, heldout_chars),
                f"{train_source} (trained on), {source} (scored)")
    text = em.join_text(train_rows, column)  # one stream: the last 10% is held out
    cut = int(len(text) * 0.9)
    return text[:cut][:max_chars], text[cut:][:heldout_chars], f"{source}: first 90% trained on, last 10% scored"


def tokenize(tokenizer, text: str) -> torch.Tensor:
    """The text as one stream of token ids (documents keep the blank lines that join them)."""
    return torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"], dtype=torch.long)


def batch_at(ids: torch.Tensor, step: int, batch_size: int, seq_len: int, seed: int = 0) -> torch.Tensor:
    """The batch of step `step`: random windows of the stream, a function of (seed, step) only (resume-safe)."""
    if len(ids) <= seq_len:
        raise DataError(f"the training text has {len(ids)} tokens: need more than --seq-len {seq_len}")
    generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
    starts = torch.randint(0, len(ids) - seq_len, (batch_size,), generator=generator)
    return torch.stack([ids[s:s + seq_len] for s in starts.tolist()])


# ------------------------------------------------------------------------------------------ training

@dataclass
class Run:
    """One student being trained: its method and settings, optimizer and the history of its losses."""

    name: str
    student: torch.nn.Module
    method: str = "kd"
    temperature: float = 1.0
    alpha: float = 0.5
    lr: float = 1e-3
    history: list[dict] = field(default_factory=list)
    optimizer: torch.optim.Optimizer | None = None

    def __post_init__(self):
        if self.method not in METHODS:
            raise DataError(f"unknown method '{self.method}'; choose one of: {', '.join(METHODS)}")
        if self.temperature <= 0 or not 0 <= self.alpha <= 1:
            raise DataError("need temperature > 0 and 0 <= alpha <= 1")
        if self.optimizer is None:
            params = [p for p in self.student.parameters() if p.requires_grad]
            self.optimizer = torch.optim.AdamW(params, lr=self.lr, weight_decay=0.0)


def lr_factor(step: int, steps: int, warmup: int) -> float:
    """Linear warm-up for `warmup` steps, then cosine decay to 10% at the last step."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup - 1)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def train_step(run: Run, ids: torch.Tensor, teacher_logits: torch.Tensor | None, dtype: torch.dtype) -> dict:
    """One optimizer step of one run; logs its loss, the hard-label CE and the KL at T=1 (comparable across runs)."""
    run.student.train()
    with torch.autocast("cpu" if ids.device.type == "cpu" else ids.device.type, dtype=dtype,
                        enabled=dtype != torch.float32):
        logits = run.student(input_ids=ids).logits
    ce = ce_loss(logits, ids)
    kd = kd_loss(logits[:, :-1], teacher_logits[:, :-1], run.temperature) if teacher_logits is not None else None
    if run.method != "ce" and kd is None:
        raise DataError(f"method '{run.method}' needs the teacher's logits")
    loss = ce if run.method == "ce" else kd if run.method == "kd" else run.alpha * kd + (1 - run.alpha) * ce
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(run.student.parameters(), 1.0)
    run.optimizer.step()
    entry = {"loss": loss.item(), "ce": ce.item()}
    if run.method == "kd" and run.temperature == 1:
        entry["kl"] = entry["loss"]  # the loss is that KL already
    elif teacher_logits is not None:
        with torch.no_grad():
            entry["kl"] = kd_loss(logits[:, :-1].detach(), teacher_logits[:, :-1], 1.0).item()
    return entry


def train(runs: list[Run], teacher, ids: torch.Tensor, steps: int, batch_size: int = 4, seq_len: int = 128,
          seed: int = 0, warmup: int | None = None, dtype: torch.dtype = torch.bfloat16, start_step: int = 0,
          on_step=None, log_every: int = 0) -> list[Run]:
    """Train every run on the same batches, in lockstep: the teacher runs once per batch for all of them.

    The teacher (needed by kd and mix; its logits are also used to log the KL of every run) is called under
    no_grad. `on_step(step)` is called after each step (checkpoints). Steps start at `start_step` (resume).
    """
    warmup = max(1, steps // 10) if warmup is None else warmup
    need_teacher = teacher is not None
    if not need_teacher and any(r.method != "ce" for r in runs):
        raise DataError("methods kd and mix need a teacher")
    device = next(runs[0].student.parameters()).device
    start = time.perf_counter()
    for step in range(start_step, steps):
        batch = batch_at(ids, step, batch_size, seq_len, seed).to(device)
        teacher_logits = None
        if need_teacher:
            with torch.no_grad():
                teacher_logits = teacher(input_ids=batch).logits.float()
        for run in runs:
            for group in run.optimizer.param_groups:
                group["lr"] = run.lr * lr_factor(step, steps, warmup)
            run.history.append({"step": step, **train_step(run, batch, teacher_logits, dtype)})
        if on_step:
            on_step(step)
        if log_every and (step + 1) % log_every == 0:
            losses = "  ".join(f"{r.name} {r.history[-1]['loss']:.3f}" for r in runs)
            print(f"step {step + 1}/{steps}  {losses}  ({time.perf_counter() - start:.0f} s)", flush=True)
    for run in runs:
        run.student.eval()
    return runs


# ------------------------------------------------------------------------------------------ evaluation

def score(model, ids, window: int = 256, reference: dict | None = None, keep_logprobs: bool = False) -> dict:
    """Held-out perplexity (evaluation/evaluate_model.py's sliding window) and top-1 accuracy; against a teacher's
    result (`reference`, from score(teacher, ..., keep_logprobs=True)) also top-1 agreement and mean KL(teacher || model).

    A hook on the output head sees the logits of every scored position, in the order the tokens are scored, so
    `predictions[i]` is the model's guess for ids[i + 1]. `keep_logprobs` keeps every position's log-probabilities
    (in bfloat16: tokens x vocabulary x 2 bytes) so that students can be compared with this model.
    """
    predictions, logprobs, kls = [], [], []

    def look(module, inputs, output):
        logits = output[0].float()  # (positions scored in this window, vocab)
        done = sum(len(p) for p in predictions)
        predictions.append(logits.argmax(-1).cpu())
        log_q = F.log_softmax(logits, -1)
        if keep_logprobs:
            logprobs.append(log_q.to(torch.bfloat16).cpu())
        if reference is not None:
            log_p = reference["logprobs"][done:done + len(logits)].to(log_q.device).float()
            kls.append((log_p.exp() * (log_p - log_q)).sum(-1).cpu())

    hook = model.get_output_embeddings().register_forward_hook(look)
    start = time.perf_counter()
    try:
        nll, n = em.sliding_window_nll(model, ids, window, window // 2)
    finally:
        hook.remove()
    predictions = torch.cat(predictions)
    result = {"perplexity": em.perplexity(nll, n), "loss": nll / n, "tokens": n,
              "top1_accuracy": (predictions == torch.as_tensor(ids)[1:]).float().mean().item(),
              "seconds": time.perf_counter() - start, "predictions": predictions}
    if keep_logprobs:
        result["logprobs"] = torch.cat(logprobs)
    if reference is not None:
        result["agreement"] = (predictions == reference["predictions"]).float().mean().item()
        result["kl_to_teacher"] = torch.cat(kls).mean().item()
    return result


def _pad_id(model) -> int:
    eos = model.generation_config.eos_token_id
    return (eos[0] if isinstance(eos, list) else eos) or 0


@torch.inference_mode()
def generation_speed(model, prompt_ids: torch.Tensor, new_tokens: int = 32, repeats: int = 3) -> float:
    """Greedy generation speed in new tokens per second, batch 1: the median of `repeats` runs after a warm-up."""
    prompt = torch.as_tensor(prompt_ids).view(1, -1).to(model.device)
    kwargs = {"max_new_tokens": new_tokens, "min_new_tokens": new_tokens, "do_sample": False,
              "pad_token_id": _pad_id(model)}
    model.generate(prompt, **{**kwargs, "max_new_tokens": 2, "min_new_tokens": 2})
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.generate(prompt, **kwargs)
        times.append(time.perf_counter() - start)
    return new_tokens / statistics.median(times)


@torch.inference_mode()
def continuation(model, tokenizer, prompt: str, new_tokens: int = 30) -> str:
    """The greedy continuation of a prompt, decoded."""
    ids = torch.tensor([em.encode(tokenizer, prompt)], device=model.device)
    out = model.generate(ids, max_new_tokens=new_tokens, do_sample=False, repetition_penalty=1.0,
                         pad_token_id=_pad_id(model))
    return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


# ------------------------------------------------------------------------------------------ CLI

def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:4]))
    parser.add_argument("--teacher", default=SMOLLM2, help="short name, local folder or Hub id (default: %(default)s)")
    parser.add_argument("--student-layers", type=int, default=14, help="decoder layers the student keeps "
                                                                        "(default: %(default)s)")
    parser.add_argument("--pick", choices=PICKS, default="ends", help="which teacher layers (default: %(default)s)")
    parser.add_argument("--train-embeddings", action="store_true", help="also train the embeddings / output head")
    parser.add_argument("--data", default="shakespeare", help="data set name or .txt/.jsonl/.json/.csv file "
                                                              "(default: %(default)s)")
    parser.add_argument("--column", default="text", help="column holding the text (default: %(default)s)")
    parser.add_argument("--method", choices=METHODS, default="kd", help="loss (default: %(default)s)")
    parser.add_argument("--temperature", type=float, default=1.0, help="KD softmax temperature (default: 1; "
                        "with a 49k vocabulary, 2 did worse in 02_distillation.ipynb)")
    parser.add_argument("--alpha", type=float, default=0.5, help="mix: weight of KD against CE (default: 0.5)")
    parser.add_argument("--steps", type=int, default=100, help="optimizer steps (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=4, help="sequences per step (default: %(default)s)")
    parser.add_argument("--seq-len", type=int, default=128, help="tokens per sequence (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate, AdamW (default: %(default)s)")
    parser.add_argument("--dtype", choices=list(DTYPES), default="bfloat16", help="matmul precision (default: "
                                                                                   "%(default)s)")
    parser.add_argument("--train-chars", type=int, default=1_000_000, help="training text kept (default: 1M)")
    parser.add_argument("--eval-chars", type=int, default=6000, help="held-out text scored (default: %(default)s)")
    parser.add_argument("--save-every", type=int, default=0, help="checkpoint every N steps (default: 0, never)")
    parser.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint.pt")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the student, tokenizer, metrics.json")
    args = parser.parse_args(argv)
    for name in ("student_layers", "steps", "batch_size", "eval_chars", "train_chars"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.seq_len < 2:
        parser.error("--seq-len must be at least 2")
    if args.temperature <= 0:
        parser.error("--temperature must be positive")
    if not 0 <= args.alpha <= 1:
        parser.error("--alpha must be between 0 and 1")
    if args.save_every < 0:
        parser.error("--save-every must be 0 (never) or more")
    return args


def _checkpoint(out: Path, run: Run, step: int) -> None:
    tmp = out / "checkpoint.pt.tmp"
    torch.save({"step": step, "student": run.student.state_dict(), "optimizer": run.optimizer.state_dict(),
                "history": run.history}, tmp)
    tmp.replace(out / "checkpoint.pt")  # never a half-written checkpoint


def run_cli(args: argparse.Namespace) -> dict:
    """The whole CLI job; raises DataError / ModelNotAvailable for problems the user can fix."""
    dtype = DTYPES[args.dtype]
    train_text, held_text, source = load_text(args.data, args.column, args.train_chars, args.eval_chars)
    checkpoint = args.out / "checkpoint.pt"
    if args.resume and not checkpoint.exists():
        raise DataError(f"--resume: no checkpoint in {args.out} (write one with --save-every N)")
    tokenizer = load_tokenizer(args.teacher)
    teacher = load_model(args.teacher, dtype=dtype).eval()
    layers = pick_layers(len(_decoder_layers(teacher)), args.student_layers, args.pick)
    student = make_student(teacher, layers, freeze_embeddings=not args.train_embeddings)
    run = Run(args.method, student, args.method, args.temperature, args.alpha, args.lr)
    start_step = 0
    if args.resume:
        state = torch.load(checkpoint, weights_only=True)
        student.load_state_dict(state["student"])
        run.optimizer.load_state_dict(state["optimizer"])
        run.history, start_step = state["history"], state["step"] + 1
        print(f"resumed at step {start_step}")
    ids = tokenize(tokenizer, train_text)
    args.out.mkdir(parents=True, exist_ok=True)
    save = (lambda step: _checkpoint(args.out, run, step) if (step + 1) % args.save_every == 0 else None) \
        if args.save_every else None
    started = time.perf_counter()
    train([run], teacher if args.method != "ce" else None, ids, args.steps, args.batch_size, args.seq_len,
          args.seed, dtype=dtype, start_step=start_step, on_step=save, log_every=max(1, args.steps // 10))
    seconds = time.perf_counter() - started
    student.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    held = em.encode(tokenizer, held_text)
    window = min(256, em.model_context(teacher) or 256)
    t_score = score(teacher, held, window, keep_logprobs=True)
    s_model = cast(student, dtype)
    s_score = score(s_model, held, window, t_score)
    for key in ("predictions", "logprobs"):  # tensors: not for the JSON
        t_score.pop(key)
        s_score.pop(key, None)
    prompt = torch.tensor(held[:32])
    result = {"teacher": args.teacher, "data": source, "method": args.method, "layers": layers,
              "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "train_seconds": seconds, "train_tokens": (args.steps - start_step) * args.batch_size * args.seq_len,
              "student": {**s_score, "parameters": parameter_count(student), "size_mb": em.model_size_mb(student),
                          "tokens_per_s": generation_speed(s_model, prompt)},
              "teacher_scores": {**t_score, "parameters": parameter_count(teacher),
                                 "size_mb": em.model_size_mb(teacher), "tokens_per_s": generation_speed(teacher, prompt)},
              "history": run.history}
    (args.out / "metrics.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        result = run_cli(args)
    except (DataError, ModelNotAvailable) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    s, t = result["student"], result["teacher_scores"]
    print(f"{'':10}{'layers':>8}{'params M':>10}{'perplexity':>12}{'top-1 acc':>11}{'agreement':>11}{'tok/s':>8}")
    print(f"{'teacher':10}{'all':>8}{t['parameters'] / 1e6:>10.1f}{t['perplexity']:>12.2f}"
          f"{t['top1_accuracy']:>11.3f}{1:>11.3f}{t['tokens_per_s']:>8.1f}")
    print(f"{'student':10}{len(result['layers']):>8}{s['parameters'] / 1e6:>10.1f}{s['perplexity']:>12.2f}"
          f"{s['top1_accuracy']:>11.3f}{s['agreement']:>11.3f}{s['tokens_per_s']:>8.1f}")
    print(f"saved the student, its tokenizer and metrics.json in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
