"""Direct preference optimisation (DPO) on (prompt, chosen, rejected) pairs: `align.py --method dpo`.

DPO trains the policy so that the implied reward r = beta * (log pi(answer) - log ref(answer)) of the chosen answer
beats that of the rejected one, against a frozen reference (with LoRA: the same model with the adapter switched
off). TRL's DPOTrainer does the training; the loss is also written out from scratch here (completion_logps,
dpo_loss), and own_dpo_loss and trl_dpo_loss put the same batch through both. The command line, the checks of
JSONL rows and the bookkeeping of a run (settings, checkpoints, metrics.json) are align.py's.

Python API (import it from fine-tuning/):
  load_pair_data(data, seed=0) -> (train_rows, held_rows)   preference pairs as chat messages
  make_dpo_trainer(model, tokenizer, train_rows, held_rows, output_dir, steps, ..., beta=0.1) -> trl.DPOTrainer
  dpo_batch(trainer, indices) / completion_logps(model, batch) / dpo_loss(...)   the DPO loss from scratch
  own_dpo_loss(trainer, batch), trl_dpo_loss(trainer, batch)  the same batch through both (they agree to 1e-5)
  held_out_logps(trainer) -> logps; reward_stats(logps, beta) -> accuracy, margin, rewards
"""

from __future__ import annotations

import argparse
import contextlib
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
    read_rows,
    start_run,
)

from common import load_dataset


def as_chat_pair(row: dict) -> dict:
    """A preference row in TRL's conversational form: the prompt as a user turn, each answer as an assistant turn."""
    if isinstance(row["prompt"], list):  # already message lists (check_pair_row made sure all three are)
        return {k: row[k] for k in ("prompt", "chosen", "rejected")}
    return {"prompt": [{"role": "user", "content": row["prompt"]}],
            "chosen": [{"role": "assistant", "content": row["chosen"]}],
            "rejected": [{"role": "assistant", "content": row["rejected"]}]}


def load_pair_data(data: str, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(train_rows, held_rows) of chat pairs: `preferences` (its train / test splits) or a JSONL file (10% held out)."""
    if data == "preferences":
        splits = load_dataset("preferences")
        return [as_chat_pair(r) for r in splits["train"]], [as_chat_pair(r) for r in splits["test"]]
    if not data.endswith(".jsonl"):
        raise DataError(f"unknown data '{data}': give preferences or a .jsonl file of prompt/chosen/rejected rows")
    rows = [as_chat_pair(r) for r in read_rows(data, "dpo")]
    if len(rows) < 2:
        raise DataError(f"{Path(data).name}: need at least 2 rows (one is held out for the held-out rewards)")
    random.Random(seed).shuffle(rows)
    n_held = max(1, round(0.1 * len(rows)))
    return rows[n_held:], rows[:n_held]


def make_dpo_trainer(model, tokenizer, train_rows: list[dict], held_rows: list[dict], output_dir: str | Path,
                     steps: int, batch_size: int = 4, lr: float = 2e-4, beta: float = 0.1, peft: str = "lora",
                     lora_r: int = 16, lora_alpha: int = 32, max_length: int = 256, warmup: float = 0.1,
                     seed: int = 0, bf16: bool = False, cpu: bool | None = None, save_steps: int = 0,
                     save_total_limit: int = 2, logging_steps: int | None = None, deepspeed: str | None = None,
                     progress: bool = False):
    """A TRL DPOTrainer (sigmoid loss, strength `beta`) with LoRA on every linear layer (peft="lora": the reference
    is the same model with the adapter switched off) or full fine-tuning (peft="none": a frozen copy is the
    reference), cosine schedule, and resumable checkpoints every `save_steps` (0: none)."""
    import copy

    import datasets
    from peft import LoraConfig
    from trl import DPOConfig, DPOTrainer

    datasets.disable_progress_bars()  # the tokenizing bars would fill a notebook
    cpu = not torch.cuda.is_available() if cpu is None else cpu
    config = DPOConfig(
        output_dir=str(output_dir), max_steps=steps, per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=batch_size, learning_rate=lr, lr_scheduler_type="cosine", warmup_steps=warmup,
        beta=beta, loss_type="sigmoid", max_length=max_length, seed=seed, data_seed=seed, use_cpu=cpu, bf16=bf16,
        save_strategy="steps" if save_steps else "no", save_steps=save_steps or steps,
        save_total_limit=save_total_limit, logging_steps=logging_steps or max(1, min(10, steps // 10)),
        eval_strategy="no", report_to="none", disable_tqdm=not progress, dataloader_num_workers=0,
        deepspeed=deepspeed, ddp_find_unused_parameters=False,
        activation_checkpointing=False)  # TRL turns it on by default; a 135M model fits without recomputing
    peft_config, ref_model = None, None
    if peft == "lora":
        peft_config = LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=0.05, target_modules="all-linear",
                                 task_type="CAUSAL_LM")
    else:  # TRL would reload the reference from the model's Hub id or path; a copy also works for tiny-* models
        ref_model = copy.deepcopy(model).eval().requires_grad_(False)
    trainer = DPOTrainer(model=model, ref_model=ref_model, args=config,
                         train_dataset=datasets.Dataset.from_list(train_rows),
                         eval_dataset=datasets.Dataset.from_list(held_rows), processing_class=tokenizer,
                         peft_config=peft_config)
    if not progress:  # no bar and no printed log dicts; the numbers stay in trainer.state.log_history
        trainer.remove_callback(transformers.trainer_callback.PrinterCallback)
    return trainer


@contextlib.contextmanager
def reference_model(trainer):
    """The frozen reference policy of a DPO trainer: its ref_model, or with LoRA the model with the adapter off."""
    if trainer.ref_model is not None:
        yield trainer.ref_model
    else:
        with trainer.model.disable_adapter():
            yield trainer.model


def completion_logps(model, batch: dict) -> torch.Tensor:
    """log p(completion | prompt) of each sequence in a DPO batch: the sum of the log-probabilities of its
    completion tokens (each token is predicted from the position before it, hence the shift by one)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
    log_probs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    token_logps = log_probs.gather(-1, batch["input_ids"][:, 1:, None]).squeeze(-1)
    return (token_logps * batch["completion_mask"][:, 1:]).sum(dim=1)


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The DPO loss -log sigmoid(r_chosen - r_rejected), mean over pairs, with the implied rewards
    r = beta * (log pi(answer) - log ref(answer)) of the chosen and of the rejected answers."""
    chosen_rewards = beta * (policy_chosen - ref_chosen)
    rejected_rewards = beta * (policy_rejected - ref_rejected)
    return -torch.nn.functional.logsigmoid(chosen_rewards - rejected_rewards).mean(), chosen_rewards, rejected_rewards


def dpo_batch(trainer, indices: list[int], split: str = "train") -> dict:
    """One padded batch as the trainer builds it: the chosen sequences first, then the rejected ones."""
    dataset = trainer.train_dataset if split == "train" else trainer.eval_dataset
    batch = trainer.data_collator([dataset[i] for i in indices])
    return {k: v.to(trainer.model.device) for k, v in batch.items()}


def own_dpo_loss(trainer, batch: dict) -> torch.Tensor:
    """The DPO loss of `batch` from scratch: four sequence log-probabilities, then dpo_loss."""
    with torch.no_grad():
        policy_chosen, policy_rejected = completion_logps(trainer.model, batch).chunk(2)
        with reference_model(trainer) as ref:
            ref_chosen, ref_rejected = completion_logps(ref, batch).chunk(2)
    return dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, trainer.args.beta)[0]


def trl_dpo_loss(trainer, batch: dict) -> torch.Tensor:
    """TRL's own loss on the same batch (DPOTrainer.compute_loss), without leaving its metrics in the next log."""
    mode = "train" if trainer.model.training else "eval"
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, batch)
    trainer._metrics[mode].clear()  # compute_loss appends rewards/... for the next logged line; this was no step
    return loss


@torch.no_grad()
def held_out_logps(trainer, batch_size: int = 4) -> dict[str, list[float]]:
    """Sequence log-probabilities of every held-out pair under the policy and the reference."""
    was_training = trainer.model.training
    trainer.model.eval()
    out: dict[str, list[float]] = {"policy_chosen": [], "policy_rejected": [], "ref_chosen": [], "ref_rejected": []}
    for start in range(0, len(trainer.eval_dataset), batch_size):
        batch = dpo_batch(trainer, list(range(start, min(start + batch_size, len(trainer.eval_dataset)))), "eval")
        for name, logps in zip(("policy", "ref"), _policy_and_ref(trainer, batch), strict=True):
            chosen, rejected = logps.chunk(2)
            out[f"{name}_chosen"] += chosen.tolist()
            out[f"{name}_rejected"] += rejected.tolist()
    trainer.model.train(was_training)
    return out


def _policy_and_ref(trainer, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    policy = completion_logps(trainer.model, batch)
    with reference_model(trainer) as ref:
        return policy, completion_logps(ref, batch)


def reward_stats(logps: dict[str, list[float]], beta: float) -> dict[str, float]:
    """Implied-reward accuracy (share of pairs with r_chosen > r_rejected) and mean margin, plus how often the
    reference (before DPO) and the policy (after) give the chosen answer the higher log-probability."""
    t = {k: torch.tensor(v) for k, v in logps.items()}
    chosen = beta * (t["policy_chosen"] - t["ref_chosen"])
    rejected = beta * (t["policy_rejected"] - t["ref_rejected"])
    return {"reward_accuracy": (chosen > rejected).float().mean().item(),
            "reward_margin": (chosen - rejected).mean().item(),
            "chosen_reward": chosen.mean().item(), "rejected_reward": rejected.mean().item(),
            "ref_prefers_chosen": (t["ref_chosen"] > t["ref_rejected"]).float().mean().item(),
            "policy_prefers_chosen": (t["policy_chosen"] > t["policy_rejected"]).float().mean().item()}


def run_dpo(args: argparse.Namespace) -> dict:
    """DPO end to end: pairs, training against the frozen reference, implied rewards on held-out pairs, save."""
    data = args.data
    if args.beta <= 0:
        raise DataError(f"--beta must be above 0 (got {args.beta}); 0.1 is the usual start")
    train_rows, held_rows = load_pair_data(data, args.seed)  # checked before the model is loaded
    cpu = args.cpu or not torch.cuda.is_available()
    args.bf16 = args.bf16 and bf16_supported("cpu" if cpu else "cuda")
    settings = {k: getattr(args, k) for k in TRAINING_SETTINGS} | {"data": data, "beta": args.beta}
    output, checkpoint, tokenizer, model = start_run(args, settings, "DPO on chat pairs")
    trainer = make_dpo_trainer(model, tokenizer, train_rows, held_rows, output / "checkpoints", args.steps,
                               args.batch_size, args.lr, args.beta, args.peft, args.lora_r, args.lora_alpha,
                               args.max_length, args.warmup, args.seed, args.bf16, cpu, args.save_steps,
                               args.save_total_limit, deepspeed=args.deepspeed, progress=not args.no_progress)
    result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    held = reward_stats(held_out_logps(trainer, args.batch_size), args.beta)
    trainable, total = count_parameters(trainer.model)
    done = args.steps - (int(checkpoint.name.split("-")[1]) if checkpoint else 0)
    train_log = [r for r in trainer.state.log_history if "rewards/margins" in r]
    metrics = dict(method="dpo", model=args.model, data=data, peft=args.peft, beta=args.beta,
                   train_rows=len(train_rows), held_out_rows=len(held_rows), steps=args.steps,
                   trainable_parameters=trainable, total_parameters=total,
                   train_margin_last=round(train_log[-1]["rewards/margins"], 4) if train_log else None,
                   **{f"held_out_{k}": round(v, 4) for k, v in held.items()},
                   resumed_from=checkpoint.name if checkpoint else None, world_size=trainer.args.world_size,
                   seconds_per_step=round(result.metrics["train_runtime"] / max(done, 1), 3))
    metrics["summary"] = (f"dpo ({args.peft}, beta {args.beta}) on {data}: {args.steps} steps, {trainable:,} of "
                          f"{total:,} weights trained; held-out implied-reward accuracy {held['reward_accuracy']:.2f}, "
                          f"margin {held['reward_margin']:+.3f}; prefers the chosen answer {held['ref_prefers_chosen']:.2f}"
                          f" -> {held['policy_prefers_chosen']:.2f}. Saved to {args.output}")
    finish_run(trainer, tokenizer, output, metrics)
    return metrics
