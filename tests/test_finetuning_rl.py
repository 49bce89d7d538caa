"""fine-tuning/rl.py (`align.py --method rl`): PPO's clipped objective, GRPO/RLOO advantages, the reward model
wrapper, prompt checks, and a tiny GRPO run that saves, resumes and fails cleanly on bad input."""

import json
import sys
from functools import partial

import pytest
import torch

from tests.conftest import ROOT, run_script

sys.path.insert(0, str(ROOT / "fine-tuning"))
import rl  # noqa: E402

SCRIPT = ROOT / "fine-tuning" / "align.py"


_run = partial(run_script, SCRIPT, timeout=300)


def test_ppo_clip_stops_the_gradient_only_beyond_the_clip_range():
    ratio = torch.tensor([0.7, 0.9, 1.1, 1.3], requires_grad=True)
    rl.ppo_clip_loss(ratio.log(), torch.zeros(4), torch.tensor(1.0)).sum().backward()
    assert ratio.grad.tolist() == pytest.approx([-1.0, -1.0, -1.0, 0.0])  # a good answer: pushed up until 1.2
    ratio.grad = None
    rl.ppo_clip_loss(ratio.log(), torch.zeros(4), torch.tensor(-1.0)).sum().backward()
    assert ratio.grad.tolist() == pytest.approx([0.0, 1.0, 1.0, 1.0])  # a bad one: pushed down until 0.8


def test_group_advantages_match_their_definitions():
    rewards = torch.tensor([[0.9, 0.2, 0.5, 0.6], [1.0, 1.0, 1.0, 1.0]])
    grpo = rl.group_advantages(rewards, "grpo")
    assert grpo[0].mean().abs() < 1e-6 and grpo[0].std() == pytest.approx(1.0, abs=1e-3)
    assert torch.all(grpo[1] == 0)  # no spread, no signal
    rloo = rl.group_advantages(rewards, "rloo")
    for i in range(4):  # reward minus the mean of the other three, by hand
        others = [rewards[0, j] for j in range(4) if j != i]
        assert rloo[0, i] == pytest.approx(float(rewards[0, i] - sum(others) / 3), abs=1e-6)


@pytest.fixture(scope="module")
def reward_folder(tmp_path_factory):
    """A tiny random two-label classifier saved like finetune_classifier.py's output."""
    from common import load_model, load_tokenizer
    folder = tmp_path_factory.mktemp("rm")
    model = load_model("tiny-bert", kind="seq-cls", num_labels=2, id2label={0: "negative", 1: "positive"},
                       label2id={"negative": 0, "positive": 1})
    model.save_pretrained(folder)
    load_tokenizer("tiny-bert").save_pretrained(folder)
    return folder


def test_reward_model_scores_are_label_probabilities(reward_folder):
    reward = rl.RewardModel(reward_folder, "positive")
    scores = reward.score(["a fine film", "a dull film", "x"])
    assert len(scores) == 3 and all(0 < s < 1 for s in scores)
    assert reward(prompts=[[]] * 2, completions=[[{"role": "assistant", "content": "a fine film"}], "a dull film"]) \
        == pytest.approx(scores[:2], abs=1e-6)
    with pytest.raises(rl.DataError, match="negative, positive"):
        rl.RewardModel(reward_folder, "joy")


def test_prompt_rows_are_checked(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text(json.dumps({"prompt": "Say hi."}) + "\n" + json.dumps({"question": "Hi?"}) + "\n")
    with pytest.raises(rl.DataError, match="prompts.jsonl row 2: expected a JSON object with a 'prompt' field"):
        rl.read_rows(path, "rl")
    train, held = rl.load_rl_prompts("rotten_tomatoes", n_held=4)
    assert len(held) == 4 and held[0]["prompt"][0]["role"] == "user" and "movie review" in held[0]["prompt"][0]["content"]


def test_rl_run_saves_resumes_and_reports_bad_input(tmp_path, reward_folder):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Describe the number {n}."}) + "\n" for n in range(12)))
    common = ["--method", "rl", "--model", "tiny-llama", "--data", prompts, "--reward-model", reward_folder,
              "--reward-label", "positive", "--generations", "2", "--batch-size", "4", "--max-new-tokens", "6",
              "--eval-prompts", "2", "--no-progress", "--output", tmp_path / "out"]
    out = _run(*common, "--steps", "2", "--save-steps", "1")
    assert out.returncode == 0, out.stderr[-2000:]
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["method"] == "rl" and metrics["steps"] == 2 and 0 <= metrics["held_out_reward_after"] <= 1
    assert (tmp_path / "out" / "adapter_config.json").exists()
    changed = _run(*common, "--steps", "2", "--save-steps", "1", "--beta", "0.5", "--resume")
    assert changed.returncode == 2 and "other settings" in changed.stderr  # never mixes two runs' settings
    resumed = _run(*common, "--steps", "2", "--save-steps", "1", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["resumed_from"] == "checkpoint-2"
    bad = _run(*common[:-2], "--reward-model", tmp_path / "nothing", "--output", tmp_path / "bad")
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "reward model folder" in bad.stderr
