r"""Compare two causal language models (a base and its fine-tune) in one report, every difference with a 95 % CI.

Three measurements, each made on the same items for both models so that the difference can be bootstrapped in
pairs (resample the items once, score both models on the same resample): a task metric (answer accuracy on
held-out sentiment reviews, or zero-shot accuracy on any labelled set), bits per byte on held-out general text
(did the fine-tune forget?), and the preference of a judge model between the two models' answers to the same
open prompts, judged in both orders because judges favour a position. The output is a printed table, a verdict
written from the numbers and, with --json, every figure.

Examples:
  python evaluation/compare_models.py --base smollm2-135m-instruct --tuned runs/sentiment-lora    # a finetune_lm.py output
  python evaluation/compare_models.py --tuned runs/sentiment-lora/merged --json build/compare.json
  python evaluation/compare_models.py --tuned runs/sentiment-lora --no-judge --n-task 500 --n-docs 60
  python evaluation/compare_models.py --tuned runs/pydocs --task rotten_tomatoes --prompt $'{text}\nOverall, the review is'
  python evaluation/compare_models.py --tuned runs/pydocs --text python_docs --task emotion   # a domain fine-tune
  python evaluation/compare_models.py --tuned runs/chat --prompts my_prompts.jsonl --judge my-judge-folder
  python evaluation/compare_models.py --base HuggingFaceTB/SmolLM2-360M-Instruct --tuned runs/360m --dtype bfloat16

Models: short names of common (smollm2-135m-instruct, tiny-llama, ...), folders saved with save_pretrained, a
finetune_lm.py output folder (its merged/ model if there is one, else the adapter on its base), or Hub ids.
--task sentiment is the chat task of fine-tuning/instruct_task.py on the rotten_tomatoes test split (the split
finetune_lm.py never trains on); any other --task is a data set name or a .jsonl/.csv/.json file with a text and
a label column, scored zero-shot with evaluate_model.classify. --text is the held-out general text (a data set
name, whose test split is used, or a file), scored document by document with a sliding window. --prompts is a
JSONL file with a "prompt" field per line (default: the prompts of data/preferences.jsonl).

Python API (evaluation/05_before_after.ipynb uses it):
  load_any(name, dtype=None) -> (model, tokenizer)        finetune_lm.py folders, save_pretrained folders, names
  model_source(name) -> str                               the folder/name to load, checked (no loading)
  task_correct(model, tokenizer, task, n, ...) -> [0/1 per item];  task_items(task, n, ...) -> items
  text_documents(text, n_docs, doc_chars) -> [str];  document_nll(model, tokenizer, docs, window) -> [dict]
  generate_answers(model, tokenizer, prompts, max_new_tokens) -> [str];  read_prompts(path, n) -> [str]
  judge_answers(judge, prompts, base_answers, tuned_answers) -> records (pair a = tuned, b = base)
  paired_bootstrap(base, tuned, n_boot, ...) -> {"base", "tuned", "diff", "ci", ...}   same resamples for both
  unpaired_bootstrap(base, tuned, n_boot) -> (low, high)  for comparison: each model resampled on its own
  task_section / text_section / judge_section -> dict;  verdict(report) -> [str];  table(report) -> str
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "evaluation"), str(ROOT / "fine-tuning")]
import evaluate_model as EM  # noqa: E402
import judge as J  # noqa: E402
from instruct_task import answer_accuracy, sentiment_examples  # noqa: E402

from common import SMOLLM2, ModelNotAvailable, load_model, load_tokenizer  # noqa: E402

DataError = EM.DataError  # one error type for every problem the user can fix (exit code 2)
DEFAULT_PROMPTS = J.GOLD_PAIRS


# ------------------------------------------------------------------------------------------------ models

def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or Path(name).expanduser().exists() or name.count("/") > 1


def model_source(name: str) -> str:
    """The folder or name to load for `name`, checked without loading anything (fails in a second on a typo).

    A finetune_lm.py output folder resolves to its merged/ model if there is one."""
    path = Path(name).expanduser()
    if _looks_like_path(name) and not path.exists():
        raise DataError(f"model folder not found: {name}")
    if not path.is_dir():
        return name
    if (path / "merged" / "config.json").is_file():
        return str(path / "merged")
    if not (path / "config.json").is_file() and not (path / "settings.json").is_file():
        raise DataError(f"{name} holds no model (no config.json, no finetune_lm.py settings.json)")
    return str(path)


def load_any(name: str, dtype: str | None = None):
    """(model in eval mode, tokenizer) for a short name, Hub id, save_pretrained folder or finetune_lm.py output.

    A finetune_lm.py folder (it holds settings.json) gives its merged/ model if present, else the adapter loaded
    on its base and, for LoRA/IA3, merged in memory, so both models run the same plain forward pass."""
    source = model_source(name)
    torch_dtype = getattr(torch, dtype) if dtype else None
    path = Path(source)
    if path.is_dir() and not (path / "config.json").is_file():  # a finetune_lm.py adapter folder
        from finetune_lm import load_finetuned  # imports peft and the Trainer: only when needed

        model, tokenizer = load_finetuned(path)
        if hasattr(model, "merge_and_unload"):
            model = model.merge_and_unload()
        for param in model.parameters() if torch_dtype else ():  # weights only: buffers (rotary) stay float32
            param.data = param.data.to(torch_dtype)
        return model.eval(), tokenizer
    return load_model(source, dtype=torch_dtype).eval(), load_tokenizer(source)


def same_tokenizer(tok_a, tok_b) -> bool:
    """True when both tokenizers split text identically (same vocabulary), so per-token figures compare."""
    return tok_a.get_vocab() == tok_b.get_vocab()


def _needs_chat(tokenizer, model_name: str, what: str) -> None:
    if not getattr(tokenizer, "chat_template", None):
        raise DataError(f"{model_name} has no chat template, which {what} needs; use a chat model, or pass "
                        f"--task with a labelled data set and --no-judge")


# ------------------------------------------------------------------------------------------------ bootstrap

def _indices(n: int, n_boot: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def paired_bootstrap(base: Sequence[float], tuned: Sequence[float], n_boot: int = 2000, level: float = 0.95,
                     seed: int = 0, base_den: Sequence[float] | None = None, tuned_den: Sequence[float] | None = None,
                     transform: Callable[[np.ndarray], np.ndarray] | None = None) -> dict:
    """Figure of each model and the difference tuned - base, with a percentile CI of the difference.

    Each model's figure is sum(values) / sum(den) over the items (den = 1 per item: the mean), optionally
    transformed (e.g. exp for a perplexity). The same resampled items are used for both models, so what the
    items have in common (an easy review, a hard document) cancels in the difference."""
    base, tuned = np.asarray(base, float), np.asarray(tuned, float)
    if len(base) != len(tuned) or len(base) == 0:
        raise DataError(f"paired bootstrap needs the same, non-zero number of items ({len(base)} vs {len(tuned)})")
    den_b = np.ones_like(base) if base_den is None else np.asarray(base_den, float)
    den_t = np.ones_like(tuned) if tuned_den is None else np.asarray(tuned_den, float)
    f = transform or (lambda x: x)
    idx = _indices(len(base), n_boot, seed)
    figure = lambda v, d, i=slice(None): f(v[i].sum(-1) / d[i].sum(-1))  # noqa: E731
    diffs = figure(tuned, den_t, idx) - figure(base, den_b, idx)
    low, high = np.quantile(diffs, [(1 - level) / 2, (1 + level) / 2])
    b, t = float(figure(base, den_b)), float(figure(tuned, den_t))
    return {"base": b, "tuned": t, "diff": t - b, "ci": [float(low), float(high)], "items": len(base)}


def unpaired_bootstrap(base: Sequence[float], tuned: Sequence[float], n_boot: int = 2000, level: float = 0.95,
                       seed: int = 0) -> tuple[float, float]:
    """CI of mean(tuned) - mean(base) when each model's items are resampled independently (ignores pairing)."""
    base, tuned = np.asarray(base, float), np.asarray(tuned, float)
    diffs = tuned[_indices(len(tuned), n_boot, seed + 1)].mean(1) - base[_indices(len(base), n_boot, seed)].mean(1)
    low, high = np.quantile(diffs, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


# ------------------------------------------------------------------------------------------------ task

def task_items(task: str = "sentiment", n: int = 300, seed: int = 0, column: str = "text",
               label_column: str = "label", split: str | None = None) -> dict:
    """The held-out items: sentiment chats (test split), or texts, label names and true label indices."""
    if n < 1:
        raise DataError("--n-task must be at least 1")
    if task == "sentiment":
        return {"task": "sentiment", "source": "rotten_tomatoes/test", "examples": sentiment_examples("test", n, seed)}
    rows, source = EM.load_rows(task, split)
    EM.check_column(rows, column)
    labels = EM.label_names(rows, label_column)
    rows = rows.shuffle(seed=seed).select(range(min(n, len(rows))))
    names = getattr(rows.features[label_column], "names", None)
    truth = [labels.index(names[v] if names else str(v)) for v in rows[label_column]]
    return {"task": task, "source": source, "texts": list(rows[column]), "labels": labels, "truth": truth}


def task_correct(model, tokenizer, items: dict, prompt: str = EM.DEFAULT_PROMPT) -> list[int]:
    """1 where the model answers the item right, else 0 (the same items, in the same order, for any model)."""
    if items["task"] == "sentiment":
        _needs_chat(tokenizer, "this model", "the sentiment task")
        _, predictions = answer_accuracy(model, tokenizer, items["examples"])
        return [int(p == e["label"]) for p, e in zip(predictions, items["examples"], strict=True)]
    predicted = EM.classify(model, tokenizer, items["texts"], items["labels"], prompt)
    return [int(p == t) for p, t in zip(predicted, items["truth"], strict=True)]


def task_section(items: dict, base_correct: list[int], tuned_correct: list[int], n_boot: int = 2000,
                 seed: int = 0) -> dict:
    """Accuracy of both models, the paired difference with its CI, and how the items split between the models."""
    out = paired_bootstrap(base_correct, tuned_correct, n_boot, seed=seed)
    pairs = list(zip(base_correct, tuned_correct, strict=True))
    return out | {"metric": "accuracy", "task": items["task"], "source": items["source"],
                  "unpaired_ci": list(unpaired_bootstrap(base_correct, tuned_correct, n_boot, seed=seed)),
                  "only_tuned_right": pairs.count((0, 1)), "only_base_right": pairs.count((1, 0)),
                  "both_right": pairs.count((1, 1)), "both_wrong": pairs.count((0, 0))}


# ------------------------------------------------------------------------------------------------ text

def text_documents(text: str = "news", n_docs: int = 30, doc_chars: int = 2000, column: str = "text",
                   split: str | None = None) -> tuple[list[str], str]:
    """Up to n_docs non-empty documents of held-out text, each cut at doc_chars (a data set's test split first).

    A single text (a .txt file) is cut into pieces of doc_chars, so that it can still be bootstrapped."""
    rows, source = EM.load_rows(text, split)
    EM.check_column(rows, column)
    docs = [d for d in rows[column] if isinstance(d, str) and d.strip()]
    if len(docs) == 1:
        docs = [docs[0][i:i + doc_chars] for i in range(0, len(docs[0]), doc_chars)]
    docs = [d[:doc_chars] for d in docs if d.strip()][:n_docs]
    if len(docs) < 2:
        raise DataError(f"{source}: need at least 2 documents of text to bootstrap, found {len(docs)}")
    return docs, source


def document_nll(model, tokenizer, docs: Sequence[str], window: int = 512, stride: int | None = None) -> list[dict]:
    """Per document: total NLL in nats (sliding window, every token scored once), tokens scored and UTF-8 bytes."""
    context = EM.model_context(model)
    window = min(window, context) if context else window
    out = []
    for doc in docs:
        nll, tokens = EM.sliding_window_nll(model, EM.encode(tokenizer, doc), window, stride or max(1, window // 2))
        out.append({"nll": nll, "tokens": tokens, "bytes": len(doc.encode("utf-8"))})
    return out


def text_section(source: str, base_docs: list[dict], tuned_docs: list[dict], comparable_tokens: bool,
                 n_boot: int = 2000, seed: int = 0) -> dict:
    """Bits per byte of both models (ratio of sums over the documents) with a paired CI of the difference;
    perplexity per token too, with its CI only when both models use the same tokenizer."""
    nats = lambda docs: [d["nll"] for d in docs]  # noqa: E731
    bytes_ = [d["bytes"] for d in base_docs]
    bpb = paired_bootstrap(nats(base_docs), nats(tuned_docs), n_boot, seed=seed, base_den=bytes_, tuned_den=bytes_)
    bpb = {k: v / math.log(2) if k in ("base", "tuned", "diff") else v for k, v in bpb.items()}
    bpb["ci"] = [c / math.log(2) for c in bpb["ci"]]
    ppl = paired_bootstrap(nats(base_docs), nats(tuned_docs), n_boot, seed=seed, transform=np.exp,
                           base_den=[d["tokens"] for d in base_docs], tuned_den=[d["tokens"] for d in tuned_docs])
    if not comparable_tokens:  # a perplexity per token of two vocabularies measures two different things
        ppl["ci"] = None
    return {"source": source, "documents": len(base_docs), "bytes": int(sum(bytes_)), "bits_per_byte": bpb,
            "perplexity": ppl, "same_tokenizer": comparable_tokens,
            "per_document_bpb_diff": [(t["nll"] - b["nll"]) / math.log(2) / b["bytes"]
                                      for b, t in zip(base_docs, tuned_docs, strict=True)]}


# ------------------------------------------------------------------------------------------------ judge

def read_prompts(path: str | Path = DEFAULT_PROMPTS, n: int | None = None) -> list[str]:
    """The "prompt" field of each JSONL line (first n), duplicates dropped."""
    rows = J.read_jsonl(path)
    prompts = []
    for number, row in rows:
        prompt = row.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise DataError(f"{Path(path).name}, line {number}: needs a non-empty text field 'prompt'")
        if prompt not in prompts:
            prompts.append(prompt)
    return prompts[:n] if n else prompts


@torch.inference_mode()
def generate_answers(model, tokenizer, prompts: Sequence[str], max_new_tokens: int = 64,
                     batch_size: int = 8) -> list[str]:
    """Greedy answers to each prompt as a one-turn chat (left-padded batches)."""
    _needs_chat(tokenizer, "this model", "answering the judge prompts")
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    answers = []
    try:
        for i in range(0, len(prompts), batch_size):
            texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                                   tokenize=False) for p in prompts[i:i + batch_size]]
            batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
            out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad,
                                 temperature=None, top_p=None, top_k=None)
            answers += [a.strip() for a in tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:],
                                                                  skip_special_tokens=True)]
    finally:
        tokenizer.padding_side = side
    return answers


def judge_answers(judge, prompts: Sequence[str], base_answers: Sequence[str], tuned_answers: Sequence[str],
                  rubric: str | None = J.RUBRIC) -> list[dict]:
    """judge.py records for every prompt, in both orders; pair a = the tuned model's answer, b = the base's."""
    pairs = [J.Pair(p, t or "(no answer)", b or "(no answer)")
             for p, b, t in zip(prompts, base_answers, tuned_answers, strict=True)]
    return J.judge_pairs(judge, pairs, rubric, both_orders=True)


def judge_section(records: list[dict], n_boot: int = 2000, seed: int = 0) -> dict:
    """Win rate of the tuned model (a tie when the winner changes with the order counts 1/2) with its CI, and
    what one order alone would have said: tuned shown first (A) in every pair, or second in every pair."""
    wins = J.win_values(records, "a")
    summary = J.summarize(records, n_boot, seed)
    one_order = {}
    for order, name in (("ab", "tuned_first"), ("ba", "tuned_second")):
        values = [float(v["winner"] == "a") for r in records for v in r["verdicts"] if v["order"] == order]
        one_order[name] = {"win_rate": float(np.mean(values)), "ci": list(J.bootstrap_ci(values, n_boot, seed=seed))}
    p_tuned = [r["p_a"] for r in records if r["p_a"] is not None]
    return {"prompts": len(records), "win_rate": float(np.mean(wins)), "ci": list(J.bootstrap_ci(wins, n_boot, seed=seed)),
            "tuned_wins": sum(w == 1 for w in wins), "base_wins": sum(w == 0 for w in wins),
            "ties": sum(w == 0.5 for w in wins), "first_position_share": summary["first_position_share"],
            "order_flip_share": summary.get("order_flip_share"), "one_order": one_order,
            "mean_p_tuned": float(np.mean(p_tuned)) if p_tuned else None,
            "mean_p_tuned_ci": list(J.bootstrap_ci(p_tuned, n_boot, seed=seed)) if p_tuned else None}


# ------------------------------------------------------------------------------------------------ report

def _reading(ci: Sequence[float] | None, null: float, better_if: str) -> str:
    if ci is None:
        return "not comparable"
    if ci[0] <= null <= ci[1]:
        return "no evidence of a difference"
    return "tuned better" if (ci[0] > null) == (better_if == "higher") else "tuned worse"


def verdict(report: dict) -> list[str]:
    """One sentence per section, written from the figures and their CIs."""
    lines = []
    if "task" in report:
        t = report["task"]
        lines.append(f"Task ({t['source']}, {t['items']} items): accuracy {t['base']:.3f} -> {t['tuned']:.3f}, "
                     f"difference {t['diff']:+.3f} [{t['ci'][0]:+.3f}, {t['ci'][1]:+.3f}]: "
                     + {"tuned better": "a real gain, the whole interval is above 0.",
                        "tuned worse": "a real loss, the whole interval is below 0.",
                        "no evidence of a difference": "the interval contains 0, so no evidence of a change."}[
                         _reading(t["ci"], 0, "higher")])
    if "text" in report:
        b = report["text"]["bits_per_byte"]
        reading = _reading(b["ci"], 0, "lower")
        lines.append(f"General text ({report['text']['source']}, {report['text']['documents']} documents): bits per "
                     f"byte {b['base']:.4f} -> {b['tuned']:.4f}, difference {b['diff']:+.4f} "
                     f"[{b['ci'][0]:+.4f}, {b['ci'][1]:+.4f}] ({b['diff'] / b['base']:+.2%}): "
                     + {"tuned worse": "the fine-tune predicts general text worse: it forgot a little.",
                        "tuned better": "the fine-tune predicts general text better.",
                        "no evidence of a difference": "no evidence that the fine-tune forgot anything here."}[reading])
    if "judge" in report:
        j = report["judge"]
        reading = _reading(j["ci"], 0.5, "higher")
        line = (f"Judge ({report.get('judge_model', 'judge')}, {j['prompts']} prompts, both orders): tuned win rate "
                f"{j['win_rate']:.2f} [{j['ci'][0]:.2f}, {j['ci'][1]:.2f}]: "
                + {"tuned better": "the judge prefers the tuned model's answers.",
                   "tuned worse": "the judge prefers the base model's answers.",
                   "no evidence of a difference": "the interval contains 0.5, so no evidence of a preference."}[reading])
        if j["first_position_share"] > 0.8 or j["first_position_share"] < 0.2:
            line += (f" The judge picked the first answer in {j['first_position_share']:.0%} of its verdicts, "
                     f"so one order alone would have said {j['one_order']['tuned_first']['win_rate']:.2f} or "
                     f"{j['one_order']['tuned_second']['win_rate']:.2f}: position, not quality.")
        lines.append(line)
    return lines


def rows(report: dict) -> list[dict]:
    """The table of the report, one row per figure: base, tuned, difference, its CI and how to read it."""
    out = []
    if "task" in report:
        t = report["task"]
        out.append({"measure": f"accuracy ({t['task']})", "base": t["base"], "tuned": t["tuned"], "diff": t["diff"],
                    "ci": t["ci"], "reading": _reading(t["ci"], 0, "higher")})
    if "text" in report:
        for key, name in (("bits_per_byte", "bits per byte"), ("perplexity", "perplexity per token")):
            f = report["text"][key]
            out.append({"measure": f"{name} ({report['text']['source']})", "base": f["base"], "tuned": f["tuned"],
                        "diff": f["diff"], "ci": f["ci"], "reading": _reading(f["ci"], 0, "lower")})
    if "judge" in report:
        j = report["judge"]
        out.append({"measure": "judge win rate of tuned", "base": 1 - j["win_rate"], "tuned": j["win_rate"],
                    "diff": j["win_rate"] - 0.5, "ci": [c - 0.5 for c in j["ci"]],
                    "reading": _reading(j["ci"], 0.5, "higher")})
    return out


def table(report: dict) -> str:
    """The report as a plain-text table with the verdict under it."""
    head = f"{'measure':<38} {'base':>9} {'tuned':>9} {'tuned-base':>11}  {'95% CI':<20} reading"
    lines = [f"base:  {report['base']}", f"tuned: {report['tuned']}", head, "-" * len(head)]
    num = lambda x, sign="": f"{x:{sign}.4f}" if abs(x) < 100 else f"{x:{sign}.1f}"  # noqa: E731
    for r in rows(report):
        ci = f"[{num(r['ci'][0], '+')}, {num(r['ci'][1], '+')}]" if r["ci"] else "-"
        lines.append(f"{r['measure'][:38]:<38} {num(r['base']):>9} {num(r['tuned']):>9} {num(r['diff'], '+'):>11}  "
                     f"{ci:<20} {r['reading']}")
    if "judge" in report:
        lines.append("(judge row: base = share of pairs the base won; difference and CI are against 0.5)")
    return "\n".join(lines + [""] + verdict(report))


# ------------------------------------------------------------------------------------------------ CLI

def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--base", default=SMOLLM2, help="the model before fine-tuning (default: %(default)s)")
    add("--tuned", required=True, help="the fine-tuned model: finetune_lm.py output, folder, name or Hub id")
    add("--dtype", choices=("float32", "bfloat16"), help="weights of both models (default: as saved)")
    add("--task", default="sentiment", help="sentiment (default), or a labelled data set name or file")
    add("--n-task", type=int, default=300, help="task items scored (default: %(default)s)")
    add("--column", default="text", help="text column of --task and --text (default: %(default)s)")
    add("--label-column", default="label", help="label column of --task (default: %(default)s)")
    add("--prompt", default=EM.DEFAULT_PROMPT, help="classification prompt with {text} and {labels}")
    add("--text", default="news", help="held-out general text: data set name or file (default: %(default)s)")
    add("--n-docs", type=int, default=30, help="documents of --text scored (default: %(default)s)")
    add("--doc-chars", type=int, default=2000, help="characters per document (default: %(default)s)")
    add("--window", type=int, default=512, help="sliding window in tokens (default: %(default)s)")
    add("--prompts", type=Path, default=DEFAULT_PROMPTS, help="JSONL with a 'prompt' field per line "
                                                             "(default: data/preferences.jsonl)")
    add("--n-prompts", type=int, default=24, help="prompts answered and judged (default: %(default)s)")
    add("--max-new-tokens", type=int, default=64, help="answer length (default: %(default)s)")
    add("--judge", default=SMOLLM2, help="judge model (default: %(default)s)")
    add("--no-judge", dest="use_judge", action="store_false", help="skip the judge section")
    add("--n-boot", type=int, default=2000, help="bootstrap resamples (default: %(default)s)")
    add("--seed", type=int, default=0, help="seed of the items and the resamples (default: %(default)s)")
    add("--json", type=Path, help="write the whole report here")
    args = parser.parse_args(argv)
    for name in ("n_task", "n_docs", "doc_chars", "window", "n_prompts", "max_new_tokens", "n_boot"):
        if getattr(args, name) < 1:
            parser.exit(2, f"error: --{name.replace('_', '-')} must be at least 1\n")
    if "{text}" not in args.prompt:
        parser.exit(2, "error: --prompt must contain {text}\n")
    return args


def run(args: argparse.Namespace) -> dict:
    """The whole report; raises DataError / ModelNotAvailable for input the user can fix."""
    # read every input before loading a model: a typo fails in a second, not after minutes
    items = task_items(args.task, args.n_task, args.seed, args.column, args.label_column)
    docs, source = text_documents(args.text, args.n_docs, args.doc_chars, args.column)
    prompts = read_prompts(args.prompts, args.n_prompts) if args.use_judge else []
    for name in (args.base, args.tuned) + ((args.judge,) if args.use_judge else ()):
        model_source(name)
    base, base_tok = load_any(args.base, args.dtype)
    tuned, tuned_tok = load_any(args.tuned, args.dtype)
    report = {"base": args.base, "tuned": args.tuned}
    scored = {name: task_correct(m, t, items, args.prompt) for name, m, t in
              (("base", base, base_tok), ("tuned", tuned, tuned_tok))}
    report["task"] = task_section(items, scored["base"], scored["tuned"], args.n_boot, args.seed)
    nll = {name: document_nll(m, t, docs, args.window) for name, m, t in
           (("base", base, base_tok), ("tuned", tuned, tuned_tok))}
    report["text"] = text_section(source, nll["base"], nll["tuned"], same_tokenizer(base_tok, tuned_tok),
                                  args.n_boot, args.seed)
    if args.use_judge:
        answers = {name: generate_answers(m, t, prompts, args.max_new_tokens) for name, m, t in
                   (("base", base, base_tok), ("tuned", tuned, tuned_tok))}
        judge = J.LocalJudge(base, base_tok) if args.judge == args.base else J.load_judge(args.judge)
        records = judge_answers(judge, prompts, answers["base"], answers["tuned"])
        report["judge_model"] = args.judge
        report["judge"] = judge_section(records, args.n_boot, args.seed) | {
            "answers": [{"prompt": p, "base": b, "tuned": t} for p, b, t in
                        zip(prompts, answers["base"], answers["tuned"], strict=True)]}
    report["verdict"] = verdict(report)
    return report


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        report = run(args)
    except (DataError, J.DataError, ModelNotAvailable) as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)  # one line
        return 2
    print(table(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
