"""applications/extract.py: constrained output always parses and validates, schema checks, scoring, errors."""

import json
import sys
from functools import partial

import jsonschema
import pytest
import torch

from tests.conftest import ROOT, run_script

sys.path.insert(0, str(ROOT / "applications"))
import extract  # noqa: E402

SCRIPT = ROOT / "applications" / "extract.py"
MIXED = {"type": "object", "required": ["title", "year", "score", "tags"], "additionalProperties": False,
         "properties": {"title": {"type": "string", "maxLength": 12}, "year": {"type": "integer"},
                        "score": {"type": "number"}, "tags": {"type": "array", "items": {"type": "string"},
                                                              "maxItems": 3}}}


run = partial(run_script, SCRIPT, timeout=120)


def one_line_error(result, *words):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


@pytest.fixture(scope="module")
def tokenizer():
    from common import load_tokenizer
    return load_tokenizer("tiny-llama")  # SmolLM2's 49k BPE vocabulary


@pytest.mark.parametrize("budget", [31, 45, 90])
def test_constraint_on_random_logits_always_gives_valid_json(tokenizer, budget):
    """Drive the processor with random scores (a worst-case 'model'): every output parses and validates."""
    fields = extract.check_schema(MIXED)
    for seed in range(4):
        gen = torch.Generator().manual_seed(seed)
        proc = extract.JsonSchemaConstraint(tokenizer, fields, budget)
        ids = torch.zeros(1, 5, dtype=torch.long)
        for _ in range(budget):
            scores = proc(ids, torch.randn(1, len(tokenizer), generator=gen))
            ids = torch.cat([ids, scores.argmax(-1, keepdim=True)], dim=1)
            if ids[0, -1].item() == tokenizer.eos_token_id:
                break
        text = tokenizer.decode(ids[0, 5:], skip_special_tokens=True)
        obj = json.loads(text)
        jsonschema.validate(obj, MIXED)
        assert len(obj["title"]) <= 12 and len(obj["tags"]) <= 3 and isinstance(obj["year"], int)


def test_too_small_budget_is_refused(tokenizer):
    with pytest.raises(extract.ExtractError, match="too small"):
        extract.JsonSchemaConstraint(tokenizer, extract.check_schema(MIXED), 12)


@pytest.mark.parametrize("schema, word", [
    ({"type": "object", "properties": {"a": {"type": "string", "enum": ["x"]}}}, "enum"),
    ({"type": "object", "properties": {"a": {"type": "object"}}}, "object"),
    ({"type": "object", "properties": {"a": {"type": "array", "items": {"type": "number"}}}}, "items"),
    ({"type": "object", "properties": {"a": {"type": "string"}}, "anyOf": []}, "anyOf"),
    ({"type": "array"}, "object schema"),
])
def test_unsupported_schema_features_are_named(schema, word):
    with pytest.raises(extract.ExtractError, match=word):
        extract.check_schema(schema)


def test_field_scores_match_aliases_once_and_count_invalid_as_empty():
    gold = [{"people": [["Donald Trump", "Trump"], ["Barack Obama"]]}, {"people": [["Theresa May"]]}]
    preds = [{"people": ["trump", "Donald Trump", "Putin"]}, None]
    s = extract.field_scores(preds, gold, ["people"])["people"]
    # "trump" matches Trump; "Donald Trump" finds no unmatched entity left; Putin is wrong; May and Obama missed
    assert (s["tp"], s["fp"], s["fn"]) == (1, 2, 2)
    assert extract.normalise(" The  European Union's ") == "european union"


def test_parse_json_skips_prose_and_fences():
    assert extract.parse_json('Sure!\n```json\n{"a": [1, 2]}\n```') == {"a": [1, 2]}
    assert extract.parse_json('{"a": [1, 2') is None


def test_cli_constrained_tiny_model_writes_valid_jsonl(tmp_path):
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(MIXED))
    texts = tmp_path / "in.txt"
    texts.write_text("Dune (1965) by Frank Herbert, rated 4.5.\n\nThe Hobbit, 1937, rated 4.7.\n")
    out = tmp_path / "out.jsonl"
    result = run("--model", "tiny-llama", "--schema", schema, "--input", texts, "--out", out,
                 "--max-new-tokens", 40)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 2 and all(r["valid_json"] and r["valid_schema"] for r in rows)
    for r in rows:
        jsonschema.validate(json.loads(r["output"]), MIXED)
    assert "valid JSON 2/2, valid schema 2/2" in result.stdout


def test_cli_error_is_one_line_with_exit_code_2(tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"body": "Paris is in France."}) + "\n")
    one_line_error(run("--input", rows), "'text'", "body", "--text-column")


def test_bad_files_and_schemas_are_named(tmp_path, capsys):
    """The same checks in-process (fast): each bad input exits with code 2 and a message that names it."""
    bad, pattern, txt = tmp_path / "bad.json", tmp_path / "pattern.json", tmp_path / "in.txt"
    bad.write_text("{not json")
    pattern.write_text(json.dumps({"type": "object", "properties": {"a": {"type": "string", "pattern": "x"}}}))
    txt.write_text("Paris is in France.\n")
    cases = [(["--schema", tmp_path / "missing.json"], ["cannot read the schema"]),
             (["--schema", bad], ["not valid JSON"]),
             (["--schema", pattern, "--input", txt], ["'pattern'", "'a'"]),
             (["--input", tmp_path / "x.csv"], [".txt or .jsonl"]),
             (["--input", tmp_path / "none.txt"], ["cannot read the input"]),
             (["--max-new-tokens", "0"], ["at least 1"])]
    for args, words in cases:
        with pytest.raises(SystemExit) as exit_info:
            extract.main([str(a) for a in args])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1, err
        assert all(w in err for w in words), err


def test_gold_set_is_verbatim_and_complete():
    rows = [json.loads(line) for line in (ROOT / "data" / "extraction_news.jsonl").read_text().splitlines()]
    assert len(rows) == 40 and len({r["id"] for r in rows}) == 40
    for r in rows:
        for field in ("people", "organisations", "places", "dates"):
            for entity in r[field]:
                assert entity and all(alias in r["text"] for alias in entity), (r["id"], entity)
