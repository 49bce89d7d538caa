"""applications/docgen.py: docstring removal, prompt patterns, reply cleaning, scores, bootstrap, the CLI end to end."""

import json
import sys
from functools import partial

import numpy as np
import pytest

from tests.conftest import ROOT, run_script

sys.path.insert(0, str(ROOT / "applications"))
import docgen  # noqa: E402

SCRIPT = str(ROOT / "applications" / "docgen.py")
MODULE = '''"""A small module."""
import os


def documented(path, *, strict=True):
    """Return the size of the file at path in bytes.

    More text that is not the summary.
    """

    # a comment the model should still see
    return os.path.getsize(path)


def undocumented(a, b):
    return a + b


def long_body(x):
    """Add one to x many times over."""
    x += 1
    x += 1
    x += 1
    x += 1
    return x


def only_docstring():
    """Nothing but a docstring here."""


def short_doc(x):
    """Too short."""
    return x


class Box:
    def method(self):
        """Return the box itself."""
        return self
'''


run = partial(run_script, SCRIPT, timeout=600)  # generous: the CPU may be shared


def cli(capsys, *args) -> tuple[int, str, str]:
    """Run main() in this process; (exit code, stdout, stderr)."""
    code = 0
    try:
        docgen.main([str(a) for a in args])
    except SystemExit as err:
        code = err.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_collect_functions_removes_the_docstring_and_keeps_the_code():
    functions = {f["name"]: f for f in docgen.collect_functions({"mod": MODULE}, methods=True)}
    # only_docstring has nothing left to describe; the module-level list comes before methods
    assert list(functions) == ["documented", "undocumented", "long_body", "short_doc", "Box.method"]
    doc = functions["documented"]
    assert doc["doc"] == "Return the size of the file at path in bytes." and doc["words"] == 10
    assert doc["code"] == ("def documented(path, *, strict=True):\n    # a comment the model should still see\n"
                           "    return os.path.getsize(path)")
    assert '"""' not in "".join(f["code"] for f in functions.values())
    assert functions["undocumented"]["doc"] is None
    assert functions["Box.method"]["code"] == "def method(self):\n    return self"  # dedented
    assert docgen.collect_functions({"bad": "def f(:\n"}) == []  # a module that does not parse is skipped


def test_filters_and_truncation():
    names = [f["name"] for f in docgen.collect_functions({"mod": MODULE}, min_words=4, max_words=20)]
    assert names == ["documented", "undocumented", "long_body"]  # "Too short." (2 words) is left out
    cut = next(f for f in docgen.collect_functions({"mod": MODULE}, max_lines=3) if f["name"] == "long_body")
    assert cut["code"].splitlines() == ["def long_body(x):", "    x += 1", "    x += 1", "    ..."]
    shot = "def isleap(year):\n    \"\"\"Return True for leap years.\"\"\"\n    return year % 4 == 0\n"
    assert docgen.collect_functions({"calendar": shot}) == []  # a few-shot example is never a test item
    assert [f["name"] for f in docgen.collect_functions({"other": shot})] == ["isleap"]


def test_stdlib_sample_is_seeded_and_clean():
    a, b = docgen.stdlib_functions(8, 0), docgen.stdlib_functions(8, 0)
    assert [f["name"] for f in a] == [f["name"] for f in b] and len(a) == 8
    assert [f["name"] for f in docgen.stdlib_functions(8, 1)] != [f["name"] for f in a]
    for f in a:
        assert 4 <= f["words"] <= 20 and f["doc"].endswith(".") and not f["name"].startswith("_")
        assert (f["module"], f["name"]) not in docgen.SHOT_NAMES and f["doc"] not in f["code"]
        assert f["code"].lstrip().startswith(("def ", "async def ", "@"))


def test_repo_snapshot_is_frozen_seeded_and_clean(tmp_path):
    rows = docgen.repo_functions(None)
    assert len(rows) == 60 and docgen.repo_functions(20, 0) == docgen.repo_functions(20, 0)
    for f in rows:
        assert 4 <= f["words"] <= 20 and f["doc"].endswith(".") and f["doc"] not in f["code"]
        assert f["module"].split(".")[0] in docgen.REPO_FOLDERS and f["module"] != "applications.docgen"
        assert f["code"].lstrip().startswith(("def ", "async def ", "@"))
    assert docgen.snapshot_repo_functions(tmp_path / "fresh.jsonl", n=5) == 5  # the snapshot can be retaken


@pytest.mark.parametrize("reply, line", [
    ("Return the sum of a and b.", "Return the sum of a and b."),
    ('Docstring: "Return the sum."\nIt adds.', "Return the sum."),
    ("```python\ndef f(a, b):\n    return a + b\n```\n\nThis function adds two numbers.",
     "This function adds two numbers."),
    ('```python\ndef f(a, b):\n    """Add a and b.\n    """\n    return a + b\n```', "Add a and b."),
    ('"""Add a and b', "Add a and b"),  # the closing quotes never came
    ("`Compute the mean.`", "Compute the mean."),
    ("Here is a one-line docstring: Return x.", "Return x."),
    ("```python\ndef f(a, b):\n    return a + b\n```", ""),  # only the code again: no summary
    ("", ""),
])
def test_clean_line(reply, line):
    assert docgen.clean_line(reply) == line


def test_name_baseline_and_format_rule():
    assert docgen.name_sentence("get_terminal_size") == "Get terminal size."
    assert docgen.name_sentence("getLevelName") == "Get level name."
    assert docgen.name_sentence("Box._split_lines") == "Split lines."
    assert docgen.follows_format("Return the sum of a and b.")
    assert docgen.follows_format("Process the queue.")  # "-ss" is not a third-person ending
    for line in ("Returns the sum.", "The sum of a and b.", "return the sum.", "",
                 "Return " + "word " * 15, "This function adds."):
        assert not docgen.follows_format(line), line


def test_score_rouge_and_exact():
    s = docgen.score(["Return the sum of a and b.", "Returns files", "Multiply two numbers.", "return THE sum"],
                     ["Return the sum of a and b.", "Return the file.", "Same as a * b.", "Return the sum."])
    assert s["rouge1"][0] == pytest.approx(1.0) and s["rougeL"][0] == pytest.approx(1.0)
    assert s["rouge1"][1] == pytest.approx(0.8)  # stemmer: returns=return, files=file; 2 of 3 and 2 of 2
    assert s["rouge1"][2] == 0.0  # a correct paraphrase shares no word
    assert s["exact"].tolist() == [1.0, 0.0, 0.0, 1.0]  # case and punctuation ignored
    with pytest.raises(docgen.DocgenError):
        docgen.score(["a"], ["a", "b"])


def test_bootstrap_intervals():
    a = np.array([0.5, 0.2, 0.9, 0.4])
    mean, low, high = docgen.paired_bootstrap(a + 0.1, a, n_resamples=200, seed=0)
    assert mean == pytest.approx(0.1) and low == pytest.approx(0.1) and high == pytest.approx(0.1)  # pairing
    mean, low, high = docgen.bootstrap_ci(a, 500, seed=1)
    assert low <= mean <= high and mean == pytest.approx(0.5)
    assert docgen.bootstrap_ci(a, 500, seed=1) == (mean, low, high)  # seeded
    with pytest.raises(docgen.DocgenError):
        docgen.paired_bootstrap([1, 2], [1])


def test_patterns_share_the_request_and_differ_as_described():
    code = "def add(a, b):\n    return a + b"
    messages = {name: build(code) for name, build in docgen.PATTERNS.items()}
    assert list(messages) == ["plain", "role", "format", "few-shot", "combined"]
    for name, m in messages.items():
        assert m[-1]["role"] == "user" and code in m[-1]["content"] and docgen.REQUEST in m[-1]["content"], name
    assert len(messages["plain"]) == 1 and messages["role"][0]["role"] == "system"
    assert docgen.RULES in messages["format"][0]["content"]
    assert [m["role"] for m in messages["few-shot"]] == ["user", "assistant"] * 3 + ["user"]
    assert docgen.ROLE in messages["combined"][0]["content"] and docgen.RULES in messages["combined"][0]["content"]
    assert [m["content"] for m in messages["combined"][1:]] == [m["content"] for m in messages["few-shot"]]
    assert all(docgen.follows_format(line) for _, line in docgen.SHOTS)


def test_bad_input_is_one_line_error(tmp_path, capsys):
    broken = tmp_path / "broken.py"
    broken.write_text("def f(:\n    pass\n")
    binary = tmp_path / "blob.py"
    binary.write_bytes(b"\xff\xfe\x00\x01")
    good = tmp_path / "good.py"
    good.write_text(MODULE)
    cases = [(("suggest", tmp_path / "missing.py"), "no file at"),
             (("suggest", broken), "'broken.py' is not valid Python (line 1)"),
             (("suggest", binary), "'blob.py' is not a text file"),
             (("suggest", good, "--function", "nope"), "no function 'nope' in 'good.py'"),
             (("eval", "--patterns", "plain,shouting"), "unknown pattern 'shouting'"),
             (("eval", "--limit", "0"), "--limit must be at least 1"),
             (("eval", "--source", tmp_path / "nowhere"), "no folder at")]
    for args, message in cases:
        code, out, err = cli(capsys, *args)
        assert code == 2, args
        assert err.startswith("docgen.py: error: ") and message in err and err.count("\n") == 1, err
    documented = tmp_path / "documented.py"
    documented.write_text('def f(x):\n    """Return x."""\n    return x\n')
    code, out, _ = cli(capsys, "suggest", documented)
    assert code == 0 and "every function in documented.py has a docstring" in out  # no model needed


def test_cli_suggest_and_eval_end_to_end(tmp_path, capsys):
    path = tmp_path / "mymod.py"
    path.write_text(MODULE)
    result = run("suggest", path, "--model", "tiny-llama", "--max-new-tokens", 4, "--pattern", "few-shot")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("undocumented (line 15): ")  # only the one without a docstring
    folder = tmp_path / "pkg"
    folder.mkdir()
    (folder / "mod.py").write_text(MODULE)
    out_json = tmp_path / "scores.json"
    code, out, err = cli(capsys, "eval", "--source", folder, "--patterns", "plain,combined", "--model", "tiny-llama",
                         "--max-new-tokens", 4, "--json", out_json)
    assert code == 0, err
    data = json.loads(out_json.read_text())
    assert data["functions"] == 2 and list(data["results"]) == ["name baseline", "plain", "combined"]
    for r in data["results"].values():
        assert 0 <= r["rougeL"] <= r["rouge1"] + 1e-9 <= 1 + 1e-9 and 0 <= r["format_ok"] <= 1
    assert "2 functions from" in out and "name baseline" in out
