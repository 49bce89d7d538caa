"""evaluation/judge.py: a tiny judge end to end, both orders on the same rows, clear errors for mismatched
files, verdict parsing, and the OpenAI-compatible backend against deployment/server.py."""

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "evaluation"))
import judge as J  # noqa: E402

SCRIPT = [sys.executable, "evaluation/judge.py"]


def run_script(*args, timeout=120):
    return subprocess.run([*SCRIPT, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" if isinstance(r, dict) else r + "\n" for r in rows))
    return path


@pytest.mark.script
def test_tiny_judge_end_to_end(tmp_path):
    out = tmp_path / "verdicts.jsonl"
    proc = run_script("--judge", "tiny-llama", "--limit", "3", "--grade", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "win rate of A" in proc.stdout and "position bias" in proc.stdout and "agrees with gold" in proc.stdout
    records = [json.loads(line) for line in out.read_text().splitlines()]
    gold = J.load_pairs()[:3]
    assert [r["prompt"] for r in records] == [p.prompt for p in gold]
    for r in records:
        assert [v["order"] for v in r["verdicts"]] == ["ab", "ba"]
        for v in r["verdicts"]:  # a local judge always gives a verdict, with its probability
            assert v["verdict"] in ("A", "B") and 0 <= v["p_first"] <= 1 and v["text"] is None
        assert r["winner"] in ("a", "b", "tie") and 1 <= r["grade_a"]["score"] <= 5


def test_one_order_only_in_process(tmp_path, capsys):
    out = tmp_path / "verdicts.jsonl"
    assert J.main(["--judge", "tiny-llama", "--limit", "2", "--no-both-orders", "--rubric", "none",
                   "--out", str(out)]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 2 and all([v["order"] for v in r["verdicts"]] == ["ab"] for r in records)
    assert "agrees with gold" in capsys.readouterr().out


class Recorder:
    """A fake judge that remembers the prompts it was shown and always answers "A"."""

    workers = 1

    def __init__(self):
        self.seen = []

    def compare(self, messages):
        self.seen.append(messages[0]["content"])
        return {"verdict": "A", "p_first": 0.9, "text": None}


def test_both_orders_show_the_same_rows_swapped():
    pairs = J.load_pairs()[:4]
    judge = Recorder()
    records = J.judge_pairs(judge, pairs, rubric="RUBRIC TEXT")
    assert len(judge.seen) == 2 * len(pairs)
    for pair, (ab, ba) in zip(pairs, zip(judge.seen[::2], judge.seen[1::2], strict=True), strict=True):
        assert ab.startswith("RUBRIC TEXT") and f"[Question]\n{pair.prompt}\n" in ab and pair.prompt in ba
        assert f"[Answer A]\n{pair.a}\n\n[Answer B]\n{pair.b}\n" in ab
        assert f"[Answer A]\n{pair.b}\n\n[Answer B]\n{pair.a}\n" in ba
        assert ab.replace(pair.a, "<X>").replace(pair.b, "<Y>") == ba.replace(pair.b, "<X>").replace(pair.a, "<Y>")
    # always "A" = a different answer wins in each order: every pair is a tie, the first position wins 100%
    assert all(r["winner"] == "tie" for r in records)
    summary = J.summarize(records)
    assert summary["first_position_share"] == 1 and summary["order_flip_share"] == 1
    assert summary["accuracy_ab"] == 1 and summary["accuracy_ba"] == 0 and summary["accuracy"] == 0.5
    assert summary["averaged_accuracy"] == 0.5  # P(a better) averaged over the orders is 0.5: half credit


def test_summary_figures_and_bootstrap():
    assert J.bootstrap_ci([1.0] * 10) == (1.0, 1.0)
    low, high = J.bootstrap_ci([0, 1] * 50, seed=1)
    assert 0.35 < low < 0.5 < high < 0.65
    pairs = [J.Pair("q", "long answer", "short", gold="a"), J.Pair("q2", "s", "longer one", gold="a")]
    assert J.longer_answer_baseline(pairs) == [1, 0]


@pytest.mark.parametrize("text, verdict", [
    ("A", "A"), ("B.", "B"), ("[[B]]", "B"), ("Answer A is better.", "A"), ("The better answer is B.", "B"),
    ("Verdict: A", "A"), ("I prefer Answer B", "B"), ("**B**", "B"), ("B is better because A is rude", "B"),
    ("A good answer is B.", "B"), ("Both are good.", None), ("A good answer would mention sorted().", None),
    ("Answer A is correct, but answer B is more polite", None), ("", None), (None, None)])
def test_parse_verdict(text, verdict):
    assert J.parse_verdict(text) == verdict


@pytest.mark.parametrize("text, grade", [("4", 4), ("Rating: 4/5", 4), ("[[3]]", 3), ("Score: 2.", 2),
                                         ("I'd rate it 10", None), ("3.5", None), ("excellent", None)])
def test_parse_grade(text, grade):
    assert J.parse_grade(text) == grade


def test_answer_files_matched_by_prompt_in_any_order(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", [{"prompt": "p1", "answer": "a1"}, {"prompt": "p2", "answer": "a2"}])
    b = write_jsonl(tmp_path / "b.jsonl", [{"prompt": "p2", "answer": "b2", "model": "x"}, "",
                                           {"prompt": "p1", "answer": "b1"}])
    pairs = J.match_answers(a, b)
    assert [(p.prompt, p.a, p.b, p.meta["line_b"]) for p in pairs] == [("p1", "a1", "b1", 3), ("p2", "a2", "b2", 1)]
    with pytest.raises(J.DataError, match=r"b.jsonl, line 1: field 'prompt' differs from a.jsonl, line 1"):
        J.match_answers(a, b, by="line")


@pytest.mark.parametrize("a_rows, b_rows, match, message", [
    ([{"prompt": "p1", "answer": "x"}, {"prompt": "p2", "answer": "y"}],
     [{"prompt": "p1", "answer": "x"}, {"prompt": "p3", "answer": "y"}], "prompt",
     "error: a.jsonl, line 2: field 'prompt' 'p2' has no row in b.jsonl"),
    ([{"prompt": "p1", "answer": "x"}], [{"prompt": "p1", "text": "x"}], "prompt",
     "error: b.jsonl, line 1: no field 'answer' (it has: prompt, text)"),
    ([{"prompt": "p1", "answer": "x"}, {"prompt": "p2", "answer": "y"}], [{"prompt": "p1", "answer": "x"}], "line",
     "error: a.jsonl, line 2: no partner row in b.jsonl (2 vs 1 rows)"),
    ([{"prompt": "p1", "answer": "x"}], [{"prompt": "p2", "answer": "x"}], "line",
     "error: b.jsonl, line 1: field 'prompt' differs from a.jsonl, line 1 ('p2' vs 'p1')"),
    ([{"prompt": "p1", "answer": "x"}, {"prompt": "p1", "answer": "y"}], [{"prompt": "p1", "answer": "x"}], "prompt",
     "error: a.jsonl, line 2: field 'prompt' repeats line 1; use --match line"),
    ([{"prompt": "p1", "answer": "x"}, "{not json"], [{"prompt": "p1", "answer": "x"}], "prompt",
     "error: a.jsonl, line 2: not valid JSON"),
    ([{"prompt": "p1", "answer": 3}], [{"prompt": "p1", "answer": "x"}], "prompt",
     "error: a.jsonl, line 1: field 'answer' must be non-empty text"),
])
def test_mismatched_files_give_one_line_errors(tmp_path, capsys, a_rows, b_rows, match, message):
    a, b = write_jsonl(tmp_path / "a.jsonl", a_rows), write_jsonl(tmp_path / "b.jsonl", b_rows)
    code = J.main(["--a", str(a), "--b", str(b), "--match", match, "--judge", "tiny-llama",
                   "--out", str(tmp_path / "v.jsonl")])
    err = capsys.readouterr()
    assert code == 2 and err.out == ""
    assert err.err.startswith(message) and len(err.err.strip().splitlines()) == 1, err.err
    assert not (tmp_path / "v.jsonl").exists()


@pytest.mark.script
def test_script_errors_are_one_line_without_traceback(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", [{"prompt": "p1", "answer": "x"}, {"prompt": "p2", "answer": "y"}])
    b = write_jsonl(tmp_path / "b.jsonl", [{"prompt": "p1", "answer": "x"}])
    proc = run_script("--a", str(a), "--b", str(b), "--match", "line")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == "error: a.jsonl, line 2: no partner row in b.jsonl (2 vs 1 rows)\n"


def test_usage_errors(capsys):
    for argv in (["--a", "a.jsonl"], ["--pairs", "p.jsonl", "--a", "a.jsonl", "--b", "b.jsonl"], ["--limit", "0"]):
        with pytest.raises(SystemExit) as exit_:
            J.parse_args(argv)
        assert exit_.value.code == 2
    assert "--limit must be at least 1" in capsys.readouterr().err


def test_missing_file_and_rubric(tmp_path, capsys):
    assert J.main(["--pairs", str(tmp_path / "missing.jsonl"), "--judge", "tiny-llama"]) == 2
    assert capsys.readouterr().err.strip() == f"error: no such file: {tmp_path / 'missing.jsonl'}"
    rubric = tmp_path / "r.txt"
    rubric.write_text("Prefer the correct answer.\n")
    assert J.read_rubric(str(rubric)) == "Prefer the correct answer." and J.read_rubric("none") is None
    assert J.read_rubric(None) == J.RUBRIC and J.read_rubric("Be strict.") == "Be strict."
    with pytest.raises(J.DataError, match="no such rubric file"):
        J.read_rubric(str(tmp_path / "absent.txt"))


@pytest.mark.script
def test_openai_compatible_backend_against_the_project_server(tmp_path, capsys):
    sys.path.insert(0, str(ROOT / "deployment"))
    from server import launch

    proc, base = launch("--model", "tiny-llama", "--embedding-model", "none", "--max-tokens-limit", "32")
    try:  # short rows and no rubric: the tiny model's context is 256 tokens
        a = write_jsonl(tmp_path / "a.jsonl", [{"prompt": "2 + 2?", "answer": "4"}, {"prompt": "Hi", "answer": "Hello!"}])
        b = write_jsonl(tmp_path / "b.jsonl", [{"prompt": "Hi", "answer": "Go away."}, {"prompt": "2 + 2?", "answer": "5"}])
        out = tmp_path / "v.jsonl"
        result = run_script("--base-url", base + "/v1", "--model-name", "tiny-llama", "--a", str(a), "--b", str(b),
                            "--rubric", "none", "--out", str(out))
        assert result.returncode == 0, result.stderr
        assert "unparseable" in result.stdout and "verdicts parsed from text" in result.stdout
        records = [json.loads(line) for line in out.read_text().splitlines()]
        assert [(r["prompt"], r["a"], r["b"]) for r in records] == [("2 + 2?", "4", "5"), ("Hi", "Hello!", "Go away.")]
        verdicts = [v for r in records for v in r["verdicts"]]
        assert len(verdicts) == 4 and all(isinstance(v["text"], str) and v["p_first"] is None for v in verdicts)
        for v in verdicts:  # a random tiny model mostly writes noise: whatever it wrote was parsed the same way
            assert v["verdict"] == J.parse_verdict(v["text"])
        code = J.main(["--base-url", base + "/v1", "--model-name", "no-such-model", "--a", str(a), "--b", str(b),
                       "--out", str(tmp_path / "bad.jsonl")])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("error: the server at") and "404" in err
    finally:
        proc.terminate()
        proc.wait(timeout=20)
