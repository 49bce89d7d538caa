"""fine-tuning/align.py: the Python-docs instruction recipe, row checks, the completion-only mask, SFT runs,
checkpoints and --resume (tiny-llama, a few steps)."""

import json
import shutil
import sys
from functools import partial

import pytest

from common import write_jsonl
from tests.conftest import ROOT, run_script

sys.path.insert(0, str(ROOT / "fine-tuning"))
import align  # noqa: E402

SCRIPT = ROOT / "fine-tuning" / "align.py"
CHATS = [
    {"messages": [{"role": "user", "content": f"What is {n} plus {n}?"},
                  {"role": "assistant", "content": f"{n} plus {n} is {2 * n}."}]} for n in range(10)
]


_run = partial(run_script, SCRIPT, timeout=240)


@pytest.fixture
def chats(tmp_path):
    path = tmp_path / "chats.jsonl"
    write_jsonl(path, CHATS)
    return path


def test_python_docs_pairs_are_real_text_and_split_by_topic():
    train, held = align.python_docs_instructions(held_out_topics=12, seed=0)
    assert len(train) > 60 and len(held) > 10
    assert not {r["topic"] for r in train} & {r["topic"] for r in held}
    answers = [{r["completion"][0]["content"] for r in rows} for rows in (train, held)]
    assert not answers[0] & answers[1]  # pages can share a paragraph: no held-out answer is trained on
    assert len({r["topic"] for r in held}) == 12
    docs = {r["topic"]: " ".join(r["text"].split()) for r in align.load_dataset("python_docs")["train"]}
    for row in train + held:
        answer = row["completion"][0]["content"]
        if not row["prompt"][0]["content"].startswith("Give an example"):  # examples are dedented code
            assert answer[:-1] in docs[row["topic"]], answer  # (a closing ':' may have become '.')
    assert align.python_docs_instructions(seed=0) == (train, held)  # deterministic


def test_a_malformed_row_is_named_in_one_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    rows = [{"prompt": "Hi", "completion": "Hello."}, {"prompt": "Hi", "completion": "Hello."},
            {"prompt": "Hi", "answer": "Hello."}]
    write_jsonl(bad, rows)
    out = _run("--data", bad, "--model", "tiny-llama", "--output", tmp_path / "out")
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "Traceback" not in out.stderr
    assert "bad.jsonl row 3" in out.stderr and "'completion'" in out.stderr
    chat = tmp_path / "chat.jsonl"
    chat.write_text(json.dumps({"messages": [{"role": "user", "content": "Hi"}]}) + "\n")
    with pytest.raises(align.DataError, match="row 1: the last message must be the assistant"):
        align.read_rows(chat)


def test_completion_only_mask_excludes_the_prompt(tmp_path):
    tokenizer = align.load_tokenizer("tiny-llama")
    model = align.load_model("tiny-llama")
    rows = [align.check_sft_row(r, i + 1, "chats", "messages") for i, r in enumerate(CHATS[:4])]
    trainer = align.make_sft_trainer(model, tokenizer, rows, rows[:1], tmp_path, steps=1, batch_size=2)
    mask = align.loss_mask(trainer, 0)
    prompt_ids = tokenizer.apply_chat_template(rows[0]["prompt"], add_generation_prompt=True, return_dict=True)
    n_prompt = len(prompt_ids["input_ids"])
    assert not any(counted for _, counted in mask[:n_prompt])  # no loss on system, user and header tokens
    assert all(counted for _, counted in mask[n_prompt:])
    assert "".join(tok for tok, _ in mask[n_prompt:]).startswith(rows[0]["completion"][0]["content"] + "<|im_end|>")


def test_sft_runs_saves_reloads_and_resumes(tmp_path, chats):
    out = tmp_path / "run"
    common = ["--data", chats, "--model", "tiny-llama", "--output", out, "--steps", 4, "--batch-size", 2,
              "--save-steps", 2, "--lr", "3e-3", "--max-length", 64, "--no-progress"]
    first = _run(*common)
    assert first.returncode == 0, first.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["held_out_loss_after"] < metrics["held_out_loss_before"]
    assert metrics["trainable_parameters"] < metrics["total_parameters"] / 5  # LoRA
    assert (out / "adapter_config.json").exists() and (out / "checkpoints" / "checkpoint-2").is_dir()
    model, _ = align.load_aligned(out)
    assert type(model).__name__ == "PeftModelForCausalLM"
    uninterrupted = {r["step"]: r["loss"] for r in json.loads((out / "log_history.json").read_text()) if "loss" in r}

    shutil.rmtree(out / "checkpoints" / "checkpoint-4")  # as if the run had stopped after step 2
    resumed = _run(*common, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed_from"] == "checkpoint-2"
    resumed_losses = {r["step"]: r["loss"] for r in json.loads((out / "log_history.json").read_text()) if "loss" in r}
    assert sorted(resumed_losses) == [1, 2, 3, 4]  # steps 1-2 come from the checkpoint's state
    for step in (3, 4):  # the missing steps were trained again, on the same batches, to the same losses
        assert resumed_losses[step] == pytest.approx(uninterrupted[step], rel=1e-3)

    changed = _run(*[c if c != "3e-3" else "1e-3" for c in common], "--resume")
    assert changed.returncode == 2 and "lr 0.003 -> 0.001" in changed.stderr


def test_help_lists_only_working_methods():
    out = _run("--help", timeout=120)
    assert out.returncode == 0 and "Examples:" in out.stdout
    assert "{sft,dpo,reward,rl}" in out.stdout  # the methods that run, and no other
    bad = _run("--method", "ppo", "--output", "x", timeout=120)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
