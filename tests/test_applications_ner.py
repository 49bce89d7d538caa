"""applications/ner.py: BIO decoding, parsing a chat model's answer, train/predict end to end, clear errors."""

import io
import json
import random
import subprocess
import sys

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "applications"))
import ner  # noqa: E402

SCRIPT = ROOT / "applications" / "ner.py"
PEOPLE = ["alice", "bob", "carol", "dave", "erin"]
PLACES = ["paris", "london", "tokyo", "berlin", "madrid"]


def run(*args, stdin=None, timeout=120):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, input=stdin, timeout=timeout)


def sentences(n: int, seed: int = 0) -> list[dict]:
    """Sentences with a person and a two-word place ('new paris'): a pattern a tiny model learns fast."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        person, place = rng.choice(PEOPLE), rng.choice(PLACES)
        rows.append({"tokens": [person, "flew", "to", "new", place, "today"],
                     "tags": ["B-person", "O", "O", "B-geo-loc", "I-geo-loc", "O"]})
    return rows


def test_entity_spans_decode_like_seqeval():
    from seqeval.metrics.sequence_labeling import get_entities

    tags = ["B-person", "I-person", "O", "I-geo-loc", "I-geo-loc", "B-geo-loc", "I-person", "O", "B-company"]
    ours = ner.entity_spans(tags)
    theirs = [(kind, start, end + 1) for kind, start, end in get_entities(tags)]
    assert ours == theirs
    assert ner.entity_spans(ner.tags_from_spans(ours, len(tags))) == ours


def test_parse_and_match_a_chat_answer():
    types = ["company", "geo-loc", "person"]
    answer = "- Person: Barack Obama\n* location: \"Paris\"\nsome chatter\nperson: Nobody Here"
    entities, readable = ner.parse_entities(answer, types)
    assert readable and entities == [("person", "Barack Obama"), ("geo-loc", "Paris"), ("person", "Nobody Here")]
    spans, missing = ner.match_entities("obama and barack obama met in paris".split(), entities)
    assert spans == [("person", 2, 4), ("geo-loc", 6, 7)] and missing == 1
    assert ner.parse_entities("none", types) == ([], True)
    assert ner.parse_entities("I cannot help with that.", types) == ([], False)


def test_lookup_baseline_tags_seen_strings_only():
    lookup = ner.LookupTagger([["New", "York", "is", "big"]], [["B-geo-loc", "I-geo-loc", "O", "O"]])
    assert lookup.tag(["i", "love", "new", "york", "and", "paris"]) == ["O", "O", "B-geo-loc", "I-geo-loc", "O", "O"]


def test_split_words_keeps_offsets():
    text = "RT @bob: Obama's visit to New York #nyc http://t.co/x"
    for word, start, end in ner.split_words(text):
        assert text[start:end] == word
    assert "@bob" in [w for w, _, _ in ner.split_words(text)] and "#nyc" in [w for w, _, _ in ner.split_words(text)]


def cli(capsys, *args) -> tuple[int, str]:
    """ner.main in this process (no second start-up of torch): exit code and stderr."""
    with pytest.raises(SystemExit) as exit_info:
        ner.main([str(a) for a in args])
    return exit_info.value.code, capsys.readouterr().err


def test_bad_files_give_one_line_errors(tmp_path, capsys, monkeypatch):
    rows = sentences(12)
    rows[3] = {"tokens": ["only", "two"], "tags": ["O"]}
    bad_length = tmp_path / "bad.jsonl"
    bad_length.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = run("train", "--data", bad_length, "--out", tmp_path / "m")  # once through the real command line
    assert out.returncode == 2 and "line 4" in out.stderr and "2 tokens but 1 tags" in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1

    conll = tmp_path / "bad.conll"
    conll.write_text("Alice B-person\nflew O\n\nBob PER\n")
    code, err = cli(capsys, "train", "--data", conll, "--out", tmp_path / "m")
    assert code == 2 and "line 4" in err and "not BIO" in err
    code, err = cli(capsys, "train", "--data", tmp_path / "missing.jsonl", "--out", tmp_path / "m")
    assert code == 2 and "not found" in err
    monkeypatch.setattr("sys.stdin", io.StringIO("Alice flew to Paris\n"))
    code, err = cli(capsys, "predict", tmp_path / "no-such-model")
    assert code == 2 and "not found" in err
    (tmp_path / "empty").mkdir()
    code, err = cli(capsys, "predict", tmp_path / "empty")
    assert code == 2 and "no config.json" in err
    assert not (tmp_path / "m").exists()  # nothing written for bad input


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("ner")
    data = root / "train.conll"
    data.write_text("\n\n".join("\n".join(f"{w}\t{t}" for w, t in zip(r["tokens"], r["tags"], strict=True))
                                for r in sentences(120)) + "\n")
    out = run("train", "--data", data, "--model", "tiny-bert", "--out", root / "model", "--max-steps", "60",
              "--lr", "3e-3", "--batch-size", "8", timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    return root / "model", out


def test_train_saves_a_tagger_that_learned(trained):
    folder, out = trained
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["steps"] == 60 and "test entity F1" in out.stdout
    assert metrics["entity_f1"] > 0.9 > metrics["majority_entity_f1"] and 0 <= metrics["lookup_entity_f1"] <= 1
    config = json.loads((folder / "config.json").read_text())
    assert set(config["id2label"].values()) == {"O", "B-geo-loc", "I-geo-loc", "B-person", "I-person"}


def test_predict_prints_entities_with_character_offsets(trained, tmp_path, capsys, monkeypatch):
    folder, _ = trained
    texts = tmp_path / "texts.txt"
    texts.write_text("carol flew to new tokyo today\n\n  dave flew to new berlin today  \n")
    out = run("predict", folder, texts)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [row["text"] for row in lines] == ["carol flew to new tokyo today", "dave flew to new berlin today"]
    first = lines[0]["entities"]
    assert [(e["type"], e["text"]) for e in first] == [("person", "carol"), ("geo-loc", "new tokyo")]
    for row in lines:
        for e in row["entities"]:
            assert row["text"][e["start"]:e["end"]] == e["text"] and 0 < e["score"] <= 1
    monkeypatch.setattr("sys.stdin", io.StringIO("erin flew to new madrid today\n"))  # text piped in
    ner.main(["predict", str(folder)])
    assert json.loads(capsys.readouterr().out)["entities"][1]["text"] == "new madrid"
