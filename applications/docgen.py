"""Documentation generation, measured: a chat model writes one-line docstrings, scored against the real ones.

A function's source is shown to the model with its docstring removed (sliced out with `ast`, the body cut after
a few lines), and the model writes the summary line. Five prompt patterns build the chat messages: `plain` (the
request alone), `role` (a system turn: an expert technical writer following PEP 257), `format` (explicit rules:
one imperative sentence, at most 15 words, the line only), `few-shot` (three worked examples from other
functions) and `combined` (all three). The reply is cleaned to one line (quotes, backticks, fences and
"Docstring:" prefixes dropped) and scored against the real first docstring line with ROUGE-1 and ROUGE-L F
(Porter stemmer, Google's `rouge-score`, as in evaluation/metrics/rouge), exact match, and a format check.
Differences between patterns get a paired bootstrap interval (same functions, resampled together).

Examples:
  python applications/docgen.py suggest my_module.py                     # functions that have no docstring
  python applications/docgen.py suggest my_module.py --all --pattern combined
  python applications/docgen.py suggest applications/kbqa.py --function build_table
  python applications/docgen.py eval --limit 20                          # standard library, every pattern
  python applications/docgen.py eval --source common/ --patterns plain,few-shot --json build/docgen.json
  python applications/docgen.py eval --source my_package/ --model HuggingFaceTB/SmolLM2-360M-Instruct

Python API (applications/03_documentation.ipynb uses it):
  collect_functions(sources, ...) -> [dict]       stdlib_functions(n, seed) / repo_functions(n, seed)
  snapshot_repo_functions(path) rebuilds data/repo_functions.jsonl from the current tree
  strip_docstring(source, node, max_lines) -> str   read_python_file(path) -> source
  PATTERNS {name: messages(code)}, SHOTS           generate_docs(model, tokenizer, functions, pattern, ...)
  clean_line(text) -> str   name_sentence(name) -> str   follows_format(line) -> bool   word_count(line)
  score(predictions, references) -> {rouge1, rougeL, exact}   paired_bootstrap(a, b) / bootstrap_ci(x)
"""

from __future__ import annotations

import argparse
import ast
import json
import random
import re
import sys
import textwrap
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "applications"))
from common import SMOLLM2, ModelNotAvailable, load_model, load_tokenizer, read_jsonl, write_jsonl  # noqa: E402

REPO_SNAPSHOT = ROOT / "data" / "repo_functions.jsonl"  # this repository's functions, frozen on 2026-11-29
MAX_LINES = 12  # lines of a function shown to the model (signature included); the rest becomes "..."
MAX_FORMAT_WORDS = 15
REPO_FOLDERS = ("common", "pretrained", "fine-tuning", "applications", "optimization", "evaluation", "deployment",
                "tools")
# Few-shot examples: real standard-library functions, never evaluated (collect_functions leaves them out).
SHOT_NAMES = (("calendar", "isleap"), ("heapq", "heappush"), ("shutil", "copymode"))
NON_VERBS = {"a", "an", "the", "this", "that", "it", "function", "method", "helper", "returns", "given", "if",
             "when", "for", "to", "same", "true", "false", "none", "whether", "docstring", "one", "all"}


class DocgenError(ValueError):
    """Bad input (file, function name, settings): reported as one line, exit code 2."""


# --- functions without their docstrings --------------------------------------------------------------------------

def strip_docstring(source: str, node: ast.FunctionDef | ast.AsyncFunctionDef, max_lines: int = MAX_LINES) -> str:
    """The function as written (decorators, signature, comments), its docstring lines sliced out, dedented and cut
    after `max_lines` lines (a last line "..." says the body goes on)."""
    lines = source.splitlines()
    start = min([node.lineno, *(d.lineno for d in node.decorator_list)]) - 1
    keep = list(range(start, node.end_lineno))
    doc = node.body[0] if ast.get_docstring(node) is not None else None
    if doc is not None:  # slicing keeps the author's formatting and comments; ast.unparse would drop comments
        after = doc.end_lineno
        while after < node.end_lineno and not lines[after].strip():
            after += 1  # the blank lines that followed the docstring go with it
        keep = [i for i in keep if not doc.lineno - 1 <= i < after]
    code = textwrap.dedent("\n".join(lines[i] for i in keep))
    out = code.splitlines()
    if len(out) > max_lines:
        indent = re.match(r"\s*", out[max_lines - 1]).group(0) or "    "
        out = out[:max_lines] + [f"{indent}..."]
    return "\n".join(out)


def _first_line(doc: str | None) -> str | None:
    return " ".join(doc.strip().splitlines()[0].split()) if doc and doc.strip() else None


def collect_functions(sources: dict[str, str], min_words: int = 0, max_words: int = 10_000, methods: bool = False,
                      private: bool = True, sentence: bool = False, max_lines: int = MAX_LINES) -> list[dict]:
    """Every function of every module (module-level; with `methods`, also `Class.method`) as a dict: module,
    name, doc (first docstring line or None), words, code (docstring removed), line. Modules that do not parse
    are skipped; a documented function is kept only if its first line has min_words..max_words words (and, with
    `sentence`, ends with a full stop) and code remains once the docstring is gone. The few-shot functions (SHOT_NAMES) are never included."""
    out = []
    for module, source in sources.items():
        try:
            tree = ast.parse(source)
        except (SyntaxError, ValueError):  # ValueError: null bytes
            continue
        nodes = [(n.name, n) for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        if methods:
            nodes += [(f"{c.name}.{n.name}", n) for c in tree.body if isinstance(c, ast.ClassDef)
                      for n in c.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        for name, node in nodes:
            if (module, name) in SHOT_NAMES or (not private and name.split(".")[-1].startswith("_")):
                continue
            doc = _first_line(ast.get_docstring(node))
            if doc is not None:
                if not min_words <= len(doc.split()) <= max_words or len(node.body) < 2:
                    continue  # a body that is only a docstring leaves nothing to describe
                if sentence and not doc.endswith("."):
                    continue  # a first line that breaks a sentence in two is not a summary
                if node.body[0].lineno == node.lineno:
                    continue  # `def f(): """doc"""` on one line: nothing to slice out cleanly
            out.append({"module": module, "name": name, "doc": doc, "words": len(doc.split()) if doc else 0,
                        "code": strip_docstring(source, node, max_lines), "line": node.lineno})
    return out


def _sample(functions: list[dict], n: int | None, seed: int) -> list[dict]:
    documented = [f for f in functions if f["doc"]]
    if n is None or n >= len(documented):
        return documented
    return random.Random(seed).sample(documented, n)


def stdlib_functions(n: int | None = 60, seed: int = 0, min_words: int = 4, max_words: int = 20) -> list[dict]:
    """A seeded sample of public module-level standard-library functions whose first docstring line is a sentence
    of 4-20 words (test modules, idlelib and lib2to3 left out)."""
    from kbqa import stdlib_sources  # the stdlib's source, as lesson 06 reads it

    sources = {m: t for m, t in stdlib_sources().items()
               if not re.search(r"(^|\.)(tests?|idle_test|idlelib|lib2to3)(\.|$)|^test_", m)}
    return _sample(collect_functions(sources, min_words, max_words, private=False, sentence=True), n, seed)


def repo_sources(root: Path = ROOT, folders: tuple[str, ...] = REPO_FOLDERS) -> dict[str, str]:
    """This repository's own Python files (written in 2026, after the model's training data): {module: text}.
    docgen.py itself is left out (its prompts quote docstring rules)."""
    out = {}
    for folder in folders:
        for f in sorted((root / folder).rglob("*.py")):
            if f.name == "docgen.py" or ".ipynb_checkpoints" in f.parts:
                continue
            out[".".join(f.relative_to(root).with_suffix("").parts)] = f.read_text(encoding="utf-8", errors="replace")
    return out


def repo_functions(n: int | None = 60, seed: int = 0) -> list[dict]:
    """A seeded sample of the 60 functions of this repository frozen in data/repo_functions.jsonl.

    The repository keeps changing, so the lesson reads a snapshot (taken with `snapshot_repo_functions`) instead of
    the live tree: its numbers then stay reproducible. `eval --source FOLDER` reads live code."""
    return _sample([row for _, row in read_jsonl(REPO_SNAPSHOT, DocgenError)], n, seed)


def snapshot_repo_functions(path: str | Path = REPO_SNAPSHOT, n: int = 60, seed: int = 0) -> int:
    """Freeze a seeded sample of the repository's documented module-level functions (private ones included; first
    docstring line a sentence of 4-20 words) into a JSONL file; returns the number written."""
    rows = _sample(collect_functions(repo_sources(), 4, 20, sentence=True), n, seed)
    return write_jsonl(path, rows)


def read_python_file(path: str | Path) -> str:
    """The text of a Python file that parses; DocgenError (one line) for a missing, binary or broken file."""
    path = Path(path)
    if not path.is_file():
        raise DocgenError(f"no file at '{path}'")
    try:
        source = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DocgenError(f"'{path.name}' is not a text file (not UTF-8)") from err
    try:
        ast.parse(source)
    except (SyntaxError, ValueError) as err:
        where = f" (line {err.lineno})" if getattr(err, "lineno", None) else ""
        raise DocgenError(f"'{path.name}' is not valid Python{where}: {getattr(err, 'msg', err)}") from err
    return source


# --- prompt patterns --------------------------------------------------------------------------------------------

REQUEST = "Write a one-line docstring for this Python function."
ROLE = ("You are an expert technical writer who documents Python code. You write concise, accurate docstrings "
        "that follow PEP 257.")
RULES = (f"Rules: one sentence in the imperative mood that starts with a verb such as \"Return\", \"Compute\" or "
         f"\"Read\"; at most {MAX_FORMAT_WORDS} words; no code and no quotes. Reply with the sentence only.")
SHOTS = [  # (code, first line) of SHOT_NAMES, as strip_docstring shows them
    ("def isleap(year):\n    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)",
     "Return True for leap years, False for non-leap years."),
    ("def heappush(heap, item):\n    heap.append(item)\n    _siftdown(heap, 0, len(heap)-1)",
     "Push item onto heap, maintaining the heap invariant."),
    ("def copymode(src, dst, *, follow_symlinks=True):\n    sys.audit(\"shutil.copymode\", src, dst)\n\n"
     "    if not follow_symlinks and _islink(src) and os.path.islink(dst):\n        if hasattr(os, 'lchmod'):\n"
     "            stat_func, chmod_func = os.lstat, os.lchmod\n        else:\n            return\n    else:\n"
     "        stat_func, chmod_func = _stat, os.chmod\n\n    st = stat_func(src)\n    ...",
     "Copy mode bits from src to dst."),
]


def _ask(code: str, rules: bool = False) -> str:
    return f"{REQUEST}{' ' + RULES if rules else ''}\n\n```python\n{code}\n```"


def plain_messages(code: str) -> list[dict]:
    """The request and the code, nothing else."""
    return [{"role": "user", "content": _ask(code)}]


def role_messages(code: str) -> list[dict]:
    """A system turn gives the model a role: an expert technical writer following PEP 257."""
    return [{"role": "system", "content": ROLE}, {"role": "user", "content": _ask(code)}]


def format_messages(code: str) -> list[dict]:
    """The request with explicit format rules (imperative, one sentence, at most 15 words, the line only)."""
    return [{"role": "user", "content": _ask(code, rules=True)}]


def _shots() -> list[dict]:
    return [m for code, line in SHOTS for m in ({"role": "user", "content": _ask(code)},
                                                {"role": "assistant", "content": line})]


def few_shot_messages(code: str) -> list[dict]:
    """Three worked examples (other functions and their real first lines) as chat turns, then the code."""
    return [*_shots(), {"role": "user", "content": _ask(code)}]


def combined_messages(code: str) -> list[dict]:
    """Role and format rules in the system turn, then the three examples and the code."""
    return [{"role": "system", "content": f"{ROLE}\n{RULES}"}, *_shots(), {"role": "user", "content": _ask(code)}]


PATTERNS = {"plain": plain_messages, "role": role_messages, "format": format_messages,
            "few-shot": few_shot_messages, "combined": combined_messages}


# --- cleaning the reply -----------------------------------------------------------------------------------------

_PREFIX = re.compile(r"^(?:[-*>#]+\s*|(?:one-line\s+)?(?:docstring|summary|description|answer)\s*:\s*|"
                     r"here(?: is|'s) [^:]*:\s*)+", re.IGNORECASE)


def _candidate(line: str) -> str:
    line = line.strip()
    if line.startswith("```") or re.match(r"(async\s+)?def\s|@\w|class\s", line):
        return ""  # a fence or repeated code is not the summary
    line = _PREFIX.sub("", line)
    return " ".join(line.strip().strip("\"'`").strip().split())


def clean_line(text: str) -> str:
    """The summary line in a reply: inside a triple-quoted docstring if the model wrote one, else the first line
    outside code fences that is not code, with quotes, backticks and prefixes such as "Docstring:" removed;
    "" if there is none (a reply that only repeats the code)."""
    for quote in ('"""', "'''"):
        if quote in text:
            inside = text.split(quote, 2)[1]  # the docstring's text, even if the closing quotes never came
            return next((c for line in inside.splitlines() if (c := _candidate(line))), "")
    in_fence = False
    for line in text.splitlines():
        if line.strip().startswith("```"):
            in_fence = not in_fence
        elif not in_fence and (cand := _candidate(line)):
            return cand
    return ""


def _line_done(text: str) -> bool:
    # Stop generating once a complete line holds the summary: the rest of the reply is never scored.
    return len(clean_line(text.rsplit("\n", 1)[0] if "\n" in text else "").split()) >= 2


def generate_docs(model, tokenizer, functions: list[dict], pattern: str = "plain", max_new_tokens: int = 40,
                  batch_size: int = 8, progress: bool = False) -> list[dict]:
    """Greedy replies for each function with one pattern: [{"reply": raw text, "line": cleaned summary}]."""
    if pattern not in PATTERNS:
        raise DocgenError(f"unknown pattern '{pattern}': choose {', '.join(PATTERNS)}")
    # codegen.generate_texts: batched greedy generation, left padding, a per-sequence stop test
    from codegen import generate_texts

    prompts = [tokenizer.apply_chat_template(PATTERNS[pattern](f["code"]), add_generation_prompt=True,
                                             tokenize=False) for f in functions]
    replies = generate_texts(model, tokenizer, prompts, _line_done, max_new_tokens=max_new_tokens,
                             batch_size=batch_size, progress=progress)
    return [{"reply": r[0].strip(), "line": clean_line(r[0])} for r in replies]


# --- baselines and scores ---------------------------------------------------------------------------------------

def name_sentence(name: str) -> str:
    """The function's name as a sentence: get_terminal_size -> "Get terminal size.", getLevelName -> "Get level
    name." (a baseline that costs nothing and shares many words with real summaries)."""
    name = name.split(".")[-1].strip("_")
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name).replace("_", " ").lower().split()
    return (" ".join(words).capitalize() + ".") if words else ""


def word_count(line: str) -> int:
    return len(line.split())


def follows_format(line: str) -> bool:
    """The format rule, checked by code: one line of 1..15 words whose first word looks like an imperative verb
    (capitalised, not an article or pronoun, not a third-person "Returns"; a heuristic, not a parser)."""
    words = line.split()
    if not words or "\n" in line or len(words) > MAX_FORMAT_WORDS or not words[0][0].isupper():
        return False
    first = re.sub(r"[^a-z]", "", words[0].lower())
    third_person = first.endswith("s") and not first.endswith(("ss", "us", "is"))
    return bool(first) and first not in NON_VERBS and not third_person


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9 ]", " ", text.lower()).split())


def score(predictions: list[str], references: list[str]) -> dict[str, np.ndarray]:
    """Per-example ROUGE-1 F, ROUGE-L F (stemmer on) and exact match (case and punctuation ignored)."""
    from rouge_score import rouge_scorer

    if len(predictions) != len(references):
        raise DocgenError(f"{len(predictions)} predictions for {len(references)} references")
    scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)
    rows = [scorer.score(r, p) for p, r in zip(predictions, references, strict=True)]  # score(target, prediction)
    return {"rouge1": np.array([s["rouge1"].fmeasure for s in rows]),
            "rougeL": np.array([s["rougeL"].fmeasure for s in rows]),
            "exact": np.array([_norm(p) == _norm(r) for p, r in zip(predictions, references, strict=True)], float)}


def bootstrap_ci(x, n_resamples: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """Mean of x and its percentile-bootstrap interval."""
    x = np.asarray(x, dtype=float)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), (n_resamples, len(x)))].mean(axis=1)
    alpha = (1 - level) / 2
    return float(x.mean()), float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def paired_bootstrap(a, b, n_resamples: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of a - b over the same examples and its 95% interval (the pairs are resampled together, so the
    function-to-function spread, shared by both patterns, cancels)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise DocgenError("paired scores must have the same length")
    return bootstrap_ci(a - b, n_resamples, seed)


def evaluate_patterns(model, tokenizer, functions: list[dict], patterns: list[str], max_new_tokens: int = 40,
                      batch_size: int = 8, progress: bool = False) -> dict:
    """Scores of each pattern and of the name baseline on documented functions: {name: {metric: mean}}."""
    refs = [f["doc"] for f in functions]
    lines = {"name baseline": [name_sentence(f["name"]) for f in functions]}
    for p in patterns:
        lines[p] = [r["line"] for r in generate_docs(model, tokenizer, functions, p, max_new_tokens, batch_size,
                                                     progress)]
    out = {}
    for name, preds in lines.items():
        s = score(preds, refs)
        out[name] = {"rouge1": round(float(s["rouge1"].mean()), 4), "rougeL": round(float(s["rougeL"].mean()), 4),
                     "exact": round(float(s["exact"].mean()), 4),
                     "words": round(float(np.mean([word_count(x) for x in preds])), 2),
                     "format_ok": round(float(np.mean([follows_format(x) for x in preds])), 4)}
    return out


# --- command line -----------------------------------------------------------------------------------------------

def _load(args):
    tokenizer = load_tokenizer(args.model)
    return load_model(args.model, dtype=getattr(torch, args.dtype)).eval(), tokenizer


def _patterns(text: str) -> list[str]:
    names = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in names if p not in PATTERNS]
    if unknown or not names:
        raise DocgenError(f"unknown pattern '{','.join(unknown) or text}': choose from {', '.join(PATTERNS)}")
    return names


def _suggest(args) -> None:
    source = read_python_file(args.file)
    functions = collect_functions({Path(args.file).stem: source}, methods=True)
    if args.function:
        functions = [f for f in functions if args.function in (f["name"], f["name"].split(".")[-1])]
        if not functions:
            raise DocgenError(f"no function '{args.function}' in '{Path(args.file).name}' (or its docstring "
                              "has no code after it)")
    elif not args.all:
        functions = [f for f in functions if f["doc"] is None]
        if not functions:
            print(f"every function in {Path(args.file).name} has a docstring; use --all to suggest anyway")
            return
    model, tokenizer = _load(args)
    for f, r in zip(functions, generate_docs(model, tokenizer, functions, args.pattern, args.max_new_tokens),
                    strict=True):
        print(f"{f['name']} (line {f['line']}): {r['line'] or '(no usable line)'}")
        if f["doc"]:
            print(f"{'':>4}current: {f['doc']}")


def _eval(args) -> None:
    patterns = _patterns(args.patterns)
    if args.limit is not None and args.limit < 1:
        raise DocgenError("--limit must be at least 1")
    if args.source in (None, "stdlib"):
        functions = stdlib_functions(args.limit, args.seed)
    else:
        folder = Path(args.source)
        if not folder.is_dir():
            raise DocgenError(f"no folder at '{folder}'")
        sources = {".".join(f.relative_to(folder).with_suffix("").parts) or f.stem:
                   f.read_text(encoding="utf-8", errors="replace") for f in sorted(folder.rglob("*.py"))}
        functions = _sample(collect_functions(sources, 4, 20, sentence=True), args.limit, args.seed)
    if not functions:
        raise DocgenError(f"no documented functions (a first line of 4-20 words ending with a full stop) in '{args.source}'")
    model, tokenizer = _load(args)
    results = evaluate_patterns(model, tokenizer, functions, patterns, args.max_new_tokens, progress=True)
    print(f"{len(functions)} functions from {args.source or 'stdlib'}")
    print(f"{'':<14}{'ROUGE-1':>8}{'ROUGE-L':>8}{'exact':>7}{'words':>7}{'format':>8}")
    for name, r in results.items():
        print(f"{name:<14}{r['rouge1']:>8.3f}{r['rougeL']:>8.3f}{r['exact']:>7.2f}{r['words']:>7.1f}"
              f"{r['format_ok']:>8.2f}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"source": args.source or "stdlib", "functions": len(functions),
                                               "results": results}, indent=2))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("suggest", help="suggest docstrings for the functions of one Python file")
    p.add_argument("file", help="a .py file")
    p.add_argument("--function", help="only this function (name or Class.method)")
    p.add_argument("--all", action="store_true", help="every function, not only those without a docstring")
    p.add_argument("--pattern", choices=list(PATTERNS), default="combined", help="prompt pattern (default: combined)")
    e = sub.add_parser("eval", help="score prompt patterns against existing docstrings")
    e.add_argument("--source", help="'stdlib' (default) or a folder of .py files")
    e.add_argument("--limit", type=int, default=60, help="functions sampled (default 60)")
    e.add_argument("--patterns", default=",".join(PATTERNS), help="comma-separated (default: all five)")
    e.add_argument("--json", help="write the scores to this file")
    e.add_argument("--seed", type=int, default=0)
    for q in (p, e):
        q.add_argument("--model", default=SMOLLM2, help="chat model: short name, local folder or Hub id")
        q.add_argument("--dtype", choices=("float32", "bfloat16"), default="bfloat16")
        q.add_argument("--max-new-tokens", type=int, default=40)
    args = parser.parse_args(argv)
    try:
        _suggest(args) if args.command == "suggest" else _eval(args)
    except (DocgenError, ModelNotAvailable) as err:
        parser.exit(2, f"docgen.py: error: {' '.join(str(err).split())}\n")


if __name__ == "__main__":
    main()
