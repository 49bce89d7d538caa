"""fine-tuning/finetune_classifier.py: trains and reloads (named set, user CSV, token task, peft), exact resume
after a SIGKILL, a 2-process accelerate launch, and one-line errors for bad input.

The runs use tiny-bert (random init, 4 layers of 128) for a few steps on small slices. Subprocesses run with one
torch thread: on a shared 2-core machine two OpenMP threads per process can make a step 10x slower.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import ROOT

pytestmark = pytest.mark.script

SCRIPT = "fine-tuning/finetune_classifier.py"
TINY = ["--model", "tiny-bert", "--batch-size", "8", "--eval-steps", "0", "--save-steps", "0", "--no-progress"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}  # CPU, one thread per process

sys.path.insert(0, str(ROOT / "fine-tuning"))


def run(*args, timeout=120, launcher=(sys.executable,)):
    return subprocess.run([*launcher, SCRIPT, *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=ENV)


def metrics(folder):
    return json.loads((folder / "metrics.json").read_text())


def write_reviews(path, n=120):
    """A CSV where the label is readable from one keyword (so a few steps learn it), three classes."""
    words = {1: ["awful", "boring", "dreadful"], 3: ["okay", "average", "fine"], 5: ["brilliant", "superb", "great"]}
    rows = ["review,stars"]
    for i in range(n):
        stars = (1, 3, 5)[i % 3]
        rows.append(f"\"the film was {words[stars][i % 5 % 3]} and the cast {words[stars][(i // 3) % 3]}\",{stars}")
    path.write_text("\n".join(rows) + "\n")
    return path


def test_named_set_slice_trains_saves_and_reloads(tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = run("--data", "rotten_tomatoes", "--max-steps", 6, "--max-train-examples", 64, "--max-eval-examples", 32,
              "--output", tmp_path, *TINY)
    assert out.returncode == 0, out.stderr
    assert "test: accuracy" in out.stdout and "(majority" in out.stdout
    m = metrics(tmp_path)
    assert m["steps"] == 6 and m["n_train"] == 64 and m["n_test"] == 32 and m["labels"] == ["negative", "positive"]
    for key in ("accuracy", "macro_f1", "majority_accuracy", "majority_macro_f1", "test_loss", "train_loss"):
        assert 0 <= m[key] < 10, key
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    assert model.config.id2label == {0: "negative", 1: "positive"}
    with torch.no_grad():
        logits = model(**tokenizer(["a fine film", "dull"], return_tensors="pt", padding=True)).logits
    assert logits.shape == (2, 2)


def test_user_csv_is_learnt_better_than_the_majority(tmp_path):
    from transformers import AutoConfig

    data = write_reviews(tmp_path / "reviews.csv")
    out = run("--data", data, "--text-column", "review", "--label-column", "stars", "--max-steps", 40, "--lr", 1e-3,
              "--output", tmp_path / "out", *TINY)
    assert out.returncode == 0, out.stderr
    m = metrics(tmp_path / "out")
    assert m["labels"] == ["1", "3", "5"] and m["n_train"] + m["n_test"] == 120 - 12  # 70/10/20 split
    assert m["accuracy"] > m["majority_accuracy"] + 0.3, m
    assert AutoConfig.from_pretrained(tmp_path / "out").id2label == {0: "1", 1: "3", 2: "5"}


def test_token_task_runs_and_reloads(tmp_path):
    from transformers import AutoModelForTokenClassification

    out = run("--task", "token", "--max-steps", 6, "--max-train-examples", 64, "--max-eval-examples", 32,
              "--output", tmp_path, *TINY)
    assert out.returncode == 0, out.stderr
    m = metrics(tmp_path)
    assert m["task"] == "token" and m["labels"][0] == "O" and len(m["labels"]) == 21
    assert m["majority_entity_f1"] == 0.0 and m["majority_token_accuracy"] > 0.8  # all-"O" finds no entity
    assert 0 <= m["entity_f1"] <= 1 and 0 <= m["token_accuracy"] <= 1
    model = AutoModelForTokenClassification.from_pretrained(tmp_path)
    assert model.config.id2label[1] == "B-company"


def test_peft_lora_is_merged_and_prompt_tuning_works_on_tags(tmp_path):
    from transformers import AutoModelForSequenceClassification

    out = run("--peft", "lora", "--max-steps", 4, "--max-train-examples", 32, "--max-eval-examples", 16,
              "--output", tmp_path / "lora", *TINY)
    assert out.returncode == 0, out.stderr
    assert not (tmp_path / "lora" / "adapter_config.json").exists()  # merged into plain weights
    AutoModelForSequenceClassification.from_pretrained(tmp_path / "lora")
    # prompt tuning prepends virtual tokens: the word tags must still line up (user JSONL, string tags)
    rows = [{"words": ["Ada", "visited", "Paris", "today"], "tags": ["B-PER", "O", "B-LOC", "O"]},
            {"words": ["Bob", "likes", "Rome"], "tags": ["B-PER", "O", "B-LOC"]}] * 10
    data = tmp_path / "tags.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))
    out = run("--task", "token", "--peft", "prompt", "--data", data, "--text-column", "words", "--label-column",
              "tags", "--max-steps", 4, "--output", tmp_path / "prompt", *TINY)
    assert out.returncode == 0, out.stderr
    assert metrics(tmp_path / "prompt")["labels"] == ["O", "B-LOC", "B-PER"]
    assert (tmp_path / "prompt" / "adapter_config.json").exists()


def test_align_labels_scores_each_word_once():
    from finetune_classifier import IGNORE, align_labels

    # [CLS] play ##ing in paris [SEP]: words 0, 0, 1, 2
    assert align_labels([None, 0, 0, 1, 2, None], [5, 0, 7]) == [IGNORE, 5, IGNORE, 0, 7, IGNORE]


# Kill and resume: checkpoints every 6 steps; the run is SIGKILLed once the first checkpoint is complete.
RESUMABLE = ["--max-steps", 36, "--max-train-examples", 160, "--max-eval-examples", 48, "--model", "tiny-bert",
             "--batch-size", "8", "--eval-steps", "0", "--save-steps", 6, "--no-progress"]


def test_resume_after_a_real_kill_matches_an_uninterrupted_run(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    out = run(*RESUMABLE, "--output", whole)
    assert out.returncode == 0, out.stderr
    proc = subprocess.Popen([sys.executable, SCRIPT, *map(str, RESUMABLE), "--output", str(killed)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    first, deadline = killed / "checkpoint-6" / "trainer_state.json", time.time() + 120
    while proc.poll() is None and not first.exists() and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "metrics.json").exists(), "the run finished before it could be killed"
    out = run(*RESUMABLE, "--output", killed, "--resume")
    assert out.returncode == 0, out.stderr
    a, b = metrics(whole), metrics(killed)
    for key in ("test_loss", "accuracy", "macro_f1", "train_loss"):
        assert abs(a[key] - b[key]) < 1e-5, (key, a[key], b[key])
    wa, wb = load_file(whole / "model.safetensors"), load_file(killed / "model.safetensors")
    assert wa.keys() == wb.keys()
    assert max((wa[k] - wb[k]).abs().max().item() for k in wa) < 1e-5


def test_two_process_accelerate_launch(tmp_path):
    """`accelerate launch --cpu` ignores --num_processes (it runs one process); `--multi_gpu` with the
    Trainer's use_cpu gives 2 processes over gloo on a CPU-only machine."""
    launch = (sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no")
    out = run("--max-steps", 4, "--max-train-examples", 64, "--max-eval-examples", 32, "--output", tmp_path, *TINY,
              launcher=launch, timeout=180)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("test: accuracy") == 1  # only the main process reports and saves
    m = metrics(tmp_path)
    assert m["steps"] == 4 and m["test_loss"] < 1.0  # ~ln 2; 1.4 if the loss were scaled by the 2 processes


# ---- bad input: one clear line on stderr, exit code 2 --------------------------------------------------

def error(capsys, tmp_path, *args):
    from finetune_classifier import main

    code = main([*map(str, args), "--output", str(tmp_path / "out"), "--model", "tiny-bert"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_bad_input_errors(tmp_path, capsys):
    data = write_reviews(tmp_path / "reviews.csv")
    assert "column 'text' not found in reviews.csv; its columns are: review, stars" in error(
        capsys, tmp_path, "--data", data)
    (tmp_path / "empty.csv").write_text("")
    assert "empty.csv is empty" in error(capsys, tmp_path, "--data", tmp_path / "empty.csv")
    (tmp_path / "header.csv").write_text("review,stars\n")
    assert "has no rows" in error(capsys, tmp_path, "--data", tmp_path / "header.csv", "--text-column", "review")
    (tmp_path / "sheet.xlsx").write_text("x")
    assert "unsupported file type '.xlsx'" in error(capsys, tmp_path, "--data", tmp_path / "sheet.xlsx")
    (tmp_path / "one.csv").write_text("review,stars\n" + "good,5\n" * 20)
    assert "single class ('5')" in error(capsys, tmp_path, "--data", tmp_path / "one.csv", "--text-column",
                                         "review", "--label-column", "stars")
    assert "neither a file nor a named data set" in error(capsys, tmp_path, "--data", "no_such_set")
    err = error(capsys, tmp_path, "--peft", "prefix")
    assert "prefix tuning is not supported" in err and "lora, ia3, prompt" in err
    assert "no complete checkpoint" in error(capsys, tmp_path, "--resume", "--max-train-examples", 16)


def test_unknown_model_offline_is_a_clear_error_from_the_terminal():
    out = run("--model", "nobody/not-a-cached-model", "--max-train-examples", 16, "--max-eval-examples", 8)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.startswith("error: 'nobody/not-a-cached-model'") and "cannot be reached" in out.stderr
