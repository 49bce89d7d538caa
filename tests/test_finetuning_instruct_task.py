"""fine-tuning/instruct_task.py: the shared sentiment instruction task."""

import sys

import pytest
import torch

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "fine-tuning"))
import instruct_task as task  # noqa: E402


@pytest.fixture(scope="module")
def tiny():
    from common import load_model, load_tokenizer
    torch.manual_seed(0)
    return load_model("tiny-llama"), load_tokenizer("tiny-llama")


def test_examples_are_chats_with_the_label_word():
    examples = task.sentiment_examples("validation", 20, seed=1)
    assert len(examples) == 20
    for e in examples:
        user, assistant = e["messages"]
        assert user["role"] == "user" and "Review: " in user["content"]
        assert assistant == {"role": "assistant", "content": task.LABELS[e["label"]]}
    assert task.sentiment_examples("validation", 20, seed=1) == examples  # seeded


def test_encode_puts_the_loss_on_the_answer_only(tiny):
    _, tok = tiny
    e = task.sentiment_examples("train", 1)[0]
    row = task.encode(tok, e["messages"])
    answer = [t for t in row["labels"] if t != task.IGNORE]
    assert tok.decode(answer).startswith(task.LABELS[e["label"]])
    assert row["input_ids"][-len(answer):] == answer and len(row["labels"]) == len(row["input_ids"])
    short = task.encode(tok, e["messages"], max_length=8)
    assert len(short["input_ids"]) == 8 and short["labels"][-len(answer):] == answer  # the answer survives


def test_collate_pads_right_and_masks(tiny):
    _, tok = tiny
    rows = [task.encode(tok, e["messages"]) for e in task.sentiment_examples("train", 3)]
    batch = task.collate(rows, tok.pad_token_id)
    width = max(len(r["input_ids"]) for r in rows)
    assert batch["input_ids"].shape == batch["labels"].shape == (3, width)
    assert batch["attention_mask"].sum().item() == sum(len(r["input_ids"]) for r in rows)
    assert (batch["labels"][batch["attention_mask"] == 0] == task.IGNORE).all()


def test_accuracy_agrees_with_one_by_one_scoring_and_training_lowers_the_loss(tiny):
    model, tok = tiny
    examples = task.sentiment_examples("validation", 12)
    acc, batched = task.answer_accuracy(model, tok, examples, batch_size=6, bf16=False)
    single = [task.answer_accuracy(model, tok, [e], batch_size=1, bf16=False)[1][0] for e in examples]
    assert batched == single and acc == sum(p == e["label"] for p, e in zip(batched, examples, strict=True)) / 12
    encoded = [task.encode(tok, e["messages"]) for e in task.sentiment_examples("train", 32)]
    before = task.heldout_loss(model, encoded, tok.pad_token_id)
    losses = task.train_steps(model, encoded, steps=15, pad_id=tok.pad_token_id, lr=3e-3)
    assert len(losses) == 15 and task.heldout_loss(model, encoded, tok.pad_token_id) < before
