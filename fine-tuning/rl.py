"""Online reinforcement learning from a reward model (RLHF) with TRL's GRPO or RLOO: `align.py --method rl`.

The policy writes several answers to each prompt, a reward model scores them, and each answer is pushed up or down
by how much it beat the other answers to the same prompt (GRPO: (r - group mean) / group std; RLOO: r - mean of the
others), with a KL penalty (--beta) that keeps the policy near the model it started from. PPO's clipped objective
(ppo_clip_loss below) limits how far one update moves the probability of an answer.

Prompts (--data): `rotten_tomatoes` (the default for rl: "Continue this movie review with one sentence: <the first
four words of a review>"; held-out prompts come from validation reviews), `python_docs` (the SFT instructions of
align.py, held-out topics kept apart) or a JSONL file of {"prompt": "..."} rows (a string or a message list).
The reward (--reward-model FOLDER): any sequence-classification model folder, e.g. a sentiment classifier from
finetune_classifier.py (reward = P(--reward-label)) or a reward model from `align.py --method reward` (its score).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import torch
import transformers
from align import (
    CHECKS,
    TRAINING_SETTINGS,
    DataError,
    _check_turns,
    count_parameters,
    finish_run,
    python_docs_instructions,
    read_rows,
    start_run,
)

from common import load_dataset


def ppo_clip_loss(logp_new: torch.Tensor, logp_old: torch.Tensor, advantage: torch.Tensor,
                  epsilon: float = 0.2) -> torch.Tensor:
    """PPO's clipped surrogate (to minimise): -min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A), per token.

    ratio = p_new / p_old of the sampled token. Once an update has moved the ratio past 1 + eps for a good answer
    (A > 0) or below 1 - eps for a bad one (A < 0), the clipped term is the minimum and its gradient is zero: one
    batch cannot push an answer's probability arbitrarily far. TRL's GRPO and RLOO use this same term."""
    ratio = torch.exp(logp_new - logp_old)
    return -torch.min(ratio * advantage, ratio.clamp(1 - epsilon, 1 + epsilon) * advantage)


def group_advantages(rewards: torch.Tensor, method: str = "grpo") -> torch.Tensor:
    """Advantages of a (prompts, answers) reward table: GRPO normalises within each prompt's group, RLOO subtracts
    the mean of the other answers to the same prompt (leave one out). No value network in either."""
    if method == "grpo":
        return (rewards - rewards.mean(1, keepdim=True)) / (rewards.std(1, keepdim=True) + 1e-4)
    k = rewards.shape[1]
    return rewards - (rewards.sum(1, keepdim=True) - rewards) / (k - 1)


def check_prompt_row(row, number: int, name: str, kind: str | None = None) -> dict:
    """One RL row {"prompt": ...}: the policy writes the answer itself, so a row holds only the prompt."""
    if not isinstance(row, dict) or "prompt" not in row:
        raise DataError(f"{name} row {number}: expected a JSON object with a 'prompt' field")
    _check_turns(row["prompt"], number, "prompt", name)
    prompt = row["prompt"]
    return {"prompt": [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt}


CHECKS["rl"] = check_prompt_row
REVIEW_TASK = "Continue this movie review with one sentence: \"{opening}\""


def review_prompts(n: int, split: str = "train", words: int = 4, seed: int = 0) -> list[dict]:
    """Chat prompts asking to continue the first `words` words of Rotten Tomatoes reviews (seeded sample)."""
    texts = load_dataset("rotten_tomatoes")[split].shuffle(seed=seed)["text"][:n]
    return [{"prompt": [{"role": "user", "content": REVIEW_TASK.format(opening=" ".join(t.split()[:words]))}]}
            for t in texts]


def _as_prompt(prompt) -> list[dict]:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt


def load_rl_prompts(data: str, seed: int = 0, n_held: int = 32, held_out_topics: int = 12
                    ) -> tuple[list[dict], list[dict]]:
    """(train_rows, held_rows) of {"prompt": messages}: rotten_tomatoes openings (train vs validation reviews),
    python_docs instructions (held-out topics) or a JSONL file (a tenth held out, at most n_held)."""
    if data == "rotten_tomatoes":
        return review_prompts(2000, "train", seed=seed), review_prompts(n_held, "validation", seed=seed)
    if data == "python_docs":
        train, held = python_docs_instructions(held_out_topics, seed)
        return ([{"prompt": _as_prompt(r["prompt"])} for r in rows] for rows in (train, held))
    if not data.endswith(".jsonl"):
        raise DataError(f"unknown data '{data}' for rl: give rotten_tomatoes, python_docs or a .jsonl file of "
                        "'prompt' rows")
    rows = read_rows(data, "rl")
    if len(rows) < 2:
        raise DataError(f"{Path(data).name}: need at least 2 prompts (one is held out)")
    random.Random(seed).shuffle(rows)
    n_held = min(n_held, max(1, len(rows) // 10))
    return rows[n_held:], rows[:n_held]


class RewardModel:
    """Scores answers with a sequence-classification model: P(label) of a classifier with several labels (e.g. a
    sentiment model from finetune_classifier.py, which reads the answer alone), or the score of a one-output reward
    model from `align.py --method reward` (which reads prompt and answer in its chat template)."""

    def __init__(self, folder: str | Path, label: str | None = None, max_length: int = 256):
        folder = Path(folder)
        if not (folder / "config.json").exists() and not (folder / "adapter_config.json").exists():
            raise DataError(f"reward model folder {folder} has no model (train one with finetune_classifier.py or "
                            "align.py --method reward)")
        settings = folder / "settings.json"
        self.chat = settings.exists() and json.loads(settings.read_text()).get("method") == "reward"
        if self.chat:
            from reward import load_reward_model
            self.model, self.tokenizer = load_reward_model(folder)
        else:
            self.model = transformers.AutoModelForSequenceClassification.from_pretrained(folder)
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
        self.model.eval()
        names = [self.model.config.id2label[i] for i in range(self.model.config.num_labels)]
        if len(names) > 1 and label not in names:
            raise DataError(f"--reward-label must be one of the reward model's labels: {', '.join(names)}")
        self.index = names.index(label) if len(names) > 1 else None
        self.max_length = max_length
        self.__name__ = "reward_model"  # TRL names the logged reward after the function

    @torch.no_grad()
    def score(self, answers: list[str], prompts: list | None = None) -> list[float]:
        """Rewards of answers (to prompts, for a chat reward model)."""
        if self.chat:
            texts = [self.tokenizer.apply_chat_template(_as_prompt(p) + [{"role": "assistant", "content": a}],
                                                        tokenize=False) for p, a in zip(prompts, answers, strict=True)]
        else:
            texts = answers
        side, self.tokenizer.padding_side = self.tokenizer.padding_side, "right"
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt",
                               add_special_tokens=not self.chat).to(self.model.device)
        self.tokenizer.padding_side = side
        logits = self.model(**batch).logits.float()
        return (logits[:, 0] if self.index is None else logits.softmax(-1)[:, self.index]).tolist()

    def __call__(self, prompts, completions, **kwargs) -> list[float]:  # TRL's reward-function signature
        return self.score([c[-1]["content"] if isinstance(c, list) else c for c in completions], prompts)


def make_rl_trainer(model, tokenizer, rows: list[dict], reward, output_dir: str | Path, steps: int,
                    algorithm: str = "grpo", generations: int = 4, prompts_per_step: int = 4,
                    max_new_tokens: int = 24, lr: float = 2e-4, beta: float = 0.04, peft: str = "lora",
                    lora_r: int = 16, lora_alpha: int = 32, seed: int = 0, cpu: bool | None = None,
                    save_steps: int = 0, save_total_limit: int = 2, deepspeed: str | None = None,
                    progress: bool = False):
    """A TRL GRPOTrainer or RLOOTrainer: each step samples `generations` answers to `prompts_per_step` prompts,
    scores them with `reward`, and moves the policy towards the answers that beat their group's average, with a
    KL penalty `beta` to the starting model."""
    import datasets
    from peft import LoraConfig
    from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

    datasets.disable_progress_bars()
    Config, Trainer = {"grpo": (GRPOConfig, GRPOTrainer), "rloo": (RLOOConfig, RLOOTrainer)}[algorithm]
    cpu = not torch.cuda.is_available() if cpu is None else cpu
    config = Config(
        output_dir=str(output_dir), max_steps=steps, per_device_train_batch_size=generations * prompts_per_step,
        num_generations=generations, max_completion_length=max_new_tokens, learning_rate=lr, beta=beta,
        temperature=1.0, seed=seed, data_seed=seed, use_cpu=cpu, bf16=False, logging_steps=1,
        save_strategy="steps" if save_steps else "no", save_steps=save_steps or steps,
        save_total_limit=save_total_limit, report_to="none", disable_tqdm=not progress, deepspeed=deepspeed,
        activation_checkpointing=False)
    peft_config = None
    if peft == "lora":
        peft_config = LoraConfig(r=lora_r, lora_alpha=lora_alpha, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = Trainer(model=model, reward_funcs=reward, args=config, processing_class=tokenizer,
                      train_dataset=datasets.Dataset.from_list(rows), peft_config=peft_config)
    if not progress:
        trainer.remove_callback(transformers.trainer_callback.PrinterCallback)
    return trainer


@torch.no_grad()
def sample_answers(model, tokenizer, rows: list[dict], max_new_tokens: int = 24, samples: int = 1, seed: int = 0,
                   batch_size: int = 16) -> list[list[str]]:
    """`samples` answers per prompt row, sampled at temperature 1 as in training (seeded, so runs compare)."""
    model.eval()
    torch.manual_seed(seed)
    side, tokenizer.padding_side = tokenizer.padding_side, "left"  # generation continues from the right end
    answers = []
    for start in range(0, len(rows), batch_size):
        texts = [tokenizer.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=False)
                 for r in rows[start:start + batch_size]]
        inputs = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=True, temperature=1.0, top_k=0,
                             top_p=1.0, num_return_sequences=samples,
                             pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
        texts = tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        answers += [texts[i:i + samples] for i in range(0, len(texts), samples)]
    tokenizer.padding_side = side
    return answers


def mean_reward(reward: RewardModel, rows: list[dict], answers: list[list[str]]) -> list[float]:
    """The mean reward of each prompt's sampled answers."""
    scores = [reward.score(a, [r["prompt"]] * len(a)) for r, a in zip(rows, answers, strict=True)]
    return [sum(s) / len(s) for s in scores]


RL_SETTINGS = ("reward_model", "reward_label", "algorithm", "generations", "max_new_tokens", "beta")


def run_rl(args: argparse.Namespace) -> dict:
    """RL end to end: prompts, held-out reward before (sampled), GRPO/RLOO training, held-out reward after, save."""
    train_rows, held_rows = load_rl_prompts(args.data, args.seed, args.eval_prompts, args.held_out_topics)
    if not args.reward_model:
        raise DataError("--method rl needs --reward-model FOLDER: a classifier from finetune_classifier.py or a "
                        "reward model from align.py --method reward")
    reward = RewardModel(args.reward_model, args.reward_label)
    cpu = args.cpu or not torch.cuda.is_available()
    settings = {k: getattr(args, k) for k in TRAINING_SETTINGS + RL_SETTINGS}
    output, checkpoint, tokenizer, model = start_run(args, settings, "RL on chat prompts")
    before = mean_reward(reward, held_rows, sample_answers(model, tokenizer, held_rows, args.max_new_tokens, 2,
                                                           args.seed))
    trainer = make_rl_trainer(model, tokenizer, train_rows, reward, output / "checkpoints", args.steps,
                              args.algorithm, args.generations, max(1, args.batch_size // args.generations),
                              args.max_new_tokens, args.lr, args.beta, args.peft, args.lora_r, args.lora_alpha,
                              args.seed, cpu, args.save_steps, args.save_total_limit, args.deepspeed,
                              progress=not args.no_progress)
    result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    after = mean_reward(reward, held_rows, sample_answers(trainer.model, tokenizer, held_rows, args.max_new_tokens, 2,
                                                          args.seed))
    trainable, total = count_parameters(trainer.model)
    done = args.steps - (int(checkpoint.name.split("-")[1]) if checkpoint else 0)
    b, a = sum(before) / len(before), sum(after) / len(after)
    kl = [r["kl"] for r in trainer.state.log_history if "kl" in r]
    metrics = dict(method="rl", algorithm=args.algorithm, model=args.model, data=args.data, peft=args.peft,
                   reward_model=Path(args.reward_model).name, train_prompts=len(train_rows),
                   held_out_prompts=len(held_rows), steps=args.steps, trainable_parameters=trainable,
                   total_parameters=total, held_out_reward_before=round(b, 4), held_out_reward_after=round(a, 4),
                   final_kl=round(kl[-1], 4) if kl else None, resumed_from=checkpoint.name if checkpoint else None,
                   world_size=trainer.args.world_size,
                   seconds_per_step=round(result.metrics["train_runtime"] / max(done, 1), 3))
    metrics["summary"] = (f"rl ({args.algorithm}, {args.peft}) on {args.data}: {args.steps} steps; held-out reward "
                          f"{b:.3f} -> {a:.3f} (mean of 2 sampled answers to {len(held_rows)} prompts). "
                          f"Saved to {args.output}")
    finish_run(trainer, tokenizer, output, metrics)
    return metrics
