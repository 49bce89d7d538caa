"""fine-tuning/constitutional.py: constitution and prompt files, the code checks, the revision filter, AI labels in
both orders, and the revise CLI end to end (tiny-llama, a few tokens)."""

import json
import sys
from functools import partial

import pytest

from tests.conftest import ROOT, run_script

sys.path.insert(0, str(ROOT / "fine-tuning"))
import align  # noqa: E402
import constitutional as C  # noqa: E402

SCRIPT = ROOT / "fine-tuning" / "constitutional.py"


_run = partial(run_script, SCRIPT, timeout=240)


def test_shipped_prompts_are_split_and_mixed():
    train, held = C.load_prompts()
    assert (len(train), len(held)) == (32, 16)
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in held}
    for rows in (train, held, train[:4], held[:4]):  # every few rows hold a harmful prompt (CI takes the first)
        assert {r["kind"] for r in rows} == {"ordinary", "harmful"}


def test_constitution_files_text_and_json(tmp_path):
    text = tmp_path / "p.txt"
    text.write_text("# my rules\nformal: Answer in formal English.\n\nshort: One sentence only.\n")
    assert [(p.name, p.rule) for p in C.load_constitution(text)] == [("formal", "Answer in formal English."),
                                                                      ("short", "One sentence only.")]
    js = tmp_path / "p.json"
    js.write_text(json.dumps([{"name": "harmless", "rule": "Refuse harm.", "applies_to": "harmful"}]))
    assert C.load_constitution(js)[0].applies_to == "harmful"
    bad = tmp_path / "bad.txt"
    bad.write_text("formal Answer in formal English.\n")
    with pytest.raises(C.ConstitutionError, match="bad.txt line 1: expected 'name: rule'"):
        C.load_constitution(bad)
    js.write_text(json.dumps([{"name": "x"}]))
    with pytest.raises(C.ConstitutionError, match="principle 1"):
        C.load_constitution(js)
    assert [p.name for p in C.load_constitution()] == ["concise", "harmless", "polite"]


def test_code_checks_and_rule_preference():
    harmful, ordinary = {"kind": "harmful"}, {"kind": "ordinary"}
    assert C.refuses("I'm sorry, but I can't help with that.") and not C.refuses("Sure, here is how.")
    assert not C.is_polite("That is a stupid question.") and C.is_polite("Good question.")
    assert C.rule_checks(ordinary, "Short answer.", 5) == {"concise": True, "harmless": None, "polite": True}
    assert C.rule_checks(harmful, "Sure, here is how you do it.", 5)["harmless"] is False
    concise, harmless = C.DEFAULT_CONSTITUTION[0], C.DEFAULT_CONSTITUTION[1]
    long = " ".join(["word"] * 50)
    assert C.rule_preference(ordinary, "Two words.", long, concise, 40) == "a"
    assert C.rule_preference(ordinary, long, long + " more", concise, 40) is None  # < 5 words apart: undecided
    assert C.rule_preference(harmful, "Step one: ...", "I cannot help with that.", harmless) == "b"
    assert C.pick_principle(harmful, "ok", C.DEFAULT_CONSTITUTION).name == "harmless"
    assert C.pick_principle(ordinary, long, C.DEFAULT_CONSTITUTION, 40).name == "concise"


def test_revision_filter_keeps_only_shorter_passing_rewrites():
    long = "The sky is blue because " + " ".join(["air scatters light"] * 20)
    triple = {"answer": long, "principle": "concise"}
    assert C.keep_revision(triple | {"revision": "Air scatters blue light most."}) == (True, "kept")
    assert C.keep_revision(triple | {"revision": ""})[1] == "empty"
    assert C.keep_revision(triple | {"revision": long})[1] == "unchanged"
    assert C.keep_revision(triple | {"revision": long + " Also more."})[1] == "not shorter"
    assert C.keep_revision(triple | {"revision": " ".join(["blue"] * 45)}, 40)[1] == "fails the concise check"
    harm = {"answer": long, "principle": "harmless"}
    assert C.keep_revision(harm | {"revision": "Just use a pin."})[1] == "fails the harmless check"
    rows = C.sft_rows([triple | {"prompt": "Why?", "revision": "Scattering.", "kept": True},
                       triple | {"prompt": "No", "revision": "", "kept": False}])
    assert len(rows) == 1 and align.check_sft_row(rows[0], 1, "rows", None)["completion"][0]["role"] == "assistant"


def test_ai_label_averages_both_orders_and_generate_batches():
    model, tokenizer = C.load_model("tiny-llama").eval(), C.load_tokenizer("tiny-llama")
    judge = C.LocalJudge(model, tokenizer)
    p = C.DEFAULT_CONSTITUTION[0]
    ab = C.ai_label(judge, "Why?", "Short.", "A much longer answer.", p)
    ba = C.ai_label(judge, "Why?", "A much longer answer.", "Short.", p)
    assert ab["p_a"] == pytest.approx((ab["p_a_first"] + ab["p_a_second"]) / 2)
    assert ab["p_a"] == pytest.approx(1 - ba["p_a"], abs=1e-6)  # swapping a and b swaps the label exactly
    side = tokenizer.padding_side
    answers = C.generate(model, tokenizer, ["Hi", "Tell me a much longer story please", "Why?"], 3, batch_size=2)
    assert len(answers) == 3 and all(isinstance(a, str) for a in answers)
    assert tokenizer.padding_side == side  # left padding only while generating
    rates = C.pass_rates([{"kind": "harmful"}, {"kind": "ordinary"}], ["I can't help.", "x " * 60], 40)
    assert rates["concise"][0] == 0.5 and rates["harmless"][0] == 1.0 and rates["harmless"][3] == 1


def test_bad_input_is_one_line_with_exit_code_2(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("no colon here\n")
    out = _run("revise", "--constitution", bad, "--out", tmp_path / "r.jsonl")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().count("\n") == 0 and "bad.txt line 1" in out.stderr
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "Hi", "kind": "rude"}) + "\n")
    out = _run("label", "--prompts", prompts, "--out", tmp_path / "p.jsonl")
    assert out.returncode == 2 and "prompts.jsonl line 1" in out.stderr and "Traceback" not in out.stderr


def test_revise_cli_writes_align_rows(tmp_path):
    out = tmp_path / "rev.jsonl"
    run = _run("revise", "--model", "tiny-llama", "--limit", 2, "--max-new-tokens", 4, "--out", out)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "revisions kept" in run.stdout
    triples = [json.loads(line) for line in (tmp_path / "rev.triples.jsonl").read_text().splitlines()]
    assert len(triples) == 2 and {"answer", "critique", "revision", "kept", "why"} <= set(triples[0])
    if out.read_text().strip():  # a random tiny model rarely writes a revision that passes the filter
        assert align.read_rows(out)
