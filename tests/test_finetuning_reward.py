"""fine-tuning/align.py --method reward: the off-topic pair recipe, the accuracy interval, a tiny-llama reward model
that trains, saves, reloads to the same scores and resumes, and a one-line error for a malformed pair."""

import json
import shutil
import sys
from functools import partial

import pytest

from common import write_jsonl
from tests.conftest import ROOT, run_script

sys.path.insert(0, str(ROOT / "fine-tuning"))
import align  # noqa: E402
import reward  # noqa: E402

SCRIPT = ROOT / "fine-tuning" / "align.py"
# right sums are short, wrong ones padded with chatter: a pattern a tiny random model can learn in a few steps
PAIRS = [{"prompt": f"What is {n} plus {n}?", "chosen": f"{2 * n}.",
          "rejected": f"Hmm, I think it might be {2 * n + 1}, but I am really not sure about that at all."}
         for n in range(12)]


_run = partial(run_script, SCRIPT, timeout=240)


@pytest.fixture
def pairs(tmp_path):
    path = tmp_path / "pairs.jsonl"
    write_jsonl(path, PAIRS)
    return path


def test_off_topic_pairs_stay_within_their_split():
    train_rows, held_rows = align.python_docs_instructions(held_out_topics=12, seed=0)
    train, held = reward.load_reward_data("python_docs", seed=0, held_out_topics=12)
    train_answers = {r["completion"][0]["content"] for r in train_rows}
    held_answers = {r["completion"][0]["content"] for r in held_rows} - train_answers  # pages repeat sections
    assert len(train) == len(train_rows) and len(held) == len(held_answers) > 15
    for pair in held:  # both answers of a held-out pair come from held-out topics
        assert pair["chosen"][0]["content"] in held_answers and pair["rejected"][0]["content"] in held_answers
    assert not held_answers & {p[side][0]["content"] for p in train for side in ("chosen", "rejected")}
    for pair in train:  # chosen: the question's own answer; rejected: an answer of another topic, never the same
        assert any(r["prompt"] == pair["prompt"] and r["completion"] == pair["chosen"] for r in train_rows)
        assert pair["chosen"] != pair["rejected"]
        assert pair["topic"] not in {r["topic"] for r in train_rows if r["completion"] == pair["rejected"]}
    both, _ = reward.load_reward_data("preferences+python_docs")
    assert len(both) == len(train) + 41 and {p["source"] for p in both} == {"preferences", "python_docs"}


def test_pairwise_accuracy_and_wilson_interval():
    acc, low, high = reward.pairwise_accuracy([1.0] * 8 + [0.0] * 2, [0.5] * 10)
    assert acc == 0.8 and low == pytest.approx(0.4902, abs=1e-3) and high == pytest.approx(0.9433, abs=1e-3)


def test_malformed_pair_row_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "bad.jsonl"
    rows = PAIRS[:2] + [{"prompt": "Hi", "chosen": "Hello."}]
    write_jsonl(bad, rows)
    out = _run("--method", "reward", "--data", bad, "--model", "tiny-llama", "--output", tmp_path / "out")
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.strip().count("\n") == 0 and "Traceback" not in out.stderr
    assert "bad.jsonl row 3" in out.stderr and "'rejected'" in out.stderr
    same = tmp_path / "same.jsonl"
    same.write_text(json.dumps({"prompt": "Hi", "chosen": "Hello.", "rejected": "Hello."}) + "\n")
    out = _run("--method", "reward", "--data", same, "--model", "tiny-llama", "--output", tmp_path / "out")
    assert out.returncode == 2 and "same.jsonl row 1: 'chosen' and 'rejected' are the same" in out.stderr
    out = _run("--method", "reward", "--data", "nosuchset", "--model", "tiny-llama", "--output", tmp_path / "out")
    assert out.returncode == 2 and "unknown data 'nosuchset' for reward" in out.stderr


def test_reward_model_trains_saves_scores_and_resumes(tmp_path, pairs):
    out = tmp_path / "rm"
    common = ["--method", "reward", "--data", pairs, "--model", "tiny-llama", "--output", out, "--steps", 4,
              "--batch-size", 4, "--save-steps", 2, "--lr", "3e-3", "--max-length", 96, "--no-progress", "--no-bf16"]
    first = _run(*common)
    assert first.returncode == 0, first.stderr[-2000:]
    assert first.stdout.startswith("reward (lora) on") and "held-out pairwise accuracy" in first.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_pairs_used"] == metrics["train_pairs"] == 11 and metrics["held_out_pairs"] == 1
    assert metrics["trainable_parameters"] < metrics["total_parameters"] / 5  # LoRA + the score head
    log = json.loads((out / "log_history.json").read_text())
    accuracy = [r["accuracy"] for r in log if "accuracy" in r]
    assert accuracy[-1] > accuracy[0] or accuracy[-1] == 1.0  # it learned to rank the training pairs

    model, tokenizer = reward.load_reward_model(out)  # the saved adapter and head score pairs as at the end of training
    assert type(model).__name__ == "PeftModelForSequenceClassification"
    _, held = reward.load_reward_data(str(pairs))
    chosen, rejected = reward.score_pairs(model, tokenizer, held)
    saved = [json.loads(line) for line in (out / "held_out_scores.jsonl").read_text().splitlines()]
    assert chosen[0] == pytest.approx(saved[0]["chosen_reward"], abs=1e-3)
    assert rejected[0] == pytest.approx(saved[0]["rejected_reward"], abs=1e-3)
    uninterrupted = {r["step"]: r["loss"] for r in log if "loss" in r}

    shutil.rmtree(out / "checkpoints" / "checkpoint-4")  # as if the run had stopped after step 2
    resumed = _run(*common, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads((out / "metrics.json").read_text())["resumed_from"] == "checkpoint-2"
    losses = {r["step"]: r["loss"] for r in json.loads((out / "log_history.json").read_text()) if "loss" in r}
    for step in (3, 4):  # the missing steps were trained again, on the same batches, to the same losses
        assert losses[step] == pytest.approx(uninterrupted[step], rel=1e-3)
