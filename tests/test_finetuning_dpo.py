"""fine-tuning/align.py --method dpo: the DPO loss from scratch equals TRL's, a tiny run saves and reloads,
--resume continues from a checkpoint, and a malformed preference row stops the run with one line (tiny-llama)."""

import json
import shutil
import sys
from functools import partial

import pytest
import torch

from common import write_jsonl
from tests.conftest import ROOT, run_script

sys.path.insert(0, str(ROOT / "fine-tuning"))
import align  # noqa: E402
import dpo  # noqa: E402

SCRIPT = ROOT / "fine-tuning" / "align.py"
PAIRS = [{"prompt": f"What is {n} plus {n}?", "chosen": f"{n} plus {n} is {2 * n}.",
          "rejected": f"{n} plus {n} is {2 * n + 1}, I think."} for n in range(10)]


_run = partial(run_script, SCRIPT, timeout=240)


@pytest.fixture
def pairs(tmp_path):
    path = tmp_path / "pairs.jsonl"
    write_jsonl(path, PAIRS)
    return path


def test_own_dpo_loss_equals_trl_loss(tmp_path):
    torch.manual_seed(0)
    tokenizer, model = align.load_tokenizer("tiny-llama"), align.load_model("tiny-llama")
    rows = [dpo.as_chat_pair(r) for r in PAIRS]
    trainer = dpo.make_dpo_trainer(model, tokenizer, rows[:6], rows[6:], tmp_path, steps=3, batch_size=2,
                                     lr=3e-3, beta=0.5, logging_steps=1)
    batch = dpo.dpo_batch(trainer, [0, 1, 2])
    assert batch["input_ids"].shape[0] == 6  # three chosen sequences, then three rejected ones
    trainer.model.eval()
    assert abs(dpo.own_dpo_loss(trainer, batch).item() - 0.6931472) < 1e-5  # policy == reference: log 2
    trainer.train()  # the adapter moves away from zero, so policy and reference differ
    trainer.model.eval()
    own, trl = dpo.own_dpo_loss(trainer, batch).item(), dpo.trl_dpo_loss(trainer, batch).item()
    assert abs(own - 0.6931472) > 1e-3, own
    assert abs(own - trl) < 1e-5, (own, trl)
    # the implied rewards in TRL's log are beta * log-ratio: a wrong beta would not reproduce its margin
    stats = dpo.reward_stats(dpo.held_out_logps(trainer), beta=0.5)
    assert set(stats) >= {"reward_accuracy", "reward_margin", "ref_prefers_chosen", "policy_prefers_chosen"}


def test_dpo_runs_saves_reloads_and_resumes(tmp_path, pairs):
    out = tmp_path / "run"
    common = ["--method", "dpo", "--data", pairs, "--model", "tiny-llama", "--output", out, "--steps", 4,
              "--batch-size", 2, "--save-steps", 2, "--lr", "3e-3", "--max-length", 64, "--no-progress"]
    first = _run(*common)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "dpo (lora, beta 0.1) on" in first.stdout and "implied-reward accuracy" in first.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == "dpo" and metrics["train_rows"] == 9 and metrics["held_out_rows"] == 1
    assert (out / "adapter_model.safetensors").exists() and (out / "checkpoints" / "checkpoint-4").is_dir()
    log = json.loads((out / "log_history.json").read_text())
    assert any("rewards/margins" in r for r in log)
    model, tokenizer = align.load_aligned(out)
    assert align.generate_answers(model, tokenizer, ["What is 2 plus 2?"], max_new_tokens=4)[0] is not None

    uninterrupted = {r["step"]: r["loss"] for r in log if "loss" in r}

    shutil.rmtree(out / "checkpoints" / "checkpoint-4")  # as if the run had stopped after step 2
    resumed = _run(*common, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads((out / "metrics.json").read_text())["resumed_from"] == "checkpoint-2"
    resumed_log = json.loads((out / "log_history.json").read_text())
    resumed_losses = {r["step"]: r["loss"] for r in resumed_log if "loss" in r}
    for step in (3, 4):  # the missing steps were trained again, on the same batches, to the same losses
        assert resumed_losses[step] == pytest.approx(uninterrupted[step], rel=1e-3)
    other_beta = _run(*common, "--resume", "--beta", "0.5")
    assert other_beta.returncode == 2 and "beta 0.1 -> 0.5" in other_beta.stderr


def test_a_malformed_pair_row_is_named_in_one_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    rows = [PAIRS[0], PAIRS[1], {"prompt": "Hi", "chosen": "Hello.", "reject": "Go away."}]
    write_jsonl(bad, rows)
    out = _run("--method", "dpo", "--data", bad, "--model", "tiny-llama", "--output", tmp_path / "out")
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "Traceback" not in out.stderr
    assert "bad.jsonl row 3" in out.stderr and "'rejected'" in out.stderr
    same = tmp_path / "same.jsonl"
    same.write_text(json.dumps({"prompt": "Hi", "chosen": "Hello.", "rejected": "Hello."}) + "\n")
    out = _run("--method", "dpo", "--data", same, "--output", tmp_path / "out")
    assert out.returncode == 2 and "same.jsonl row 1" in out.stderr and "same answer" in out.stderr
    out = _run("--method", "dpo", "--beta", "0", "--output", tmp_path / "out")
    assert out.returncode == 2 and "--beta" in out.stderr
