"""Reward modelling: a scalar score per (prompt, answer), trained on preference pairs: `align.py --method reward`.

The reward model is the chat model with a one-output score head; TRL's RewardTrainer trains it so that the chosen
answer of a pair scores above the rejected one (loss -log sigmoid(r_chosen - r_rejected)). The held-out pairwise
accuracy comes with a Wilson 95% interval. The command line, the checks of JSONL rows and the bookkeeping of a run
(settings, checkpoints, metrics.json) are align.py's.

Python API (import it from fine-tuning/):
  load_reward_data(data, seed=0, held_out_topics=12) -> (train_pairs, held_pairs)  chat pairs + reason, source
  load_reward_base(model, tokenizer) -> a one-output sequence-classification model (the reward model to train)
  make_reward_trainer(model, tokenizer, train_pairs, held_pairs, output_dir, steps, ...) -> trl.RewardTrainer
  score_pairs(model, tokenizer, pairs) -> (chosen_rewards, rejected_rewards);  pairwise_accuracy(...) -> (acc, lo, hi)
  load_reward_model(folder) -> (model, tokenizer)
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import torch
import transformers
from align import (
    TRAINING_SETTINGS,
    DataError,
    bf16_supported,
    count_parameters,
    finish_run,
    load_aligned,
    python_docs_instructions,
    read_rows,
    start_run,
)
from dpo import as_chat_pair

import common
from common import load_dataset, load_model

REWARD_DATA = ("preferences", "python_docs")  # named sets; join with '+' (e.g. preferences+python_docs)


def _as_messages(row: dict) -> dict:
    """A pair as chat messages (dpo.as_chat_pair) keeping its 'reason' and 'source'."""
    return {**as_chat_pair(row), "reason": row.get("reason", ""), "source": row.get("source", "")}


def off_topic_pairs(rows: list[dict], seed: int = 0) -> list[dict]:
    """Pairs from instruction rows: chosen = the row's own answer, rejected = the answer to a question of the same
    kind (its first word: Explain / Give / In) about another topic, drawn from `rows` only (seeded)."""
    rng = random.Random(seed)
    answers: dict[str, list] = {}  # the answers of each topic (a page can repeat a section of another page)
    for row in rows:
        answers.setdefault(row["topic"], []).append(row["completion"])
    pairs = []
    for row in rows:
        kind = row["prompt"][0]["content"].split()[0]
        others = [r for r in rows if r["topic"] != row["topic"] and r["completion"] not in answers[row["topic"]]]
        others = [r for r in others if r["prompt"][0]["content"].split()[0] == kind] or others
        if others:
            pairs.append({"prompt": row["prompt"], "chosen": row["completion"],
                          "rejected": rng.choice(others)["completion"], "reason": "off_topic (recipe)",
                          "source": "python_docs", "topic": row["topic"]})
    return pairs


def load_reward_data(data: str, seed: int = 0, held_out_topics: int = 12) -> tuple[list[dict], list[dict]]:
    """(train_pairs, held_pairs) of prompt/chosen/rejected chat messages plus 'reason' and 'source'.

    preferences: the project's hand-written pairs (train split / validation + test splits held out);
    python_docs: off_topic_pairs() of the SFT instruction set, split by topic (held-out pairs use held-out topics
    only, minus answers that a training topic repeats word for word); names join with '+'; or a JSONL file of prompt/chosen/rejected rows (10% held out, at least one)."""
    if data.endswith(".jsonl"):
        rows = [_as_messages({**r, "source": Path(data).name}) for r in read_rows(data, "reward")]
        if len(rows) < 2:
            raise DataError(f"{Path(data).name}: need at least 2 pairs (one is held out for the held-out accuracy)")
        random.Random(seed).shuffle(rows)
        n_held = max(1, round(0.1 * len(rows)))
        return rows[n_held:], rows[:n_held]
    train, held = [], []
    for name in data.split("+"):
        if name == "preferences":
            splits = load_dataset("preferences")
            train += [_as_messages({**r, "source": name}) for r in splits["train"]]
            held += [_as_messages({**r, "source": name}) for s in ("validation", "test") for r in splits[s]]
        elif name == "python_docs":
            train_rows, held_rows = python_docs_instructions(held_out_topics, seed)
            seen = {r["completion"][0]["content"] for r in train_rows}  # a page can repeat a section of another
            held_rows = [r for r in held_rows if r["completion"][0]["content"] not in seen]
            train += off_topic_pairs(train_rows, seed)
            held += off_topic_pairs(held_rows, seed)
        else:
            raise DataError(f"unknown data '{name}' for reward: give {', '.join(REWARD_DATA)} (joined with '+') "
                            "or a .jsonl file of prompt/chosen/rejected rows")
    return train, held


def load_reward_base(name: str, tokenizer, dtype=None):
    """A sequence-classification model with one output (the reward) on top of `name`; the score head is new
    (random) unless `name` is already a reward model. The pad token tells it where each sequence ends."""
    from trl.trainer.reward_trainer import suppress_seqcls_warning

    with suppress_seqcls_warning():  # no load report about the new score head and the unused lm_head
        model = load_model(name, kind="seq-cls", dtype=dtype, num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model


def _pair_dataset(rows: list[dict]):
    import datasets
    datasets.disable_progress_bars()
    return datasets.Dataset.from_list([{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in rows])


def make_reward_trainer(model, tokenizer, train_rows: list[dict], held_rows: list[dict], output_dir: str | Path,
                        steps: int, batch_size: int = 4, lr: float = 2e-4, peft: str = "lora", lora_r: int = 16,
                        lora_alpha: int = 32, max_length: int = 256, warmup: float = 0.1, seed: int = 0,
                        bf16: bool = False, cpu: bool | None = None, save_steps: int = 0, save_total_limit: int = 2,
                        logging_steps: int | None = None, deepspeed: str | None = None, progress: bool = False):
    """A TRL RewardTrainer (loss -log sigmoid(r_chosen - r_rejected)) with LoRA on every linear layer plus a fully
    trained score head (peft="lora") or full fine-tuning (peft="none"). Pairs longer than max_length are skipped."""
    from peft import LoraConfig
    from trl import RewardConfig, RewardTrainer

    cpu = not torch.cuda.is_available() if cpu is None else cpu
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    config = RewardConfig(
        output_dir=str(output_dir), max_steps=steps, per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=batch_size, learning_rate=lr, lr_scheduler_type="cosine", warmup_steps=warmup,
        max_length=max_length, seed=seed, data_seed=seed, use_cpu=cpu, bf16=bf16,
        save_strategy="steps" if save_steps else "no", save_steps=save_steps or steps,
        save_total_limit=save_total_limit, logging_steps=logging_steps or max(1, min(10, steps // 10)),
        eval_strategy="no", report_to="none", disable_tqdm=not progress, dataloader_num_workers=0,
        deepspeed=deepspeed, ddp_find_unused_parameters=False, activation_checkpointing=False)
    peft_config = None
    if peft == "lora":  # the score head is new: it must train in full, not through a low-rank update
        peft_config = LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=0.0, target_modules="all-linear",
                                 task_type="SEQ_CLS", modules_to_save=["score"])
    trainer = RewardTrainer(model=model, args=config, train_dataset=_pair_dataset(train_rows),
                            eval_dataset=_pair_dataset(held_rows), processing_class=tokenizer,
                            peft_config=peft_config)
    if not progress:
        trainer.remove_callback(transformers.trainer_callback.PrinterCallback)
    return trainer


@torch.no_grad()
def score_pairs(model, tokenizer, rows: list[dict], batch_size: int = 8) -> tuple[list[float], list[float]]:
    """(rewards of the chosen answers, rewards of the rejected ones), each sequence rendered as the trainer does:
    the chat template over prompt + answer (a string pair: prompt + answer + EOS)."""
    def ids(prompt, answer):
        if isinstance(prompt, list):
            return tokenizer.apply_chat_template(prompt + answer, tokenize=True, return_dict=True)["input_ids"]
        return tokenizer(prompt + answer + tokenizer.eos_token)["input_ids"]

    model.eval()
    device = next(model.parameters()).device
    sequences = [ids(r["prompt"], r[side]) for side in ("chosen", "rejected") for r in rows]
    rewards = []
    for start in range(0, len(sequences), batch_size):
        batch = sequences[start:start + batch_size]
        width = max(map(len, batch))  # right padding: the model reads the score at the last non-pad token
        input_ids = torch.tensor([s + [tokenizer.pad_token_id] * (width - len(s)) for s in batch], device=device)
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in batch], device=device)
        rewards += model(input_ids=input_ids, attention_mask=mask).logits[:, 0].float().tolist()
    return rewards[:len(rows)], rewards[len(rows):]


def pairwise_accuracy(chosen: list[float], rejected: list[float], z: float = 1.96) -> tuple[float, float, float]:
    """Share of pairs where the chosen answer scores higher, with a Wilson 95% interval (lower, upper)."""
    wins = sum(c > r for c, r in zip(chosen, rejected, strict=True))
    return wins / len(chosen), *common.wilson(wins, len(chosen), z)


def load_reward_model(folder: str | Path):
    """(reward model, tokenizer) from an `align.py --method reward` output folder."""
    return load_aligned(folder, transformers.AutoModelForSequenceClassification, load_reward_base)


def run_reward(args: argparse.Namespace) -> dict:
    """Reward modelling end to end: pairs, held-out pairwise accuracy with the new (random) head, training,
    held-out accuracy after, save."""
    train_rows, held_rows = load_reward_data(args.data, args.seed, args.held_out_topics)  # checked before the model
    cpu = args.cpu or not torch.cuda.is_available()
    args.bf16 = args.bf16 and bf16_supported("cpu" if cpu else "cuda")
    settings = {k: getattr(args, k) for k in TRAINING_SETTINGS}

    def load(name, tokenizer):
        tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
        return load_reward_base(name, tokenizer)

    output, checkpoint, tokenizer, model = start_run(args, settings, "reward modelling", load, needs_template=False)
    if tokenizer.chat_template is None:  # plain-text pairs: prompt + answer + EOS
        train_rows, held_rows = ([{**r, "prompt": _text(r["prompt"]) + "\n", "chosen": _text(r["chosen"]),
                                   "rejected": _text(r["rejected"])} for r in rs] for rs in (train_rows, held_rows))
    before = pairwise_accuracy(*score_pairs(model, tokenizer, held_rows))
    trainer = make_reward_trainer(model, tokenizer, train_rows, held_rows, output / "checkpoints", args.steps,
                                  args.batch_size, args.lr, args.peft, args.lora_r, args.lora_alpha,
                                  args.max_length, args.warmup, args.seed, args.bf16, cpu, args.save_steps,
                                  args.save_total_limit, deepspeed=args.deepspeed, progress=not args.no_progress)
    result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    chosen, rejected = score_pairs(trainer.model, tokenizer, held_rows)
    after = pairwise_accuracy(chosen, rejected)
    trainable, total = count_parameters(trainer.model)
    done = args.steps - (int(checkpoint.name.split("-")[1]) if checkpoint else 0)
    metrics = dict(method="reward", model=args.model, data=args.data, peft=args.peft, train_pairs=len(train_rows),
                   train_pairs_used=len(trainer.train_dataset), held_out_pairs=len(held_rows), steps=args.steps,
                   trainable_parameters=trainable, total_parameters=total,
                   held_out_accuracy_before=round(before[0], 4), held_out_accuracy_after=round(after[0], 4),
                   held_out_accuracy_ci95=[round(after[1], 4), round(after[2], 4)],
                   resumed_from=checkpoint.name if checkpoint else None, world_size=trainer.args.world_size,
                   seconds_per_step=round(result.metrics["train_runtime"] / max(done, 1), 3))
    metrics["summary"] = (f"reward ({args.peft}) on {args.data}: {args.steps} steps, {trainable:,} of {total:,} "
                          f"weights trained; held-out pairwise accuracy {before[0]:.2f} -> {after[0]:.2f} "
                          f"(n={len(held_rows)}, 95% CI {after[1]:.2f}-{after[2]:.2f}). Saved to {args.output}")
    finish_run(trainer, tokenizer, output, metrics)
    if trainer.is_world_process_zero():
        with open(output / "held_out_scores.jsonl", "w") as f:
            for row, c, r in zip(held_rows, chosen, rejected, strict=True):
                f.write(json.dumps({"reason": row["reason"], "source": row["source"], "chosen_reward": round(c, 4),
                                    "rejected_reward": round(r, 4)}) + "\n")
    return metrics


def _text(turns) -> str:
    return turns if isinstance(turns, str) else "\n".join(m["content"] for m in turns)
