"""applications/content.py: brief validation, each constraint check on hand-written texts, prompts, CLI."""

import json
import sys
from functools import partial

import pytest
import torch

from tests.conftest import ROOT, run_script

sys.path.insert(0, str(ROOT / "applications"))
import content as C  # noqa: E402

SCRIPT = ROOT / "applications" / "content.py"

EMAIL = {"id": "t1", "kind": "email", "audience": "Ms. Chen (a client)", "purpose": "move a meeting",
         "facts": ["Thursday 12 June", "10:30 AM", "Room 4B", "$12,500"],
         "constraints": {"subject": True, "greeting": "Ms. Chen", "signoff": "Daniel Kim", "tone": "formal",
                         "min_words": 20, "max_words": 80, "banned": ["ASAP"]}}
GOOD = ("Subject: Review meeting moved\n\nDear Ms. Chen,\n\nThe project review now takes place on Thursday 12 June "
        "at 10:30 a.m. in room 4b. The budget of $12500 will be discussed. Please tell me if this time does not "
        "suit you.\n\nKind regards,\nDaniel Kim")


run = partial(run_script, SCRIPT, timeout=240)


def failed(brief, text):
    return sorted(k for k, (ok, _) in C.check(brief, text).items() if not ok)


def test_good_text_passes_every_check():
    results = C.check(C.check_brief(EMAIL, "test"), GOOD)
    assert set(results) == {"facts", "placeholders", *EMAIL["constraints"]}
    assert C.passed(results), results


@pytest.mark.parametrize("text, expected", [
    (GOOD.replace("Daniel Kim", "[Your Name]"), ["placeholders", "signoff"]),
    (GOOD.replace("Room 4B", "[Room]").replace("room 4b", "[room]"), ["facts", "placeholders"]),
    (GOOD.replace("does not", "doesn't"), ["tone"]),
    (GOOD.replace("you.", "you!"), ["tone"]),
    (GOOD.replace("Please tell", "Hey, please tell"), ["tone"]),
    (GOOD.replace("10:30 a.m.", "half past ten"), ["facts"]),
    (GOOD.replace("Thursday 12 June", "June 12th"), ["facts"]),  # exact-normalised: no date parsing
    (GOOD.replace("Subject: Review meeting moved\n\n", ""), ["subject"]),
    (GOOD.replace("Dear Ms. Chen,", "Dear client,"), ["greeting"]),
    (GOOD.replace("\nDaniel Kim", "\nThe team"), ["signoff"]),
    (GOOD + " More words here." * 20, ["max_words"]),
    ("Subject: Hi\n\nDear Ms. Chen,\nThursday 12 June 10:30 AM Room 4B $12,500\nDaniel Kim", ["min_words"]),
    (GOOD.replace("Please tell", "ASAP, please tell"), ["banned"]),
])
def test_each_fault_is_caught_by_its_own_check(text, expected):
    assert failed(EMAIL, text) == expected


def test_markdown_subject_and_time_formats_are_accepted():
    text = GOOD.replace("Subject:", "**Subject:**").replace("10:30 a.m.", "10:30am")
    assert failed(EMAIL, text) == []
    assert C.normalise("Meet at 3pm, order #48213, $12,500") == "meet at 3:00 pm order 48213 $12500"
    assert C.normalise("3 PM") == C.normalise("3:00 p.m.") == "3:00 pm"
    assert not C.check_facts("Room 4BX", ["Room 4B"])[0]  # whole words only


def test_social_product_and_friendly_checks():
    social = C.check_brief({"id": "s", "kind": "social", "audience": "fans", "purpose": "announce",
                            "facts": ["Saturday"], "constraints": {"max_chars": 50, "max_hashtags": 1,
                                                                  "tone": "friendly"}}, "test")
    assert failed(social, "New loaf on Saturday! #bread") == []
    assert failed(social, "New loaf on Saturday! #bread #sourdough") == ["max_hashtags"]
    assert failed(social, "To whom it may concern: new loaf on Saturday, order 48213 #1") == ["max_chars", "tone"]
    product = C.check_brief({"id": "p", "kind": "product", "audience": "cooks", "purpose": "describe",
                             "facts": ["26 cm"], "constraints": {"bullets": 3}}, "test")
    assert failed(product, "A pan.\n- 26 cm\n* iron\n1. cheap") == []
    assert C.check(product, "A pan.\n- 26 cm\n- iron")["bullets"] == (False, "2 bullet points (want 3)")


def test_examples_pass_their_own_briefs_and_project_briefs_load():
    for brief, text in C.EXAMPLES:
        assert C.passed(C.check(C.check_brief(brief, "example"), text))
    briefs = C.load_briefs()
    assert len(briefs) == 32 and {b["kind"] for b in briefs} == set(C.KINDS)
    for brief in briefs:  # a greeting name must be in the audience, or the brief would be unfair
        assert brief["constraints"].get("greeting", "") in brief["audience"]


def test_prompts_and_revision_messages():
    brief = C.load_briefs()[0]
    for pattern in C.PATTERNS:
        messages = C.prompt_messages(brief, pattern)
        assert messages[-1]["role"] == "user" and all(f in messages[-1]["content"] for f in brief["facts"])
    assert "Rules" in C.prompt_messages(brief, "checklist")[0]["content"]
    assert len(C.prompt_messages(brief, "fewshot")) == 3  # example, its text, the brief
    results = C.check(brief, "Hello")
    revision = C.revision_messages(brief, C.prompt_messages(brief, "structured"), "Hello", results)
    assert revision[1] == {"role": "assistant", "content": "Hello"} and "facts: missing" in revision[2]["content"]
    with pytest.raises(C.ContentError, match="unknown pattern"):
        C.prompt_messages(brief, "poem")


def test_no_repeat_in_answer_ignores_the_prompt():
    proc = C.NoRepeatInAnswer(start=3, n=2)
    scores = torch.zeros(1, 10)
    out = proc(torch.tensor([[5, 6, 7, 5, 6, 5]]), scores.clone())  # answer 5 6 5: "5 6" seen -> 6 banned after 5
    assert out[0, 6] == float("-inf") and torch.isfinite(out[0, [0, 1, 2, 3, 4, 5, 7, 8, 9]]).all()
    out = proc(torch.tensor([[5, 6, 7, 5]]), scores.clone())  # "5 6" only in the prompt: allowed
    assert torch.isfinite(out).all()


def test_wilson_interval():
    assert C.wilson(0, 10)[0] == 0.0 and 0.2 < C.wilson(0, 10)[1] < 0.35
    low, high = C.wilson(5, 10)
    assert low == pytest.approx(0.2366, abs=1e-3) and high == pytest.approx(0.7634, abs=1e-3)
    assert C.wilson(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize("change, message", [
    (lambda r: r.pop("facts"), "line 2: field 'facts' must be a non-empty list of non-empty strings"),
    (lambda r: r.update(kind="letter"), "line 2: field 'kind' is 'letter', expected one of"),
    (lambda r: r["constraints"].update(max_words="many"), "line 2: constraint 'max_words' must be a non-negative int"),
    (lambda r: r["constraints"].update(emoji=True), "line 2: unknown constraint 'emoji'"),
    (lambda r: r["constraints"].update(tone="angry"), "line 2: constraint 'tone' must be one of formal, friendly"),
    (lambda r: r["constraints"].update(subject=1), "line 2: constraint 'subject' must be a bool"),
])
def test_bad_brief_row_names_the_row_and_field(tmp_path, change, message):
    row = json.loads(C.BRIEFS.read_text().splitlines()[0])
    change(row)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(C.BRIEFS.read_text().splitlines()[1] + "\n" + json.dumps(row) + "\n")
    with pytest.raises(C.ContentError) as err:
        C.load_briefs(bad)
    assert str(err.value).startswith("bad.jsonl " + message)


def test_bad_brief_file_is_one_line_error_in_the_cli(tmp_path):
    row = json.loads(C.BRIEFS.read_text().splitlines()[0])
    row["constraints"]["emoji"] = True
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(row) + "\n")
    result = run("check", "--briefs", bad, "--texts", bad)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: bad.jsonl line 1: unknown constraint 'emoji'")
    assert result.stderr.count("\n") == 1


def test_cli_check_writes_results(tmp_path):
    texts, out = tmp_path / "texts.jsonl", tmp_path / "out.jsonl"
    brief, good = C.EXAMPLES[0]
    briefs = tmp_path / "briefs.jsonl"
    briefs.write_text(json.dumps(brief) + "\n")
    texts.write_text(json.dumps({"id": "ex-email", "text": good}) + "\n" +
                     json.dumps({"id": "ex-email", "text": "Hi [Name]"}) + "\n")
    result = run("check", "--briefs", briefs, "--texts", texts, "--out", out)
    assert result.returncode == 0, result.stderr
    assert "pass rate 1/2 = 0.50" in result.stdout
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["passed"] for r in records] == [True, False]
    texts.write_text('{"id": "nope", "text": "x"}\n')
    with pytest.raises(C.ContentError, match='texts.jsonl line 1: id "nope" is not a brief id'):
        C.read_texts(texts, [brief])


def test_cli_generate_with_a_tiny_model_checks_every_text(tmp_path):
    out = tmp_path / "gen.jsonl"
    result = run("generate", "--model", "tiny-llama", "--limit", 2, "--max-new-tokens", 6, "--pattern", "revise",
                 "--out", out)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in records] == ["cb01", "cb02"]
    assert all(r["rounds"] == 1 and not r["passed"] and "facts" in r["checks"] for r in records)  # random weights
    assert "pass rate 0/2" in result.stdout
