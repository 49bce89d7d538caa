"""applications/codegen.py: problem file checks, the sandbox, pass@k, extraction, the CLI end to end."""

import json
import sys
from functools import partial
from itertools import combinations
from math import comb

import pytest

from tests.conftest import ROOT, run_script

sys.path.insert(0, str(ROOT / "applications"))
import codegen  # noqa: E402

SCRIPT = ROOT / "applications" / "codegen.py"


run = partial(run_script, SCRIPT, timeout=180)


@pytest.mark.parametrize("n, c", [(1, 0), (1, 1), (5, 0), (5, 2), (6, 5), (8, 3), (10, 10)])
def test_pass_at_k_matches_brute_force(n, c):
    samples = [True] * c + [False] * (n - c)
    for k in range(1, n + 1):
        subsets = list(combinations(samples, k))  # every way to draw k of the n samples
        brute = sum(any(s) for s in subsets) / len(subsets)
        assert codegen.pass_at_k(n, c, k) == pytest.approx(brute, abs=1e-12)
        assert codegen.pass_at_k(n, c, k) == pytest.approx(1 - comb(n - c, k) / comb(n, k), abs=1e-12)
    with pytest.raises(ValueError):
        codegen.pass_at_k(3, 1, 4)


def test_every_canonical_solution_passes_and_broken_ones_fail():
    problems = codegen.load_problems()
    assert len(problems) >= 30 and len({p["id"] for p in problems}) == len(problems)
    records = codegen.check_canonical(problems)
    assert len(records) == len(problems)
    assert [r["id"] for r in records if r["status"] != "pass"] == []
    # the tests can fail: a body that returns None passes no problem
    broken = codegen.evaluate(problems[:5], [["\n    return None\n"]] * 5, "raw")
    assert {r["status"] for r in broken} == {"fail"}


@pytest.mark.parametrize("code, status, detail", [
    ("x = 1\nassert x == 1\n", "pass", ""),
    ("assert 1 + 1 == 3, 'wrong sum'\n", "fail", "AssertionError: wrong sum"),
    ("def f(:\n    pass\n", "error", "SyntaxError"),
    ("print(undefined_name)\n", "error", "NameError"),
    ("import sys\nsys.exit(3)\n", "error", "exit code 3"),
    ("while True:\n    pass\n", "timeout", ""),
    ("x = bytearray(4 * 1024 ** 3)\n", "error", "MemoryError"),
])
def test_sandbox_classifies_outcomes(code, status, detail):
    outcome = codegen.run_program(code, timeout=2.0, memory_mb=512)
    assert outcome.status == status, outcome
    assert detail in outcome.detail
    assert outcome.seconds < 10


def test_sandbox_runs_in_an_empty_isolated_folder(tmp_path):
    code = "import os, sys\nassert os.listdir('.') == ['main.py'], os.listdir('.')\nassert sys.flags.isolated\n" \
           "assert 'HOME' not in os.environ\nopen('scratch.txt', 'w').write('x')\n"
    assert codegen.run_program(code).status == "pass"


def test_extract_program_chat_and_prefill():
    problem = codegen.load_problems()[0]  # count_vowels
    answer = "Here you go:\n```python\ndef count_vowels(text):\n    return sum(c in 'aeiouAEIOU' for c in text)\n```\nIt " \
             "counts vowels."
    program = codegen.extract_program(problem, answer, "chat")
    assert program.startswith("def count_vowels") and "It counts" not in program
    assert codegen.run_program(program + "\n" + problem["tests"]).status == "pass"
    body = "\n    return sum(c in 'aeiouAEIOU' for c in text)\n\nprint('extra top-level code')\n"
    program = codegen.extract_program(problem, body, "prefill")
    assert program.startswith(problem["prompt"].rstrip("\n")) and "extra" not in program
    assert codegen.run_program(program + "\n" + problem["tests"]).status == "pass"


def test_bad_problem_file_is_one_line_error(tmp_path):
    good = json.loads(codegen.PROBLEMS.read_text().splitlines()[0])
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(good) + "\n" + json.dumps({**good, "id": "x2", "tests": ""}) + "\n")
    result = run("--problems", bad, "--check-canonical")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: bad.jsonl line 2: field 'tests' is missing or not a non-empty string"
    bad.write_text("{not json\n")
    result = run("--problems", bad)
    assert result.returncode == 2 and "line 1: not valid JSON" in result.stderr and "Traceback" not in result.stderr
    with pytest.raises(codegen.CodegenError, match="no such file"):
        codegen.load_problems(tmp_path / "missing.jsonl")
    result = run("--samples", 3)
    assert result.returncode == 2 and "--temperature > 0" in result.stderr


def test_cli_generates_tests_and_writes_records(tmp_path):
    out = tmp_path / "results.jsonl"
    result = run("--model", "tiny-llama", "--limit", 2, "--samples", 2, "--temperature", 0.8,
                 "--max-new-tokens", 8, "--mode", "prefill", "--k", "1,2", "--output", out)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 4 and {r["id"] for r in records} == {"cp01", "cp02"}
    assert all(r["status"] in codegen.STATUSES for r in records)
    assert "pass@1 =" in result.stdout and "pass@2 =" in result.stdout
