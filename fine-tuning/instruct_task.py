"""The instruction task every parameter-efficient lesson trains on, so their tables compare like with like.

A movie review (Rotten Tomatoes, real sentences) is put to the chat model as a question, and the answer is one
word, "negative" or "positive". It is small enough to train in a few CPU minutes, hard enough that SmolLM2-135M
gets about two reviews in three right without training, and its answers can be scored exactly.

Python API (import it from fine-tuning/, e.g. `from instruct_task import sentiment_examples, train_steps`):
  INSTRUCTION, LABELS                          the question and the two answer words
  sentiment_examples(split, n=None, seed=0)    -> [{"messages": [user, assistant], "label": 0|1}, ...]
  encode(tokenizer, messages, max_length)      -> {"input_ids", "labels"}: loss on the answer only
  collate(rows, pad_id)                        -> padded batch tensors
  answer_accuracy(model, tokenizer, examples)  -> (accuracy, predictions): the likelier answer word wins
  heldout_loss(model, encoded)                 -> mean loss on the answer tokens
  train_steps(model, encoded, steps, ...)      -> per-step losses: a plain AdamW loop, seeded batches
  autocast(model, enabled=True)                bf16 autocast context (on by default in the three above)
"""

import math
from contextlib import nullcontext

import torch

from common import load_dataset

INSTRUCTION = "Is the sentiment of this movie review positive or negative? Answer with one word.\n\nReview: {text}"
LABELS = ("negative", "positive")  # label 0, label 1 in rotten_tomatoes
IGNORE = -100  # label value the loss skips


def autocast(model, enabled: bool = True):
    """bfloat16 autocast on CPU/CUDA: about 2x faster on a CPU with AVX512-BF16; master weights stay fp32."""
    device = model.device.type
    if not enabled or device not in ("cpu", "cuda"):
        return nullcontext()
    return torch.autocast(device, dtype=torch.bfloat16)


def sentiment_examples(split: str, n: int | None = None, seed: int = 0) -> list[dict]:
    """Chat-format examples from a rotten_tomatoes split; `n` shuffled rows (seeded), or all of them."""
    rows = load_dataset("rotten_tomatoes")[split].shuffle(seed=seed)
    rows = rows.select(range(min(n, len(rows)))) if n else rows
    return [{"messages": [{"role": "user", "content": INSTRUCTION.format(text=text)},
                          {"role": "assistant", "content": LABELS[label]}], "label": label}
            for text, label in zip(rows["text"], rows["label"], strict=True)]


def encode(tokenizer, messages: list[dict], max_length: int = 256) -> dict[str, list[int]]:
    """Token ids of the whole chat, and labels that are IGNORE everywhere except the last assistant turn."""
    prompt = tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True, tokenize=False)
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    if not full.startswith(prompt):
        raise ValueError("the chat template renders the prompt differently with and without the answer")
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(full[len(prompt):], add_special_tokens=False)["input_ids"]
    ids = (prompt_ids + answer_ids)[-max_length:]  # too long: drop the start of the prompt, keep the answer
    labels = ([IGNORE] * len(prompt_ids) + answer_ids)[-max_length:]
    return {"input_ids": ids, "labels": labels}


def collate(rows: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a list of encoded rows into input_ids, attention_mask and labels tensors."""
    width = max(len(r["input_ids"]) for r in rows)
    pad = lambda seq, value: seq + [value] * (width - len(seq))  # noqa: E731
    return {"input_ids": torch.tensor([pad(r["input_ids"], pad_id) for r in rows]),
            "attention_mask": torch.tensor([pad([1] * len(r["input_ids"]), 0) for r in rows]),
            "labels": torch.tensor([pad(r["labels"], IGNORE) for r in rows])}


def _first_token_ids(tokenizer) -> list[int]:
    ids = [tokenizer(word, add_special_tokens=False)["input_ids"][0] for word in LABELS]
    if len(set(ids)) != len(ids):
        raise ValueError(f"the answer words {LABELS} start with the same token in this tokenizer")
    return ids


@torch.no_grad()
def answer_accuracy(model, tokenizer, examples: list[dict], batch_size: int = 16,
                    bf16: bool = True) -> tuple[float, list[int]]:
    """Score each example by the next-token logits of the answer words' first tokens after the prompt.

    Comparing two logits is exact, fast (one forward per batch, no generation) and never unparseable.
    """
    was_training, model = model.training, model.eval()
    choices, side = _first_token_ids(tokenizer), tokenizer.padding_side
    tokenizer.padding_side = "left"  # the last position is then every row's next token
    predictions = []
    try:
        for i in range(0, len(examples), batch_size):
            prompts = [tokenizer.apply_chat_template(e["messages"][:-1], add_generation_prompt=True, tokenize=False)
                       for e in examples[i:i + batch_size]]
            batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
            with autocast(model, bf16):
                logits = model(**batch).logits[:, -1, choices]
            predictions += logits.argmax(-1).tolist()
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    accuracy = sum(p == e["label"] for p, e in zip(predictions, examples, strict=True)) / len(examples)
    return accuracy, predictions


@torch.no_grad()
def heldout_loss(model, encoded: list[dict], pad_id: int, batch_size: int = 16, bf16: bool = True) -> float:
    """Mean cross-entropy over the answer tokens of `encoded` rows."""
    was_training, model = model.training, model.eval()
    total, count = 0.0, 0
    for i in range(0, len(encoded), batch_size):
        batch = collate(encoded[i:i + batch_size], pad_id)
        n = int((batch["labels"][:, 1:] != IGNORE).sum())
        with autocast(model, bf16):
            total += model(**{k: v.to(model.device) for k, v in batch.items()}).loss.item() * n
        count += n
    model.train(was_training)
    return total / count


def train_steps(model, encoded: list[dict], steps: int, pad_id: int, batch_size: int = 8, lr: float = 2e-4,
                seed: int = 0, warmup: float = 0.1, bf16: bool = True) -> list[float]:
    """Train the parameters that require grad with AdamW, linear warm-up then cosine decay; returns the losses.

    Batch k is a function of (seed, k) only, so two methods trained with the same seed see the same examples.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    warm = max(1, int(warmup * steps))
    schedule = lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, steps - warm)))  # noqa: E731
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    model.train()
    losses = []
    for step in range(steps):
        order = torch.randperm(len(encoded), generator=torch.Generator().manual_seed(seed * 100_003 + step))
        batch = collate([encoded[i] for i in order[:batch_size].tolist()], pad_id)
        with autocast(model, bf16):
            loss = model(**{k: v.to(model.device) for k, v in batch.items()}).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses
