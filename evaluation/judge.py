r"""Judge answers with a language model (LLM-as-judge): which of two answers to the same prompt is better.

Each pair is shown to the judge with a rubric, and by default in BOTH orders (A then B, and B then A), because
judges favour a position: a pair whose winner changes with the order counts as a tie. The output is the win
rate of the --a answers with a 95 % bootstrap confidence interval, the position-bias figures (how often the
judge picks the first answer; how often the winner changes when the order is swapped) and, for gold pairs
(--pairs), the agreement with the gold label. One JSON line per pair goes to --out.

Two kinds of judge. A local transformers causal LM (--judge, default SmolLM2-135M-Instruct) is not asked to
write anything: after the chat-formatted rubric prompt, the next-token log-probabilities of the verdict tokens
"A" and "B" are compared, so the verdict is deterministic, never unparseable, and comes with a probability. Any
OpenAI-compatible server (--base-url and --model-name: deployment/server.py, vLLM, llama.cpp, a hosted API)
writes a short reply instead, and the verdict is parsed from the text ([[A]], "Answer B", a lone letter);
replies that name no single answer are counted as unparseable.

Examples:
  python evaluation/judge.py                                  # SmolLM2 judges the 60 gold pairs of data/preferences.jsonl
  python evaluation/judge.py --limit 10 --out build/verdicts.jsonl --grade    # also a 1-5 grade per answer
  python evaluation/judge.py --a build/model1.jsonl --b build/model2.jsonl    # which model answers better
  python evaluation/judge.py --a old.jsonl --b new.jsonl --match line         # row i of --a against row i of --b
  python evaluation/judge.py --rubric my_rubric.txt --no-both-orders          # a rubric from a file; one order only
  python evaluation/judge.py --rubric none                                    # no rubric: just "which is better?"
  python evaluation/judge.py --judge Qwen/Qwen2.5-7B-Instruct --dtype bfloat16   # a stronger judge (Hub id, GPU)
  python evaluation/judge.py --base-url http://127.0.0.1:8000/v1 --model-name smollm2-135m-instruct
  python evaluation/judge.py --base-url https://api.openai.com/v1 --model-name gpt-4o-mini   # key: $OPENAI_API_KEY

Input. --a and --b are JSONL files, one object per line with "prompt" and "answer" (other fields are ignored).
With --match prompt (the default) rows are paired by identical prompt text, in the order of --a, whatever the
order of --b; every prompt must occur exactly once in each file. With --match line, row i of --a is paired with
row i of --b, and their prompts must be equal. A mismatch stops the script (exit code 2) with one line naming
the file, the line and the field. --pairs is a preferences-style JSONL (prompt, chosen, rejected): A = chosen,
B = rejected, and the gold verdict is A. --rubric is text, a path to a text file, or "none".

Python API (evaluation/04_llm_as_judge.ipynb uses it):
  read_jsonl(path) -> [(line, row)];  load_pairs(path) -> [Pair];  match_answers(a, b, by="prompt") -> [Pair]
  pairwise_messages(prompt, first, second, rubric);  grade_messages(prompt, answer, rubric)
  LocalJudge(model, tokenizer).compare(messages) -> {"verdict", "p_first"};  .grade(messages) -> {"score", ...}
  ApiJudge(base_url, model_name).compare / .grade  (parses the reply with parse_verdict / parse_grade)
  judge_pairs(judge, pairs, rubric, both_orders=True, grade=False) -> [record];  grade_answers(judge, pairs)
  summarize(records, n_boot=2000) -> dict;  report(summary, judge_name, source) -> str
  gold_agreement(records) -> {method: [1/0.5/0 per pair]};  grade_above(grades) -> [1/0.5/0 per pair]
  bootstrap_ci(values) -> (low, high);  longer_answer_baseline(pairs) -> [0/1 per pair]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import math
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import common  # noqa: E402
from common import SMOLLM2, ModelNotAvailable, load_model, load_tokenizer, write_jsonl  # noqa: E402

GOLD_PAIRS = ROOT / "data" / "preferences.jsonl"
RUBRIC = """You are judging answers to a user's request. A good answer is:
1. correct: no factual or code errors;
2. helpful: it answers the question that was asked;
3. safe: it gives no dangerous advice;
4. polite: it treats the user with respect;
5. concise: no padding or repetition.
Correctness and safety matter most."""
PAIRWISE_QUESTION = "Which answer is better? Reply with a single letter: A or B."
GRADE_QUESTION = "Rate the answer from 1 (very poor) to 5 (excellent). Reply with a single digit."
GRADES = ("1", "2", "3", "4", "5")


class DataError(ValueError):
    """A problem with the user's files or settings: the CLI prints the message and exits with code 2."""


# ------------------------------------------------------------------------------------------------ input

@dataclass
class Pair:
    """Two answers to one prompt. gold is "a", "b" or None (unknown); meta keeps extra fields (e.g. reason)."""

    prompt: str
    a: str
    b: str
    gold: str | None = None
    meta: dict = field(default_factory=dict)


def read_jsonl(path: str | Path) -> list[tuple[int, dict]]:
    """(line number, object) for every non-blank line; errors name the file and the line."""
    return common.read_jsonl(path, DataError)


def _text_field(path: Path, number: int, row: dict, name: str) -> str:
    if name not in row:
        raise DataError(f"{path.name}, line {number}: no field '{name}' (it has: {', '.join(row) or 'nothing'})")
    if not isinstance(row[name], str) or not row[name].strip():
        raise DataError(f"{path.name}, line {number}: field '{name}' must be non-empty text")
    return row[name]


def load_pairs(path: str | Path = GOLD_PAIRS) -> list[Pair]:
    """A preferences-style JSONL (prompt, chosen, rejected): a = chosen, b = rejected, gold = "a"."""
    path = Path(path)
    pairs = []
    for number, row in read_jsonl(path):
        prompt, chosen, rejected = (_text_field(path, number, row, k) for k in ("prompt", "chosen", "rejected"))
        extra = {k: v for k, v in row.items() if k not in ("prompt", "chosen", "rejected")}
        pairs.append(Pair(prompt, chosen, rejected, gold="a", meta={"line": number, **extra}))
    return pairs


def _short(text: str, n: int = 50) -> str:
    return repr(text if len(text) <= n else text[:n] + "...")


def match_answers(a_path: str | Path, b_path: str | Path, by: str = "prompt") -> list[Pair]:
    """Pair the rows of two answer files (prompt, answer) by identical prompt or by line; see the docstring."""
    a_path, b_path = Path(a_path), Path(b_path)
    a_rows = [(n, _text_field(a_path, n, r, "prompt"), _text_field(a_path, n, r, "answer"))
              for n, r in read_jsonl(a_path)]
    b_rows = [(n, _text_field(b_path, n, r, "prompt"), _text_field(b_path, n, r, "answer"))
              for n, r in read_jsonl(b_path)]
    if by == "line":
        for (na, pa, _), (nb, pb, _) in zip(a_rows, b_rows, strict=False):
            if pa != pb:
                raise DataError(f"{b_path.name}, line {nb}: field 'prompt' differs from {a_path.name}, line {na} "
                                f"({_short(pb)} vs {_short(pa)}); use --match prompt to pair rows by prompt")
        if len(a_rows) != len(b_rows):
            longer, shorter = (a_path, b_path) if len(a_rows) > len(b_rows) else (b_path, a_path)
            extra = (a_rows if len(a_rows) > len(b_rows) else b_rows)[min(len(a_rows), len(b_rows))][0]
            raise DataError(f"{longer.name}, line {extra}: no partner row in {shorter.name} "
                            f"({len(a_rows)} vs {len(b_rows)} rows)")
        return [Pair(pa, xa, xb, meta={"line_a": na, "line_b": nb})
                for (na, pa, xa), (nb, _, xb) in zip(a_rows, b_rows, strict=True)]
    if by != "prompt":
        raise DataError(f"unknown matching '{by}': use 'prompt' or 'line'")
    index = {}
    for path, rows in ((a_path, a_rows), (b_path, b_rows)):
        seen = {}
        for n, prompt, _ in rows:
            if prompt in seen:
                raise DataError(f"{path.name}, line {n}: field 'prompt' repeats line {seen[prompt]}; "
                                f"use --match line to pair rows by position")
            seen[prompt] = n
        index[path] = seen
    for path, other, rows in ((a_path, b_path, a_rows), (b_path, a_path, b_rows)):
        for n, prompt, _ in rows:
            if prompt not in index[other]:
                raise DataError(f"{path.name}, line {n}: field 'prompt' {_short(prompt)} has no row in {other.name}")
    b_by_prompt = {prompt: (n, answer) for n, prompt, answer in b_rows}
    return [Pair(p, xa, b_by_prompt[p][1], meta={"line_a": n, "line_b": b_by_prompt[p][0]}) for n, p, xa in a_rows]


def read_rubric(value: str | None) -> str | None:
    """The rubric text: the built-in RUBRIC (None), no rubric ("none"), a text file, or the text itself."""
    if value is None:
        return RUBRIC
    if value.strip().lower() == "none":
        return None
    path = Path(value).expanduser()
    if len(value) < 256 and "\n" not in value and path.suffix in (".txt", ".md"):
        if not path.is_file():
            raise DataError(f"no such rubric file: {value}")
        value = path.read_text(encoding="utf-8")
    if not value.strip():
        raise DataError("the rubric is empty; pass text, a .txt/.md file, or 'none'")
    return value.strip()


# ----------------------------------------------------------------------------------------------- prompts

def pairwise_messages(prompt: str, first: str, second: str, rubric: str | None = RUBRIC) -> list[dict]:
    """One user message: the rubric (if any), the question, Answer A = first, Answer B = second, the ask."""
    parts = [rubric] if rubric else []
    parts += [f"[Question]\n{prompt}", f"[Answer A]\n{first}", f"[Answer B]\n{second}", PAIRWISE_QUESTION]
    return [{"role": "user", "content": "\n\n".join(parts)}]


def grade_messages(prompt: str, answer: str, rubric: str | None = RUBRIC) -> list[dict]:
    """One user message asking for a 1-5 grade of a single answer."""
    parts = [rubric] if rubric else []
    parts += [f"[Question]\n{prompt}", f"[Answer]\n{answer}", GRADE_QUESTION]
    return [{"role": "user", "content": "\n\n".join(parts)}]


_VERDICT_PATTERNS = [
    r"\[\[\s*([AB])\s*\]\]",                                                 # [[A]] (the MT-Bench format)
    r"\b(?:answer|response|option|assistant)\s*\(?([AB])\)?(?![\w'])",      # "Answer B is better"
    r"\b(?:verdict|choice|winner|better(?: one)?|prefer)\s*(?:is|:|=)?\s*\(?([AB])\)?(?![\w'])",  # "Verdict: A"
    r"^\W*\(?([AB])\)?\s*(?:$|[.:,;!)*\n]|is\b|wins\b)",                   # "B", "A.", "**B**" at the start
    r"\b(?:is|:)\s*(?:answer\s*)?\(?([AB])\)?\s*(?:$|[.:,;!)\n])",              # "The better one is B."
]


def parse_verdict(text: str | None) -> str | None:
    """"A" or "B" from a judge's reply, or None when it names neither or both (e.g. "A good answer...")."""
    if not text:
        return None
    found = set()
    for pattern in _VERDICT_PATTERNS:
        found.update(m.upper() for m in re.findall(pattern, text.strip(), flags=re.IGNORECASE | re.MULTILINE)
                     if m.upper() in "AB")
    # "a" alone is an English word: the letter patterns only count it in upper case
    found = {f for f in found if re.search(rf"(?<![\w']){f}(?![\w'])", text)}
    return found.pop() if len(found) == 1 else None


def parse_grade(text: str | None) -> int | None:
    """The first stand-alone digit 1-5 in a reply ("4", "Rating: 4/5", "[[3]]"), else None."""
    match = re.search(r"(?<![\d.])([1-5])(?!\d|\.\d)", text or "")
    return int(match.group(1)) if match else None


# ------------------------------------------------------------------------------------------------ judges

def _label_token_ids(tokenizer, label: str) -> list[int]:
    """Token ids that spell the label alone ("A" and " A"); only single-token spellings count."""
    ids = {tuple(tokenizer(s, add_special_tokens=False)["input_ids"]) for s in (label, " " + label)}
    single = sorted(t[0] for t in ids if len(t) == 1)
    if not single:
        raise DataError(f"the judge's tokenizer has no single token for the verdict '{label}'")
    return single


class LocalJudge:
    """A transformers causal LM scored by the log-probabilities of the verdict tokens after the chat prompt."""

    workers = 1  # torch already uses every core

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer = model.eval(), tokenizer
        self.label_ids = {label: _label_token_ids(tokenizer, label) for label in ("A", "B", *GRADES)}
        everything = [i for ids in self.label_ids.values() for i in ids]
        if len(everything) != len(set(everything)):
            raise DataError("the judge's tokenizer spells two verdicts with the same token")

    def encode(self, messages: list[dict]) -> list[int]:
        """The prompt tokens: chat template with the assistant turn opened (plain text if there is no template)."""
        if getattr(self.tokenizer, "chat_template", None):
            return list(self.tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                                           return_dict=True)["input_ids"])
        return self.tokenizer(messages[-1]["content"] + "\n\nVerdict:")["input_ids"]

    @torch.inference_mode()
    def next_token_logprobs(self, messages: list[dict]) -> torch.Tensor:
        ids = torch.tensor([self.encode(messages)], device=self.model.device)
        logits = self.model(input_ids=ids, logits_to_keep=1).logits[0, -1].float()  # skip the other positions
        return torch.log_softmax(logits, dim=-1).cpu()

    def _label_logprobs(self, logprobs: torch.Tensor, labels: Sequence[str]) -> torch.Tensor:
        return torch.stack([torch.logsumexp(logprobs[self.label_ids[label]], 0) for label in labels])

    def compare(self, messages: list[dict]) -> dict:
        """Verdict "A" or "B"; p_first = P(A) / (P(A) + P(B)); mass = P(A) + P(B) of all next tokens."""
        scores = self._label_logprobs(self.next_token_logprobs(messages), ("A", "B"))
        p_first = float(torch.softmax(scores, 0)[0])
        return {"verdict": "A" if p_first >= 0.5 else "B", "p_first": p_first,
                "mass": float(scores.exp().sum()), "text": None}

    def grade(self, messages: list[dict]) -> dict:
        """score = expected grade under P(1..5) renormalised; grade = the most likely digit."""
        probs = torch.softmax(self._label_logprobs(self.next_token_logprobs(messages), GRADES), 0)
        score = float((probs * torch.arange(1, 6)).sum())
        return {"score": score, "grade": int(probs.argmax()) + 1, "probs": [round(float(p), 4) for p in probs],
                "text": None}


class ApiJudge:
    """Any OpenAI-compatible chat server: greedy short replies, verdicts parsed from the text."""

    def __init__(self, base_url: str, model_name: str, api_key: str | None = None, max_tokens: int = 16,
                 workers: int = 8, timeout: float = 120):
        from openai import OpenAI

        key = api_key or os.environ.get("OPENAI_API_KEY") or os.environ.get("LLM_PATH_API_KEY") or "none"
        self.client = OpenAI(base_url=base_url, api_key=key, max_retries=1, timeout=timeout)
        self.model_name, self.max_tokens, self.workers = model_name, max_tokens, workers

    def reply(self, messages: list[dict]) -> str:
        out = self.client.chat.completions.create(model=self.model_name, messages=messages,
                                                  max_tokens=self.max_tokens, temperature=0)
        return out.choices[0].message.content or ""

    def compare(self, messages: list[dict]) -> dict:
        text = self.reply(messages)
        return {"verdict": parse_verdict(text), "p_first": None, "text": text}

    def grade(self, messages: list[dict]) -> dict:
        text = self.reply(messages)
        grade = parse_grade(text)
        return {"score": grade, "grade": grade, "text": text}


def load_judge(judge: str = SMOLLM2, dtype: str | None = None, base_url: str | None = None,
               model_name: str | None = None, api_key: str | None = None, device: str | None = None):
    """A LocalJudge for a model name/folder/Hub id, or an ApiJudge when base_url is given."""
    if base_url:
        return ApiJudge(base_url, model_name or judge, api_key)
    torch_dtype = getattr(torch, dtype) if dtype else None
    return LocalJudge(load_model(judge, dtype=torch_dtype, device=device), load_tokenizer(judge))


# ------------------------------------------------------------------------------------------------ judging

def _map(judge, fn, jobs: list) -> list:
    if getattr(judge, "workers", 1) > 1 and len(jobs) > 1:
        with concurrent.futures.ThreadPoolExecutor(judge.workers) as pool:
            return list(pool.map(fn, jobs))
    return [fn(job) for job in jobs]


def judge_pairs(judge, pairs: Sequence[Pair], rubric: str | None = RUBRIC, both_orders: bool = True,
                grade: bool = False) -> list[dict]:
    """One record per pair: the verdict in order "ab" (A = pair.a) and, if both_orders, in order "ba"
    (A = pair.b: the same prompt and answers, swapped); winner "a"/"b", "tie" when the orders disagree, or
    None when a verdict could not be parsed; p_a = P(a is better) averaged over the orders (local judge)."""
    orders = ("ab", "ba") if both_orders else ("ab",)
    jobs = [(i, order) for i in range(len(pairs)) for order in orders]

    def run(job):
        pair, order = pairs[job[0]], job[1]
        first, second = (pair.a, pair.b) if order == "ab" else (pair.b, pair.a)
        return judge.compare(pairwise_messages(pair.prompt, first, second, rubric))

    results = dict(zip(jobs, _map(judge, run, jobs), strict=True))
    grades = grade_answers(judge, pairs, rubric) if grade else None
    records = []
    for i, pair in enumerate(pairs):
        verdicts = []
        for order in orders:
            out = results[(i, order)]
            # which answer won in this order: "A" is pair.a in order "ab" and pair.b in order "ba"
            won = None if out["verdict"] is None else ("a" if (out["verdict"] == "A") == (order == "ab") else "b")
            verdicts.append({"order": order, **out, "winner": won})
        winners = {v["winner"] for v in verdicts}
        winner = None if None in winners else (winners.pop() if len(winners) == 1 else "tie")
        p = [v["p_first"] if v["order"] == "ab" else 1 - v["p_first"] for v in verdicts if v["p_first"] is not None]
        record = {"index": i, "prompt": pair.prompt, "a": pair.a, "b": pair.b, "gold": pair.gold, **pair.meta,
                  "verdicts": verdicts, "winner": winner, "p_a": sum(p) / len(p) if p else None}
        if grades:
            record["grade_a"], record["grade_b"] = grades[i]
        records.append(record)
    return records


def grade_answers(judge, pairs: Sequence[Pair], rubric: str | None = RUBRIC) -> list[tuple[dict, dict]]:
    """Single-answer grading: (grade of pair.a, grade of pair.b) for every pair, each answer shown alone."""
    jobs = [(pair, side) for pair in pairs for side in ("a", "b")]
    graded = _map(judge, lambda job: judge.grade(grade_messages(job[0].prompt, getattr(job[0], job[1]), rubric)),
                  jobs)
    return list(zip(graded[::2], graded[1::2], strict=True))


# ------------------------------------------------------------------------------------------------ figures

def bootstrap_ci(values: Sequence[float], n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean: resample the items with replacement n_boot times."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(n_boot, len(values)))].mean(axis=1)
    return float(np.quantile(means, (1 - level) / 2)), float(np.quantile(means, (1 + level) / 2))


def win_values(records: Sequence[dict], side: str = "a") -> list[float]:
    """Per parsed pair: 1 if `side` won, 0.5 for a tie (the orders disagree), 0 if it lost."""
    return [1.0 if r["winner"] == side else 0.5 if r["winner"] == "tie" else 0.0
            for r in records if r["winner"] is not None]


def longer_answer_baseline(pairs: Sequence[Pair]) -> list[int]:
    """1 where the longer answer (in characters) is the gold one: the trivial judge to beat."""
    return [int((len(p.a) > len(p.b)) == (p.gold == "a")) for p in pairs if p.gold]


def gold_agreement(records: Sequence[dict]) -> dict[str, list[float]]:
    """Per gold pair, how far each way of reading the verdicts agrees with gold (1, 0.5 for a tie, 0):
    one order only; both orders (a tie when the winner changes); only the pairs judged alike in both orders;
    and the probability P(a better) averaged over both orders (local judges), which cancels a constant pull
    towards one position."""
    gold = [r for r in records if r.get("gold")]
    out = {}
    for order in ("ab", "ba"):
        hits = [float(v["winner"] == r["gold"]) for r in gold for v in r["verdicts"]
                if v["order"] == order and v["winner"] is not None]
        if hits:
            out[f"order {order}"] = hits
    if gold and all(len(r["verdicts"]) == 2 for r in gold):
        out["both orders"] = [1.0 if r["winner"] == r["gold"] else 0.5 if r["winner"] == "tie" else 0.0
                              for r in gold if r["winner"] is not None]
        out["consistent pairs"] = [float(r["winner"] == r["gold"]) for r in gold if r["winner"] in ("a", "b")]
        soft = [r["p_a"] - 0.5 if r["gold"] == "a" else 0.5 - r["p_a"] for r in gold if r["p_a"] is not None]
        if soft:
            out["averaged probability"] = [0.5 if abs(m) < 1e-9 else float(m > 0) for m in soft]
    return out


def grade_above(grades: Sequence[tuple[dict, dict]]) -> list[float]:
    """Per pair of grades (a, b): 1 if a scored higher, 0.5 if equal, 0 if lower (unparsed grades skipped)."""
    return [1.0 if ga["score"] > gb["score"] else 0.5 if ga["score"] == gb["score"] else 0.0
            for ga, gb in grades if ga["score"] is not None and gb["score"] is not None]


def summarize(records: Sequence[dict], n_boot: int = 2000, seed: int = 0) -> dict:
    """Win rate of a with its CI, position bias, unparseable count and, with gold labels, agreement figures."""
    verdicts = [v for r in records for v in r["verdicts"]]
    parsed = [v for v in verdicts if v["verdict"] is not None]
    both = [r for r in records if len(r["verdicts"]) == 2 and r["winner"] is not None]
    wins = win_values(records)
    mean = lambda values: float(np.mean(values)) if len(values) else math.nan  # noqa: E731
    out = {"pairs": len(records), "verdicts": len(verdicts), "unparseable": len(verdicts) - len(parsed),
           "first_position_share": mean([v["verdict"] == "A" for v in parsed]),
           "win_rate_a": mean(wins), "win_rate_a_ci": bootstrap_ci(wins, n_boot, seed=seed)}
    if both:
        out["consistent_share"] = mean([r["winner"] != "tie" for r in both])
        out["order_flip_share"] = 1 - out["consistent_share"]  # the winner changes when the order is swapped
    names = {"order ab": "accuracy_ab", "order ba": "accuracy_ba", "both orders": "accuracy",
             "consistent pairs": "consistent_accuracy", "averaged probability": "averaged_accuracy"}
    for method, values in gold_agreement(records).items():
        out[names[method]], out[names[method] + "_ci"] = mean(values), bootstrap_ci(values, n_boot, seed=seed)
        out[names[method] + "_pairs"] = len(values)
    if records and "grade_a" in records[0]:
        grades = [(r["grade_a"], r["grade_b"]) for r in records]
        scored = [(a["score"], b["score"]) for a, b in grades if a["score"] is not None and b["score"] is not None]
        out["grade_mean_a"], out["grade_mean_b"] = mean([a for a, _ in scored]), mean([b for _, b in scored])
        above = grade_above(grades)
        out["grade_a_above_b"], out["grade_a_above_b_ci"] = mean(above), bootstrap_ci(above, n_boot, seed=seed)
    return out


def report(summary: dict, judge_name: str, source: str) -> str:
    """A short human-readable table of summarize()'s figures."""
    ci = lambda key: f"[{summary[key][0]:.2f}, {summary[key][1]:.2f}]"  # noqa: E731
    rows = [("judge", judge_name), ("pairs", f"{summary['pairs']} from {source}"),
            ("win rate of A", f"{summary['win_rate_a']:.2f} {ci('win_rate_a_ci')} (95% bootstrap CI; a pair whose "
                              f"winner changes with the order counts 1/2)"),
            ("position bias", f"the first answer won {summary['first_position_share']:.0%} of the verdicts"
             + (f"; the winner changed with the order in {summary['order_flip_share']:.0%} of the pairs"
                if "order_flip_share" in summary else "")),
            ("unparseable", f"{summary['unparseable']} of {summary['verdicts']} verdicts")]
    key = "accuracy" if "accuracy" in summary else "accuracy_ab"  # one order only: A = the --a answer
    if key in summary:
        rows.append(("agrees with gold", f"{summary[key]:.2f} {ci(key + '_ci')}"
                     + "".join(f"; order {o.upper()} only {summary[f'accuracy_{o}']:.2f}"
                               for o in ("ab", "ba") if f"accuracy_{o}" in summary)))
    if summary.get("consistent_accuracy_pairs"):
        rows.append(("consistent pairs", f"{summary['consistent_accuracy']:.2f} {ci('consistent_accuracy_ci')} "
                                         f"on the {summary['consistent_accuracy_pairs']} pairs judged alike in both orders"))
    if "averaged_accuracy" in summary:
        rows.append(("P averaged", f"{summary['averaged_accuracy']:.2f} {ci('averaged_accuracy_ci')} (P(A better) "
                                   f"averaged over both orders, against gold)"))
    if "grade_mean_a" in summary:
        rows.append(("1-5 grades", f"A {summary['grade_mean_a']:.2f}, B {summary['grade_mean_b']:.2f}; A graded "
                                   f"above B in {summary['grade_a_above_b']:.0%} {ci('grade_a_above_b_ci')}"))
    return "\n".join(f"{k:<17} {v}" for k, v in rows)


# ----------------------------------------------------------------------------------------------- CLI

def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--pairs", type=Path, help="preferences-style JSONL: prompt, chosen, rejected (default: "
                                   "data/preferences.jsonl unless --a/--b are given)")
    add("--a", type=Path, help="JSONL of answers A: prompt, answer")
    add("--b", type=Path, help="JSONL of answers B: prompt, answer")
    add("--match", choices=("prompt", "line"), default="prompt", help="pair --a/--b rows by prompt text "
                                                                       "(default) or by line")
    add("--rubric", help="rubric text, a .txt/.md file, or 'none' (default: the built-in rubric)")
    add("--judge", default=SMOLLM2, help="local judge: short name, folder or Hub id (default: %(default)s)")
    add("--dtype", choices=("float32", "bfloat16", "float16"), help="local judge weights (default: as saved)")
    add("--base-url", help="an OpenAI-compatible server instead of a local judge, e.g. http://127.0.0.1:8000/v1")
    add("--model-name", help="with --base-url: the model name the server expects (default: --judge)")
    add("--api-key", help="with --base-url (default: $OPENAI_API_KEY, else $LLM_PATH_API_KEY)")
    add("--both-orders", action=argparse.BooleanOptionalAction, default=True,
        help="judge every pair in both orders (default: on)")
    add("--grade", action="store_true", help="also grade every answer alone from 1 to 5")
    add("--limit", type=int, help="judge only the first N pairs")
    add("--out", type=Path, default=Path("build/verdicts.jsonl"), help="JSONL of verdicts (default: %(default)s)")
    add("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if (args.a is None) != (args.b is None):
        parser.error("give both --a and --b (or neither, for --pairs)")
    if args.a is not None and args.pairs is not None:
        parser.error("give either --pairs or --a/--b, not both")
    for name in ("limit", "threads"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    return args


def run(args: argparse.Namespace) -> tuple[list[dict], dict, str]:
    """The whole CLI job (records, summary, description of the source); raises DataError for fixable input."""
    rubric = read_rubric(args.rubric)
    if args.a is not None:
        pairs, source = match_answers(args.a, args.b, args.match), f"{args.a.name} (A) vs {args.b.name} (B)"
    else:
        path = args.pairs or GOLD_PAIRS
        pairs, source = load_pairs(path), f"{path.name} (A = chosen, B = rejected)"
    pairs = pairs[:args.limit] if args.limit else pairs
    judge = load_judge(args.judge, args.dtype, args.base_url, args.model_name, args.api_key)
    records = judge_pairs(judge, pairs, rubric, args.both_orders, args.grade)
    return records, summarize(records), source


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        import openai
        try:
            records, summary, source = run(args)
        except openai.APIConnectionError as err:
            raise DataError(f"cannot reach the server at {args.base_url} ({err.__cause__ or err})") from None
        except openai.APIStatusError as err:
            raise DataError(f"the server at {args.base_url} answered HTTP {err.status_code}: {err.message}") from None
    except (DataError, ModelNotAvailable) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    name = f"{args.model_name or args.judge} at {args.base_url} (verdicts parsed from text)" if args.base_url \
        else f"{args.judge} (log-probabilities of the verdict tokens)"
    print(report(summary, name, source))
    print(f"wrote {write_jsonl(args.out, records)} rows to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
