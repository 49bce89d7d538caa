"""Align a chat model with TRL, one method per switch: SFT, reward modelling, DPO and online RL (GRPO/RLOO).

Examples:
  python fine-tuning/align.py --method sft --output runs/sft              # Python-docs instructions, LoRA
  python fine-tuning/align.py --method sft --peft none --lr 2e-5 --output runs/sft-full
  python fine-tuning/align.py --method sft --data chats.jsonl --output runs/my-sft   # your own chats
  python fine-tuning/align.py --method sft --data pairs.jsonl --output runs/my-sft   # prompt/completion rows
  python fine-tuning/align.py --method sft --model HuggingFaceTB/SmolLM2-360M-Instruct --output runs/sft-360m
  python fine-tuning/align.py --method sft --steps 200 --save-steps 50 --output runs/sft
  python fine-tuning/align.py --method sft --steps 200 --save-steps 50 --output runs/sft --resume
  torchrun --nproc_per_node 2 fine-tuning/align.py --method sft --cpu --output runs/sft-ddp
  accelerate launch --multi_gpu --num_processes 2 fine-tuning/align.py --method sft --cpu --output runs/sft-ddp
  deepspeed --num_gpus 2 fine-tuning/align.py --method sft --deepspeed ds_zero2.json --output runs/sft-ds
  python fine-tuning/align.py --method dpo --output runs/dpo              # preference pairs, LoRA, beta 0.1
  python fine-tuning/align.py --method dpo --data my_pairs.jsonl --beta 0.3 --output runs/my-dpo
  python fine-tuning/align.py --method dpo --model runs/sft-full --peft none --lr 5e-6 --output runs/dpo-full
  python fine-tuning/finetune_classifier.py --max-steps 100 --max-length 64 --output runs/sentiment-rm
  python fine-tuning/align.py --method rl --reward-model runs/sentiment-rm --output runs/rl   # positive reviews
  python fine-tuning/align.py --method rl --algorithm rloo --reward-model runs/sentiment-rm --output runs/rloo
  python fine-tuning/align.py --method rl --data python_docs --reward-model runs/rm --output runs/rl-docs
  python fine-tuning/align.py --method reward --data preferences+python_docs --output runs/rm   # reward model
  python fine-tuning/align.py --method reward --data my_pairs.jsonl --peft none --lr 2e-5 --output runs/my-rm
  python fine-tuning/align.py --method reward --steps 200 --save-steps 50 --output runs/rm --resume

--data is `python_docs` (default: an instruction set built from the Python language reference by
python_docs_instructions(), split by topic so held-out prompts are about topics never trained on) or a JSONL
file with one of two row formats (the first row decides; every row is checked before a model is loaded, and a
bad row stops the run with one line naming the row and the field):
  {"messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]}
  {"prompt": "...", "completion": "..."}        (strings, or lists of messages as above)
A chat is split into prompt (every turn but the last) and completion (the last, assistant turn); the loss covers
the completion only (TRL `completion_only_loss`), so the model learns to answer, not to write questions. 10% of
the rows (at least one) are held out for the held-out loss.

The output folder holds the model (with --peft lora: the LoRA adapter; reload with load_aligned(folder)), the
tokenizer, metrics.json (held-out loss before and after), log_history.json, settings.json and, with
--save-steps, checkpoints/ that --resume continues from. TRL's SFTTrainer is a transformers Trainer, so the run
works under torchrun, `accelerate launch` (on CPU: --multi_gpu --num_processes N; `--cpu` alone silently runs
one process) and the deepspeed launcher with --deepspeed CONFIG.

--method dpo trains on preference pairs: --data `preferences` (the default for dpo: 60 written pairs, train 41 /
test 13 held out) or a JSONL file of {"prompt": "...", "chosen": "...", "rejected": "..."} rows (strings, or
message lists for all three; 10% held out). The reference is the model with the LoRA adapter switched off (with
--peft none: a frozen copy). metrics.json holds the held-out implied-reward accuracy and margin, and how often the
reference and the trained policy give the chosen answer the higher log-probability.

--method reward trains a reward model (the model with a one-output score head, LoRA plus the full head by
default) on pairs with TRL's RewardTrainer: --data `python_docs` (off-topic pairs: a question's documentation
answer vs the answer to a same-kind question about another topic, split by topic), `preferences` (train 41 /
validation + test 19 held out), both as `preferences+python_docs`, or a JSONL file of pairs as for dpo (10% held
out). metrics.json holds the held-out pairwise accuracy (chosen scored above rejected) before (random head) and
after, with a Wilson 95% interval; held_out_scores.jsonl the reward of every held-out answer. Pairs longer than
--max-length are skipped, not cut. Reload with load_reward_model(folder).

--method rl samples --generations answers to each prompt, scores them with --reward-model (any sequence-classification
folder: a classifier from finetune_classifier.py gives P(--reward-label); a reward model from --method reward its
score) and trains with TRL's GRPOTrainer (--algorithm rloo: RLOOTrainer), KL penalty --beta (default 0.04) to the
starting model. --data `rotten_tomatoes` (the default for rl: continue the opening words of a review), `python_docs`
(the SFT instructions) or a JSONL file of {"prompt": "..."} rows. metrics.json holds the mean reward of 2 sampled
answers to each of --eval-prompts held-out prompts, before and after. The code is in rl.py.

Python API (import it from fine-tuning/, e.g. `from align import python_docs_instructions, make_sft_trainer`):
  METHODS                                        {"sft": run_sft, "dpo": run_dpo, "reward": run_reward, "rl": run_rl}
  python_docs_instructions(held_out_topics=12, seed=0) -> (train_rows, held_rows)  rows: prompt, completion, topic
  read_rows(path) -> rows                         JSONL messages or prompt/completion, checked (DataError)
  load_sft_data(data, seed=0) -> (train_rows, held_rows)
  make_sft_trainer(model, tokenizer, train_rows, held_rows, output_dir, steps, ...) -> trl.SFTTrainer
  loss_mask(trainer, index=0) -> [(token, counted)]  which tokens of a training row carry loss
  generate_answers(model, tokenizer, prompts, max_new_tokens=64) -> [str]   greedy
  load_aligned(folder) -> (model, tokenizer)
The other methods live next to this file, each building on it: dpo.py (make_dpo_trainer, the DPO loss from
scratch), reward.py (make_reward_trainer, score_pairs, load_reward_model) and rl.py (GRPO / RLOO).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import re
import shutil
import sys
import warnings
from pathlib import Path

import torch
import transformers
from finetune_lm import DataError, bf16_supported, check_messages, count_parameters, last_checkpoint

import common
from common import SMOLLM2, ModelNotAvailable, load_dataset, load_model, load_tokenizer, seed_everything

warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated")  # peft 0.21 uses the old name
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

# ------------------------------------------------------------------------- data: the Python-docs recipe

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"(])")


def _paragraphs(text: str) -> list[str]:
    return [p for p in text.split("\n\n") if p.strip()]


def _is_prose(par: str) -> bool:
    """A paragraph of running text: not indented (grammar, code), not a heading, ends like a sentence."""
    lines = par.strip("\n").split("\n")
    if par.startswith(" ") or (len(lines) > 1 and set(lines[-1]) <= set("=-*")):
        return False
    return par.rstrip().endswith((".", ":")) and len(par) >= 40


def _sentences(par: str) -> list[str]:
    flat = " ".join(par.split())
    return [s for s in _SENTENCE_END.split(flat) if s]


def _explanation(pars: list[str], max_sentences: int = 2) -> str:
    """The first sentences of the running text; a sentence that introduces a block (ends with ':') ends it."""
    out: list[str] = []
    for par in pars:
        if not _is_prose(par):
            if out:
                break
            continue
        for sentence in _sentences(par):
            if sentence.endswith(":"):
                out.append(sentence[:-1] + ".")
                return " ".join(out[:max_sentences])
            out.append(sentence)
            if len(out) == max_sentences:
                return " ".join(out)
    return " ".join(out)


def _example(pars: list[str], max_lines: int = 10) -> str | None:
    """The first interactive example (a '>>>' block) with the sentence that introduces it, if the text has one."""
    for i, par in enumerate(pars):
        if par.lstrip().startswith(">>>"):
            lines = [line[3:] if line.startswith("   ") else line for line in par.split("\n")][:max_lines]
            before = _sentences(pars[i - 1]) if i and _is_prose(pars[i - 1]) else ["For example:"]
            intro = " ".join(before[-2:]) if len(before[-1]) < 25 else before[-1]  # "So:" needs its context
            return intro.rstrip(".:") + ":\n\n" + "\n".join(lines).strip("\n")
    return None


def _sections(text: str) -> list[tuple[str, list[str]]]:
    """(heading, paragraphs) of the sub-sections underlined with '=' or '-'."""
    pars, out = _paragraphs(text), []
    for i, par in enumerate(pars):
        lines = par.strip("\n").split("\n")
        if len(lines) == 2 and set(lines[1]) <= set("=-") and len(lines[1]) >= 3:
            out.append((lines[0].strip(), pars[i + 1:]))
    return out


def _subject(title: str) -> str:
    """'The "assert" statement' -> 'the "assert" statement', 'Coroutines' -> 'coroutines'; 'NaN' stays."""
    return title[0].lower() + title[1:] if title[1:2].islower() or title[1:2] == " " else title


def topic_keyword(title: str) -> str:
    """The word an answer about `title` should mention: a quoted name, else its first word after an article."""
    quoted = re.findall(r'"([^"]+)"', title)
    words = [w for w in re.findall(r"[A-Za-z_]+", title) if w.lower() not in ("the", "a", "an")]
    return (quoted[0] if quoted else words[0]).lower()


def topic_instructions(topic: str, text: str, max_sections: int = 3) -> list[dict]:
    """The instruction-response pairs of one documentation topic, every response copied from its text.

    Recipe: (1) "Explain <title> in Python in two sentences." -> the first two sentences of its running text;
    (2) "Give an example of <title> in Python." -> its first '>>>' example with the sentence before it, only if
    it has one; (3) "In Python, what is <heading>?" for up to `max_sections` sub-section headings -> the first two
    sentences under that heading. Pairs whose response is shorter than 40 characters or repeats an earlier one are dropped."""
    pars = _paragraphs(text)
    title = pars[0].split("\n")[0].strip()
    subject = _subject(title)
    pairs = [(f"Explain {subject} in Python in two sentences.", _explanation(pars[1:]))]
    example = _example(pars)
    if example:
        pairs.append((f"Give an example of {subject} in Python.", example))
    for heading, rest in _sections(text)[:max_sections]:
        pairs.append((f"In Python, what is {_subject(heading)}? Answer in two sentences.", _explanation(rest)))
    answers: set[str] = set()  # a first sub-section often repeats the opening sentences: keep one pair
    rows = []
    for q, a in pairs:
        if len(a) >= 40 and a not in answers:
            answers.add(a)
            rows.append({"prompt": [{"role": "user", "content": q}], "completion": [{"role": "assistant", "content": a}],
                         "topic": topic, "title": title})
    return rows


def python_docs_instructions(held_out_topics: int = 12, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Instruction pairs from common.load_dataset("python_docs"), split by topic (seeded).

    Topics whose page has the same title as an earlier one (e.g. 'else' and 'if' are one page) are kept once, and
    training rows whose answer is also a held-out answer (different pages can share a paragraph) are dropped, so
    no held-out answer is trained on. Returns (train_rows, held_rows)."""
    docs, seen = [], set()
    for row in load_dataset("python_docs")["train"]:
        title = row["text"].split("\n")[0].strip()
        if title not in seen:
            seen.add(title)
            docs.append(row)
    order = list(range(len(docs)))
    random.Random(seed).shuffle(order)
    held = set(order[:held_out_topics])
    train, held_rows = [], []
    for i, row in enumerate(docs):
        (held_rows if i in held else train).extend(topic_instructions(row["topic"], row["text"]))
    held_answers = {r["completion"][0]["content"] for r in held_rows}
    return [r for r in train if r["completion"][0]["content"] not in held_answers], held_rows


# ---------------------------------------------------------------------------- data: user JSONL files

def _check_turns(value, number: int, field: str, name: str) -> None:
    if isinstance(value, str):
        if not value.strip():
            raise DataError(f"{name} row {number}: '{field}' is an empty string")
        return
    if not isinstance(value, list) or not value:
        raise DataError(f"{name} row {number}: '{field}' must be a string or a non-empty list of messages")
    for i, m in enumerate(value):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise DataError(f"{name} row {number}: '{field}' message {i + 1} needs string 'role' and 'content'")


def check_sft_row(row, number: int, name: str, kind: str | None) -> dict:
    """One SFT row as {"prompt", "completion"}; a chat's last (assistant) turn becomes the completion."""
    if not isinstance(row, dict):
        raise DataError(f"{name} row {number}: expected a JSON object with 'messages' or 'prompt'/'completion'")
    if kind == "messages":
        if "messages" not in row:
            raise DataError(f"{name} row {number}: no 'messages' field (the first row has one, so every row needs it)")
        check_messages(row["messages"], number, name)
        if len(row["messages"]) < 2:
            raise DataError(f"{name} row {number}: 'messages' needs a prompt turn before the assistant's answer")
        return {"prompt": row["messages"][:-1], "completion": row["messages"][-1:]}
    for field in ("prompt", "completion"):
        if field not in row:
            raise DataError(f"{name} row {number}: no '{field}' field (fields: {', '.join(row) or 'none'})")
        _check_turns(row[field], number, field, name)
    if isinstance(row["prompt"], str) != isinstance(row["completion"], str):
        raise DataError(f"{name} row {number}: 'prompt' and 'completion' must both be strings or both message lists")
    return {"prompt": row["prompt"], "completion": row["completion"]}


def check_pair_row(row, number: int, name: str, kind: str | None = None) -> dict:
    """One preference row as {"prompt", "chosen", "rejected"} (strings, or message lists for all three)."""
    if not isinstance(row, dict):
        raise DataError(f"{name} row {number}: expected a JSON object with 'prompt', 'chosen' and 'rejected'")
    for field in ("prompt", "chosen", "rejected"):
        if field not in row:
            raise DataError(f"{name} row {number}: no '{field}' field (fields: {', '.join(row) or 'none'})")
        _check_turns(row[field], number, field, name)
    if len({isinstance(row[f], str) for f in ("prompt", "chosen", "rejected")}) > 1:
        raise DataError(f"{name} row {number}: 'prompt', 'chosen' and 'rejected' must all be strings or all lists")
    if row["chosen"] == row["rejected"]:
        raise DataError(f"{name} row {number}: 'chosen' and 'rejected' are the same answer")
    return {"prompt": row["prompt"], "chosen": row["chosen"], "rejected": row["rejected"]}


# each method: the check of one row of its JSONL format (the method itself joins METHODS below)
CHECKS = {"sft": check_sft_row, "reward": check_pair_row, "dpo": check_pair_row}


def read_rows(path: str | Path, method: str = "sft") -> list[dict]:
    """Rows of a JSONL file for `method`, every row checked; errors name the row (1-based line) and field."""
    path = Path(path)
    rows, kind = [], None
    for number, row in common.read_jsonl(path, DataError):
        kind = kind or ("messages" if "messages" in row else "prompt")
        rows.append(CHECKS[method](row, number, path.name, kind))
    return rows


def load_sft_data(data: str, seed: int = 0, held_out_topics: int = 12) -> tuple[list[dict], list[dict]]:
    """(train_rows, held_rows) for --data: python_docs (split by topic) or a JSONL file (10% held out)."""
    if data == "python_docs":
        return python_docs_instructions(held_out_topics, seed)
    if not data.endswith(".jsonl"):
        raise DataError(f"unknown data '{data}': give python_docs or a .jsonl file (messages or prompt/completion)")
    rows = read_rows(data)
    if len(rows) < 2:
        raise DataError(f"{Path(data).name}: need at least 2 rows (one is held out for the held-out loss)")
    random.Random(seed).shuffle(rows)
    n_held = max(1, round(0.1 * len(rows)))
    return rows[n_held:], rows[:n_held]


# ------------------------------------------------------------------------------------------ training

def _dataset(rows: list[dict]):
    import datasets
    datasets.disable_progress_bars()  # SFTTrainer's tokenizing bars would fill a notebook
    return datasets.Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]} for r in rows])


def make_sft_trainer(model, tokenizer, train_rows: list[dict], held_rows: list[dict], output_dir: str | Path,
                     steps: int, batch_size: int = 4, lr: float = 2e-4, peft: str = "lora", lora_r: int = 16,
                     lora_alpha: int = 32, max_length: int = 256, warmup: float = 0.1, seed: int = 0,
                     bf16: bool = False, cpu: bool | None = None, save_steps: int = 0, save_total_limit: int = 2,
                     logging_steps: int | None = None, deepspeed: str | None = None, progress: bool = False):
    """A TRL SFTTrainer with loss on the completion only, LoRA on every linear layer (peft="lora") or full
    fine-tuning (peft="none"), cosine schedule, and resumable checkpoints every `save_steps` (0: none)."""
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    cpu = not torch.cuda.is_available() if cpu is None else cpu
    config = SFTConfig(
        output_dir=str(output_dir), max_steps=steps, per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=batch_size, learning_rate=lr, lr_scheduler_type="cosine", warmup_steps=warmup,
        max_length=max_length, completion_only_loss=True, seed=seed, data_seed=seed, use_cpu=cpu, bf16=bf16,
        save_strategy="steps" if save_steps else "no", save_steps=save_steps or steps,
        save_total_limit=save_total_limit, logging_steps=logging_steps or max(1, min(10, steps // 10)),
        eval_strategy="no", report_to="none", disable_tqdm=not progress, dataloader_num_workers=0,
        deepspeed=deepspeed, ddp_find_unused_parameters=False,
        activation_checkpointing=False)  # TRL turns it on by default; a 135M model fits without recomputing
    peft_config = None
    if peft == "lora":
        peft_config = LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=0.05, target_modules="all-linear",
                                 task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=config, train_dataset=_dataset(train_rows),
                         eval_dataset=_dataset(held_rows), processing_class=tokenizer, peft_config=peft_config)
    if not progress:  # no bar and no printed log dicts; the numbers stay in trainer.state.log_history
        trainer.remove_callback(transformers.trainer_callback.PrinterCallback)
    return trainer


def loss_mask(trainer, index: int = 0) -> list[tuple[str, bool]]:
    """(token text, counted in the loss) for training row `index`, as the trainer's collator builds the labels."""
    row = trainer.train_dataset[index]
    batch = trainer.data_collator([row])
    tokenizer = trainer.processing_class
    return [(tokenizer.decode([t]), label != -100)
            for t, label in zip(batch["input_ids"][0].tolist(), batch["labels"][0].tolist(), strict=True)]


@torch.no_grad()
def generate_answers(model, tokenizer, prompts: list, max_new_tokens: int = 64) -> list[str]:
    """Greedy answers to user prompts (strings or message lists), one at a time (no padding effects)."""
    model.eval()
    answers = []
    for prompt in prompts:
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True,
                                               return_tensors="pt").to(model.device)
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
        answers.append(tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip())
    return answers


def load_aligned(folder: str | Path, full_class=None, load_base=None):
    """(model, tokenizer) from an align.py output folder. A fully fine-tuned model is read with `full_class`
    (default AutoModelForCausalLM); a LoRA adapter is loaded on its base model, read with `load_base(name,
    tokenizer)` (default load_model)."""
    folder = Path(folder)
    settings = json.loads((folder / "settings.json").read_text())
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    if settings["peft"] == "none":
        return (full_class or transformers.AutoModelForCausalLM).from_pretrained(folder), tokenizer
    import peft
    base = folder / "base"
    name = str(base) if base.exists() else settings["model"]
    model = load_base(name, tokenizer) if load_base else load_model(name)
    return peft.PeftModel.from_pretrained(model, folder), tokenizer


# ------------------------------------------------------------------------------------------------ CLI

TRAINING_SETTINGS = ("method", "model", "data", "peft", "lora_r", "lora_alpha", "max_length", "steps", "batch_size",
                     "lr", "warmup", "seed", "held_out_topics", "bf16")


def _resume_from(args: argparse.Namespace, output: Path, settings: dict) -> Path | None:
    """The checkpoint to continue from; a fresh run removes old checkpoints so it never mixes with them."""
    if not args.resume:
        shutil.rmtree(output / "checkpoints", ignore_errors=True)
        return None
    checkpoint = last_checkpoint(output / "checkpoints")
    if checkpoint is None:
        raise DataError(f"--resume: no complete checkpoint in {output.name}/checkpoints (run with --save-steps first)")
    old = json.loads((output / "settings.json").read_text()) if (output / "settings.json").exists() else {}
    changed = [f"{k} {old.get(k)} -> {settings[k]}" for k in settings if old.get(k) != settings[k]]
    if changed:
        raise DataError(f"--resume with other settings than the checkpointed run: {'; '.join(changed)}")
    return checkpoint


def start_run(args: argparse.Namespace, settings: dict, task: str, load=None, needs_template: bool = True):
    """What every method does first: find the checkpoint to resume from, seed, load the tokenizer (it must have a
    chat template unless needs_template=False) and the model (`load(name, tokenizer)`, default load_model), write
    settings.json and, for LoRA on a random tiny model, the base weights the adapter needs to reload.
    Returns (output folder, checkpoint or None, tokenizer, model)."""
    output = Path(args.output)
    checkpoint = _resume_from(args, output, settings)
    seed_everything(args.seed)
    tokenizer = load_tokenizer(args.model)
    if needs_template and tokenizer.chat_template is None:
        raise DataError(f"{args.model} has no chat template; {task} needs one (use an instruct/chat model)")
    model = load(args.model, tokenizer) if load else load_model(args.model)
    if int(os.environ.get("RANK", 0)) == 0:
        output.mkdir(parents=True, exist_ok=True)
        (output / "settings.json").write_text(json.dumps(settings, indent=2) + "\n")
        if args.peft == "lora" and args.model.startswith("tiny-"):  # a random base: keep it to reload the adapter
            model.save_pretrained(output / "base")
    return output, checkpoint, tokenizer, model


def finish_run(trainer, tokenizer, output: Path, metrics: dict) -> None:
    """Save the model (the adapter with LoRA), tokenizer, log history and metrics.json, on the main process only."""
    if trainer.is_world_process_zero():
        trainer.model.save_pretrained(output)
        tokenizer.save_pretrained(output)
        (output / "log_history.json").write_text(json.dumps(trainer.state.log_history, indent=1) + "\n")
        (output / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")


def run_sft(args: argparse.Namespace) -> dict:
    """Supervised fine-tuning end to end: data, held-out loss before, training, held-out loss after, save."""
    train_rows, held_rows = load_sft_data(args.data, args.seed, args.held_out_topics)  # checked before the model
    cpu = args.cpu or not torch.cuda.is_available()
    args.bf16 = args.bf16 and bf16_supported("cpu" if cpu else "cuda")
    settings = {k: getattr(args, k) for k in TRAINING_SETTINGS}
    output, checkpoint, tokenizer, model = start_run(args, settings, "SFT on chats")
    trainer = make_sft_trainer(model, tokenizer, train_rows, held_rows, output / "checkpoints", args.steps,
                               args.batch_size, args.lr, args.peft, args.lora_r, args.lora_alpha, args.max_length,
                               args.warmup, args.seed, args.bf16, cpu, args.save_steps, args.save_total_limit,
                               deepspeed=args.deepspeed, progress=not args.no_progress)
    before = trainer.evaluate()["eval_loss"]
    result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    after = trainer.evaluate()["eval_loss"]
    trainable, total = count_parameters(trainer.model)
    done = args.steps - (int(checkpoint.name.split("-")[1]) if checkpoint else 0)
    metrics = dict(method="sft", model=args.model, data=args.data, peft=args.peft, train_rows=len(train_rows),
                   held_out_rows=len(held_rows), steps=args.steps, trainable_parameters=trainable,
                   total_parameters=total, held_out_loss_before=round(before, 4), held_out_loss_after=round(after, 4),
                   resumed_from=checkpoint.name if checkpoint else None, world_size=trainer.args.world_size,
                   seconds_per_step=round(result.metrics["train_runtime"] / max(done, 1), 3))
    metrics["summary"] = (f"sft ({args.peft}) on {args.data}: {args.steps} steps, {trainable:,} of {total:,} weights "
                          f"trained; held-out loss {before:.3f} -> {after:.3f}. Saved to {args.output}")
    finish_run(trainer, tokenizer, output, metrics)
    return metrics


def run_dpo(args: argparse.Namespace) -> dict:
    """DPO on preference pairs; the code lives in dpo.py, which builds on this file."""
    from dpo import run_dpo as run
    return run(args)


def run_reward(args: argparse.Namespace) -> dict:
    """Reward modelling on preference pairs; the code lives in reward.py, which builds on this file."""
    from reward import run_reward as run
    return run(args)


def run_rl(args: argparse.Namespace) -> dict:
    """Online RL against a reward model (GRPO or RLOO); the code lives in rl.py, which builds on this file."""
    from rl import run_rl as run
    return run(args)


METHODS = {"sft": run_sft, "dpo": run_dpo, "reward": run_reward, "rl": run_rl}
DEFAULT_LR = {"lora": 2e-4, "none": 2e-5}
DEFAULT_DATA = {"dpo": "preferences", "rl": "rotten_tomatoes"}  # others: python_docs
DEFAULT_BETA = {"dpo": 0.1, "rl": 0.04}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--method", default="sft", choices=list(METHODS), help="alignment method (default sft)")
    add("--model", default=SMOLLM2, help=f"short name, local folder or Hub id of a chat model (default {SMOLLM2})")
    add("--data", help="a named set or a .jsonl file (default: python_docs; dpo: preferences; rl: rotten_tomatoes)")
    add("--output", required=True, help="folder for the model, metrics.json and checkpoints/")
    add("--peft", default="lora", choices=["lora", "none"], help="lora (default) or none (full fine-tuning)")
    add("--lora-r", type=int, default=16, help="LoRA rank (default 16)")
    add("--lora-alpha", type=int, default=32, help="LoRA scaling numerator (default 32)")
    add("--max-length", type=int, default=256, help="longest training row in tokens, longer ones are cut (default 256)")
    add("--held-out-topics", type=int, default=12, help="python_docs: documentation topics held out (default 12)")
    add("--steps", type=int, default=60, help="optimizer steps (default 60)")
    add("--batch-size", type=int, default=4, help="rows per step and process (default 4)")
    add("--lr", type=float, help="peak learning rate (default 2e-4 with LoRA, 2e-5 full)")
    add("--warmup", type=float, default=0.1, help="warm-up: share of the steps if < 1, else steps (default 0.1)")
    add("--beta", type=float, help="dpo: strength of the pull towards the reference (default 0.1); rl: weight of "
                                   "the KL penalty to the starting model (default 0.04)")
    add("--reward-model", help="rl: folder of a sequence-classification model that scores the answers")
    add("--reward-label", default="positive", help="rl: the label whose probability is the reward, for a "
                                                   "classifier with several labels (default positive)")
    add("--algorithm", default="grpo", choices=["grpo", "rloo"], help="rl: GRPO (default) or RLOO advantages")
    add("--generations", type=int, default=4, help="rl: answers sampled per prompt (default 4; --batch-size "
                                                   "answers per step)")
    add("--max-new-tokens", type=int, default=24, help="rl: longest sampled answer in tokens (default 24)")
    add("--eval-prompts", type=int, default=32, help="rl: held-out prompts for the reward before/after (default 32)")
    add("--seed", type=int, default=0, help="seed of the split, data order and new weights (default 0)")
    add("--save-steps", type=int, default=0, help="checkpoint every N steps, for --resume (0: none)")
    add("--save-total-limit", type=int, default=2, help="checkpoints kept (default 2)")
    add("--resume", action="store_true", help="continue from the last checkpoint in --output")
    add("--deepspeed", help="a DeepSpeed JSON config (run under the deepspeed launcher)")
    add("--no-bf16", dest="bf16", action="store_false", help="fp32 throughout (default: bf16 autocast if fast here)")
    add("--cpu", action="store_true", help="train on the CPU even if a GPU is present")
    add("--no-progress", action="store_true", help="no progress bar")
    add("--local_rank", "--local-rank", type=int, default=-1, help=argparse.SUPPRESS)  # set by the deepspeed launcher
    args = parser.parse_args(argv)
    for name in ("steps", "batch_size", "max_length", "lora_r", "held_out_topics"):
        if getattr(args, name) < 1:
            parser.exit(2, f"error: --{name.replace('_', '-')} must be at least 1\n")
    if (args.lr is not None and args.lr <= 0) or args.save_steps < 0:
        parser.exit(2, "error: need --lr > 0 and --save-steps >= 0\n")
    args.lr = args.lr or DEFAULT_LR[args.peft]
    args.data = args.data or DEFAULT_DATA.get(args.method, "python_docs")
    args.beta = DEFAULT_BETA.get(args.method, 0.1) if args.beta is None else args.beta
    if args.method == "rl" and (args.generations < 2 or args.batch_size % args.generations):
        parser.exit(2, "error: rl needs --generations >= 2 and a --batch-size that is a multiple of it\n")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    transformers.utils.logging.disable_progress_bar()
    try:
        metrics = METHODS[args.method](args)
    except (DataError, ModelNotAvailable) as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)  # one line
        return 2
    if os.environ.get("RANK", "0") == "0":
        print(metrics["summary"])  # each run_<method> writes its own one-line result
    return 0


if __name__ == "__main__":
    sys.exit(main())
