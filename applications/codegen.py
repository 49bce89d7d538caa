"""Code generation, measured: write functions from a signature + docstring, run them against tests in a sandbox, report pass@k.

Each problem of a JSONL file has an `id`, a `prompt` (signature and docstring with one example), the function
name (`entry_point`) and `tests` (assert lines). A chat model writes n completions per problem; the code is taken
from its answer (a fenced block, or the continued function body), then prompt + completion + tests run in a fresh
`python -I` subprocess in an empty temporary folder, with a wall-clock timeout and, on Linux, limits on CPU
seconds, memory (address space) and file size. Every sample is classified pass / fail (an assert failed) /
error (any other exception, syntax error included) / timeout, and pass@k is computed with the unbiased estimator
of Chen et al. (2021): 1 - C(n-c, k) / C(n, k) for n samples of which c pass.

Examples:
  python applications/codegen.py                                        # greedy, all 30 problems, chat mode
  python applications/codegen.py --samples 10 --temperature 0.8 --output build/codegen.jsonl
  python applications/codegen.py --mode prefill --limit 5               # the model continues the function body
  python applications/codegen.py --check-canonical                      # run the reference solutions, no model
  python applications/codegen.py --problems my_problems.jsonl --model HuggingFaceTB/SmolLM2-360M-Instruct

Modes: `chat` asks for the whole function in a ```python block; `prefill` starts the assistant answer with
"```python" and the prompt, so the model writes only the body; `raw` continues the prompt as plain text (for base
models, not chat models).

Python API (applications/02_code_generation.ipynb uses it):
  load_problems(path) -> [dict]                 generate(model, tokenizer, problems, mode, n, temperature, ...)
  extract_program(problem, text, mode) -> str   run_program(code, timeout) -> Outcome
  evaluate(problems, completions, mode) -> [dict]   pass_at_k(n, c, k)   summarize(records, ks) -> {k: pass@k}
  stdlib_cases(texts, n) / complete_lines(...)  next-line completion of real standard-library functions
"""

from __future__ import annotations

import argparse
import ast
import difflib
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm
from transformers import StoppingCriteria, StoppingCriteriaList

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from common import SMOLLM2, ModelNotAvailable, load_model, load_tokenizer, read_jsonl, write_jsonl  # noqa: E402

PROBLEMS = ROOT / "data" / "code_problems.jsonl"
MODES = ("chat", "prefill", "raw")
STATUSES = ("pass", "fail", "error", "timeout")
INSTRUCTION = "Complete this Python function. Answer with the whole function in one ```python code block."
CONTINUE = "Continue this Python code from the standard library module `{module}`."
FIELDS = ("id", "prompt", "entry_point", "tests")


class CodegenError(ValueError):
    """Bad input (problem file, settings): reported as one line, exit code 2."""


# --- problems --------------------------------------------------------------------------------------------------

def load_problems(path: str | Path = PROBLEMS) -> list[dict]:
    """Read and check a problem file: one JSON object per line with id, prompt, entry_point, tests (strings)."""
    path = Path(path)
    problems, seen = [], set()
    for number, row in read_jsonl(path, CodegenError):
        where = f"{path.name} line {number}"
        for field in FIELDS:
            if not isinstance(row.get(field), str) or not row[field].strip():
                raise CodegenError(f"{where}: field '{field}' is missing or not a non-empty string")
        if row["id"] in seen:
            raise CodegenError(f"{where}: duplicate id '{row['id']}'")
        if not re.search(rf"\bdef {re.escape(row['entry_point'])}\s*\(", row["prompt"]):
            raise CodegenError(f"{where}: the prompt does not define entry_point '{row['entry_point']}'")
        seen.add(row["id"])
        problems.append(row)
    return problems


# --- generation -------------------------------------------------------------------------------------------------

def prompt_text(tokenizer, problem: dict, mode: str) -> str:
    """The exact text the model continues, for one problem in one mode."""
    # prefill/raw stop before the prompt's last newline: the model then writes the newline and the indentation as
    # one token ("\n    "), as it saw them in training; after a bare "\n" the 135M model closes the block.
    if mode == "raw":
        return problem["prompt"].rstrip("\n")
    if mode not in MODES:
        raise CodegenError(f"unknown mode '{mode}': choose one of {', '.join(MODES)}")
    messages = [{"role": "user", "content": f"{INSTRUCTION}\n\n```python\n{problem['prompt']}```"}]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return text + "```python\n" + problem["prompt"].rstrip("\n") if mode == "prefill" else text


def body_end(text: str) -> int | None:
    """Where a continued function body ends: a closing fence or the first non-indented line; None if not yet."""
    match = re.search(r"\n```|\n(?=[^\s])", "\n" + text)
    return None if match is None else max(match.start() - 1, 0)


def fenced_block(text: str) -> str | None:
    """The first complete ``` block of a chat answer (its content), or None."""
    match = re.search(r"```[\w+-]*\n(.*?)```", text, re.S)
    return match.group(1) if match else None


class _StopWhenDone(StoppingCriteria):
    """Stops each sequence as soon as its code is complete, instead of letting it explain itself for 100 tokens."""

    def __init__(self, tokenizer, start: int, done):
        self.tokenizer, self.start, self.done = tokenizer, start, done

    def __call__(self, input_ids, scores, **kwargs) -> torch.BoolTensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.start:], skip_special_tokens=True)
        return torch.tensor([self.done(t) for t in texts], dtype=torch.bool, device=input_ids.device)


def generate_texts(model, tokenizer, prompts: list[str], done, n: int = 1, temperature: float = 0.0,
                   max_new_tokens: int = 160, batch_size: int = 8, seed: int = 0,
                   progress: bool = False) -> list[list[str]]:
    """n continuations of every prompt (greedy if temperature == 0), in batches of similar length, left padded.
    `done(text) -> bool` stops a sequence early."""
    tokenizer.padding_side = "left"
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    jobs = [(i, j) for i in range(len(prompts)) for j in range(n)]
    jobs.sort(key=lambda job: -len(prompts[job[0]]))
    out: list[list[str]] = [[""] * n for _ in prompts]
    sampling = dict(do_sample=True, temperature=temperature, top_p=1.0, top_k=0) if temperature > 0 else \
        dict(do_sample=False)
    torch.manual_seed(seed)
    for b in tqdm(range(0, len(jobs), batch_size), desc="generating", unit="batch", disable=not progress):
        batch = jobs[b:b + batch_size]
        enc = tokenizer([prompts[i] for i, _ in batch], return_tensors="pt", padding=True, add_special_tokens=False)
        start = enc["input_ids"].shape[1]
        stop = StoppingCriteriaList([_StopWhenDone(tokenizer, start, done)])
        with torch.inference_mode():
            ids = model.generate(**enc.to(model.device), max_new_tokens=max_new_tokens, pad_token_id=pad,
                                 stopping_criteria=stop, **sampling)
        for (i, j), text in zip(batch, tokenizer.batch_decode(ids[:, start:], skip_special_tokens=True), strict=True):
            out[i][j] = text
    return out


def generate(model, tokenizer, problems: list[dict], mode: str = "chat", n: int = 1, temperature: float = 0.0,
             max_new_tokens: int = 160, batch_size: int = 8, seed: int = 0, progress: bool = False) -> list[list[str]]:
    """n raw model answers per problem (what the model wrote, before any code extraction)."""
    prompts = [prompt_text(tokenizer, p, mode) for p in problems]
    done = (lambda t: fenced_block(t) is not None) if mode == "chat" else (lambda t: body_end(t) is not None)
    return generate_texts(model, tokenizer, prompts, done, n, temperature, max_new_tokens, batch_size, seed, progress)


def extract_program(problem: dict, text: str, mode: str) -> str:
    """The program to run (without the tests) from a model answer.

    chat: the fenced block (or the whole answer if it has no fence); if it defines the function it replaces the
    prompt (keeping the prompt's imports), otherwise it is taken as the body. prefill/raw: the prompt plus the
    continued body, cut where the body ends."""
    if mode == "chat":
        code = fenced_block(text)
        if code is None:  # an unterminated fence: take what follows it
            code = text.split("```python\n", 1)[1] if "```python\n" in text else text
        if re.search(rf"\bdef {re.escape(problem['entry_point'])}\s*\(", code):
            imports = [ln for ln in problem["prompt"].splitlines() if ln.startswith(("import ", "from "))]
            return "\n".join([*imports, code])
        return problem["prompt"] + code
    end = body_end(text)
    return problem["prompt"].rstrip("\n") + (text if end is None else text[:end]) + "\n"


# --- the sandbox ------------------------------------------------------------------------------------------------

@dataclass
class Outcome:
    """How one program ended: status is one of STATUSES; detail is the last error line (or the timeout)."""

    status: str
    detail: str
    seconds: float


def _limits(cpu_seconds: int, memory_mb: int, file_mb: int):
    def apply() -> None:  # runs in the child just before python starts (Linux and macOS)
        import resource
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_mb << 20, file_mb << 20))
        if sys.platform.startswith("linux"):  # macOS does not enforce RLIMIT_AS
            resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))
    return apply


def run_program(code: str, timeout: float = 5.0, memory_mb: int = 1024, file_mb: int = 10) -> Outcome:
    """Run `code` (solution + tests) in a fresh interpreter in an empty temporary folder and classify the result.

    Isolation: `python -I` (no user site, no PYTHON* variables, the folder of the script only), an almost empty
    environment, its own process group (killed whole on timeout), and resource limits where the OS has them.
    This is protection against accidents (loops, memory blow-ups, stray files), not a security boundary."""
    with tempfile.TemporaryDirectory(prefix="codegen-") as folder:
        Path(folder, "main.py").write_text(code, encoding="utf-8")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
        limits = _limits(int(timeout) + 1, memory_mb, file_mb) if os.name == "posix" else None
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-I", "-B", "main.py"], cwd=folder, env=env, text=True,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                preexec_fn=limits, start_new_session=os.name == "posix")
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL) if os.name == "posix" else proc.kill()
            proc.communicate()
            return Outcome("timeout", f"no result after {timeout:g} s", time.perf_counter() - start)
    seconds = time.perf_counter() - start
    if proc.returncode == 0:
        return Outcome("pass", "", seconds)
    if os.name == "posix" and proc.returncode == -signal.SIGXCPU:
        return Outcome("timeout", "CPU-time limit reached", seconds)
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    last = lines[-1].strip() if lines else f"exit code {proc.returncode}"
    return Outcome("fail" if last.startswith("AssertionError") else "error", last[:200], seconds)


def evaluate(problems: list[dict], completions: list[list[str]], mode: str, timeout: float = 5.0,
             progress: bool = False) -> list[dict]:
    """Run every completion of every problem against its tests: one record per sample."""
    records = []
    jobs = [(p, j, t) for p, texts in zip(problems, completions, strict=True) for j, t in enumerate(texts)]
    for problem, j, text in tqdm(jobs, desc="testing", unit="sample", disable=not progress):
        program = extract_program(problem, text, mode)
        outcome = run_program(program + "\n\n" + problem["tests"], timeout)
        records.append({"id": problem["id"], "sample": j, "status": outcome.status, "detail": outcome.detail,
                        "seconds": round(outcome.seconds, 3), "completion": text, "program": program})
    return records


def check_canonical(problems: list[dict], timeout: float = 5.0) -> list[dict]:
    """Run prompt + canonical_solution + tests for every problem that has a canonical solution."""
    with_solution = [p for p in problems if p.get("canonical_solution")]
    # raw mode continues the prompt without its last newline (see prompt_text), so the body starts with one
    return evaluate(with_solution, [["\n" + p["canonical_solution"]] for p in with_solution], "raw", timeout)


# --- pass@k -----------------------------------------------------------------------------------------------------

def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimate of P(at least one of k samples passes) from n samples with c passing (Chen et al. 2021):
    1 - C(n-c, k) / C(n, k), computed as a product so that it stays exact for large n."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def summarize(records: list[dict], ks: list[int]) -> dict[int, float]:
    """Mean pass@k over problems, for each k no larger than the number of samples per problem."""
    per_problem: dict[str, list[bool]] = {}
    for r in records:
        per_problem.setdefault(r["id"], []).append(r["status"] == "pass")
    n = min(len(v) for v in per_problem.values())
    return {k: float(np.mean([pass_at_k(len(v), sum(v), k) for v in per_problem.values()])) for k in ks if k <= n}


# --- completion of real standard-library code --------------------------------------------------------------------

def stdlib_cases(sources: dict[str, str], n: int = 40, seed: int = 0, max_lines: int = 40,
                 per_module: int = 3) -> list[dict]:
    """Cases of "given a real function up to some line, write the next line", one per function, from
    {module: source}. Functions with a docstring and at least two statements after it, at most max_lines long;
    the cut is after the docstring, at a random line whose next line is code (not blank, not a comment); at most
    per_module functions per module, so that one big module does not fill the sample."""
    rng = random.Random(seed)
    cases = []
    for module, source in sources.items():
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        lines, found = source.splitlines(), []
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef) or ast.get_docstring(node) is None or len(node.body) < 3:
                continue
            first, last = node.lineno - 1, node.end_lineno
            if last - first > max_lines:
                continue
            doc_end = node.body[0].end_lineno  # the line after the docstring is where the body starts
            targets = [i for i in range(doc_end, last) if lines[i].strip() and not lines[i].strip().startswith("#")]
            if not targets:
                continue
            t = rng.choice(targets)
            prev = next((lines[i] for i in range(t - 1, first - 1, -1) if lines[i].strip()), "")
            found.append({"module": module, "function": node.name, "context": "\n".join(lines[first:t]) + "\n",
                          "target": lines[t], "previous": prev})
        cases += rng.sample(found, min(per_module, len(found)))
    rng.shuffle(cases)
    return cases[:n]


def first_line(text: str) -> str:
    """The first non-blank line of a continuation, with its indentation (a closing fence counts as nothing)."""
    for line in text.splitlines():
        if line.strip():
            return "" if line.strip().startswith("```") else line.rstrip()
    return ""


def complete_lines(model, tokenizer, cases: list[dict], mode: str = "prefill", max_new_tokens: int = 32,
                   batch_size: int = 8) -> list[str]:
    """Greedy next line for every case: `prefill` shows the code in a chat turn and starts the answer with it;
    `raw` continues the code as plain text."""
    prompts = []
    for case in cases:
        if mode == "raw":
            prompts.append(case["context"].rstrip("\n"))
            continue
        messages = [{"role": "user", "content": CONTINUE.format(module=case["module"])}]
        prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        prompts.append(prompt + "```python\n" + case["context"].rstrip("\n"))
    done = lambda t: bool(first_line(t)) and t.lstrip("\n").count("\n") >= 1  # noqa: E731
    texts = generate_texts(model, tokenizer, prompts, done, max_new_tokens=max_new_tokens, batch_size=batch_size)
    return [first_line(t[0]) for t in texts]


def line_scores(predicted: list[str], targets: list[str]) -> dict[str, float]:
    """Exact match (ignoring surrounding whitespace) and mean edit similarity (difflib ratio, 0..1)."""
    exact = [p.strip() == t.strip() for p, t in zip(predicted, targets, strict=True)]
    similar = [difflib.SequenceMatcher(None, p.strip(), t.strip()).ratio() for p, t in zip(predicted, targets, strict=True)]
    return {"exact match": float(np.mean(exact)), "edit similarity": float(np.mean(similar))}


# --- command line -----------------------------------------------------------------------------------------------

def _ks(text: str) -> list[int]:
    try:
        ks = sorted({int(k) for k in text.split(",")})
    except ValueError as err:
        raise CodegenError(f"--k takes comma-separated whole numbers, got '{text}'") from err
    if not ks or ks[0] < 1:
        raise CodegenError(f"--k values must be >= 1, got '{text}'")
    return ks


def _check_settings(args) -> None:
    if args.samples < 1:
        raise CodegenError(f"--samples must be >= 1, got {args.samples}")
    if args.temperature < 0:
        raise CodegenError(f"--temperature must be >= 0, got {args.temperature}")
    if args.temperature == 0 and args.samples > 1:
        raise CodegenError("--samples > 1 needs --temperature > 0 (greedy decoding gives the same answer n times)")
    if args.timeout <= 0:
        raise CodegenError(f"--timeout must be > 0, got {args.timeout}")


def _print_summary(records: list[dict], ks: list[int]) -> None:
    counts = {s: sum(r["status"] == s for r in records) for s in STATUSES}
    print(f"{len(records)} samples: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    for k, value in summarize(records, ks).items():
        print(f"pass@{k} = {value:.3f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", default=str(PROBLEMS), help="JSONL problem file (default: the project's 30)")
    parser.add_argument("--model", default=SMOLLM2, help="chat model: short name, local folder or Hub id")
    parser.add_argument("--mode", choices=MODES, default="chat", help="how the model is prompted (see above)")
    parser.add_argument("--samples", type=int, default=1, help="completions per problem (n)")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy; e.g. 0.8 with --samples 10")
    parser.add_argument("--k", default="1,5,10", help="pass@k values to report (those <= --samples)")
    parser.add_argument("--max-new-tokens", type=int, default=160, help="length limit of one completion")
    parser.add_argument("--batch-size", type=int, default=8, help="sequences generated together")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds one program may run")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N problems")
    parser.add_argument("--dtype", choices=("bfloat16", "float32"), default="bfloat16", help="model weights")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--output", default=None, help="write one JSON line per sample here")
    parser.add_argument("--check-canonical", action="store_true", help="test the canonical solutions, no model")
    args = parser.parse_args(argv)
    try:
        _check_settings(args)
        ks = _ks(args.k)
        problems = load_problems(args.problems)[:args.limit]
        if args.check_canonical:
            records = check_canonical(problems, args.timeout)
            if not records:
                raise CodegenError("no problem in the file has a canonical_solution")
        else:
            tokenizer = load_tokenizer(args.model)
            model = load_model(args.model, dtype=getattr(torch, args.dtype)).eval()
            texts = generate(model, tokenizer, problems, args.mode, args.samples, args.temperature,
                             args.max_new_tokens, args.batch_size, args.seed, progress=True)
            records = evaluate(problems, texts, args.mode, args.timeout, progress=True)
    except (CodegenError, ModelNotAvailable) as err:
        _fail(err)
    _print_summary(records, ks)
    if args.output:
        print(f"wrote {write_jsonl(args.output, records)} records to {args.output}")


def _fail(err: Exception) -> None:
    print(f"error: {err}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    main()
