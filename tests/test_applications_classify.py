"""applications/classify.py: train (embeddings + logistic regression, fine-tuning) on a user CSV, save, predict
from a file or stdin, zero-shot with SmolLM2, and one-line errors (exit 2) for bad input.

Subprocesses run with one torch thread: on a shared 2-core machine two threads per process can be much slower.
"""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.script

SCRIPT = "applications/classify.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
sys.path.insert(0, str(ROOT / "applications"))


def run(*args, stdin=None, timeout=180):
    return subprocess.run([sys.executable, SCRIPT, *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=ENV, input=stdin)


WORDS = {"sport": ["the striker scored a late goal", "the team won the match", "the coach praised the players"],
         "food": ["the soup was rich and spicy", "she baked fresh bread", "the chef grilled the fish"],
         "weather": ["heavy rain fell all night", "a cold wind blew from the north", "the sun shone warmly"]}


def write_topics(path, n=60):
    """A CSV with three easy topics (the label is obvious from the words), columns sentence/topic."""
    rows = [("sentence", "topic")]
    for i in range(n):
        topic = list(WORDS)[i % 3]
        rows.append((f"{WORDS[topic][(i // 3) % 3]} on day {i}", topic))
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    return path


def test_embed_trains_on_a_user_csv_saves_and_predicts_from_file_and_stdin(tmp_path):
    data, out = write_topics(tmp_path / "topics.csv"), tmp_path / "clf"
    done = run("train", "--data", data, "--text-column", "sentence", "--label-column", "topic", "--out", out,
               "--no-progress")
    assert done.returncode == 0, done.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["labels"] == ["food", "sport", "weather"] and metrics["method"] == "embed"
    assert metrics["accuracy"] == 1.0 > metrics["majority_accuracy"]  # the topics are obvious
    assert json.loads((out / "classifier.json").read_text())["encoder"] == "minilm-l6"

    new = tmp_path / "new.jsonl"
    new.write_text(json.dumps({"id": 1, "sentence": "the goalkeeper saved a penalty"}) + "\n"
                   + json.dumps({"id": 2, "sentence": "snow covered the hills overnight"}) + "\n")
    done = run("predict", out, "--data", new, "--text-column", "sentence", "--output", tmp_path / "p.jsonl")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [1, 2] and [r["predicted"] for r in rows] == ["sport", "weather"]
    assert all(1 / 3 < r["probability"] <= 1 for r in rows)

    done = run("predict", out, stdin="she fried onions and garlic\n\nthe referee blew the whistle\n")
    assert done.returncode == 0, done.stderr
    table = list(csv.DictReader(done.stdout.splitlines()))
    assert [r["predicted"] for r in table] == ["food", "sport"] and list(table[0]) == ["text", "predicted",
                                                                                    "probability"]


def test_saved_head_gives_sklearn_probabilities():
    from classify import EmbedClassifier
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(90, 8))
    for n_labels in (2, 3):
        y = np.arange(90) % n_labels
        head = LogisticRegression().fit(x + y[:, None], y)
        mine = EmbedClassifier("unused", [str(i) for i in range(n_labels)], head.coef_, head.intercept_)
        np.testing.assert_allclose(mine.proba_from_vectors(x), head.predict_proba(x), atol=1e-10)


def test_finetune_delegates_to_finetune_classifier_and_reloads(tmp_path):
    data, out = write_topics(tmp_path / "topics.csv"), tmp_path / "ft"
    done = run("train", "--data", data, "--text-column", "sentence", "--label-column", "topic", "--method",
               "finetune", "--model", "tiny-bert", "--max-steps", 4, "--batch-size", 8, "--out", out, "--no-progress")
    assert done.returncode == 0, done.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 4 and metrics["method"] == "finetune" and "majority_macro_f1" in metrics
    assert (out / "model.safetensors").exists()
    done = run("predict", out, "--no-progress", stdin="heavy rain again\n")
    assert done.returncode == 0, done.stderr
    row = next(csv.DictReader(done.stdout.splitlines()))
    assert row["predicted"] in WORDS and 1 / 3 <= float(row["probability"]) <= 1


def test_zero_shot_with_smollm2_reads_clear_sentiment():
    done = run("zero-shot", "--labels", "positive", "negative", "--prompt", "Review: {text}\nSentiment ({labels}):",
               "--no-progress", stdin="A wonderful, moving film. I loved every minute.\n"
                                      "Dull, ugly and far too long; a complete waste of time.\n")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(done.stdout.splitlines()))
    assert [r["predicted"] for r in rows] == ["positive", "negative"]
    assert all(0.5 <= float(r["probability"]) <= 1 for r in rows)


@pytest.mark.parametrize("args, message", [
    (["train", "--data", "nowhere.csv"], "data file 'nowhere.csv' not found"),
    (["train", "--data", "{csv}", "--text-column", "review"], "column 'review' not found in topics.csv; its "
                                                                "columns are: sentence, topic"),
    (["train", "--data", "{one}", "--text-column", "sentence", "--label-column", "topic"], "single class"),
    (["predict", "{tmp}"], "no classifier in"),
    (["predict", "{broken}"], "cannot be read"),
    (["zero-shot", "--labels", "yes", "yes"], "at least two different labels"),
])
def test_bad_input_gives_one_line_and_exit_2(tmp_path, args, message):
    topics = write_topics(tmp_path / "topics.csv")
    one = tmp_path / "one.csv"
    one.write_text("sentence,topic\n" + "".join(f"text {i},sport\n" for i in range(20)))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "classifier.json").write_text(json.dumps({"format": 1, "method": "embed", "labels": ["a", "b"],
                                                        "encoder": "minilm-l6"}))  # head.npz is missing
    args = [a.format(csv=topics, one=one, tmp=tmp_path, broken=broken) for a in args]
    done = run(*args, stdin="some text\n")
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
