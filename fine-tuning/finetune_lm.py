"""Fine-tune or continue pretraining any causal language model, fully or with a parameter-efficient method.

Examples:
  python fine-tuning/finetune_lm.py --data python_docs --output runs/pydocs        # continued pretraining, LoRA
  python fine-tuning/finetune_lm.py --data python_docs --peft none --lr 5e-5 --output runs/pydocs-full
  python fine-tuning/finetune_lm.py --data python_docs --mix news --mix-share 0.25 --output runs/pydocs-mix
  python fine-tuning/finetune_lm.py --data sentiment --output runs/sentiment-lora   # chat, loss on the answer
  python fine-tuning/finetune_lm.py --data sentiment --peft qlora --output runs/sentiment-qlora
  python fine-tuning/finetune_lm.py --data sentiment --peft prompt --num-virtual-tokens 20 --output runs/prompt
  python fine-tuning/finetune_lm.py --data sentiment --peft adapter --bottleneck 32 --output runs/adapter
  python fine-tuning/finetune_lm.py --data sentiment --merge --output runs/merged  # + a full model in merged/
  python fine-tuning/finetune_lm.py --data my_notes.txt --output runs/notes       # your own text
  python fine-tuning/finetune_lm.py --data chats.jsonl --output runs/chats   # {"messages": [...]} per line
  python fine-tuning/finetune_lm.py --model HuggingFaceTB/SmolLM2-360M-Instruct --data news --output runs/news
  python fine-tuning/finetune_lm.py --data news --steps 500 --save-every 50 --output runs/news
  python fine-tuning/finetune_lm.py --data news --steps 500 --save-every 50 --output runs/news --resume
  accelerate launch --multi_gpu --num_processes 2 fine-tuning/finetune_lm.py --cpu --data news --output runs/ddp

--data is a corpus of common.load_dataset with a text column (python_docs, news, shakespeare, python_code:
continued pretraining on packed blocks of --block-size tokens; the validation split, or 10% of the documents
for python_docs, is held out), `sentiment` (the chat task of instruct_task.py: loss on the answer only, answer
accuracy on validation reviews), a .txt file (its last 10% is held out), or a .jsonl file with a "text" field
per line (pretraining) or a "messages" field (a chat, [{"role", "content"}, ...]; loss on the last assistant
turn). --peft picks the method: none (full fine-tuning), lora, qlora (4-bit NF4 base + LoRA, bitsandbytes),
prefix, prompt, ia3 or adapter (Houlsby bottleneck adapters, bottleneck_adapters.py).

The output folder holds the model (full fine-tuning: a from_pretrained folder; peft methods: the adapter, with
a tiny-* base saved in base/; adapter: adapters.safetensors), the tokenizer, metrics.json (held-out perplexity
and, for sentiment, accuracy, before and after), log_history.json, settings.json, and checkpoints/ with
--save-every. --resume continues from the last complete checkpoint and ends as an uninterrupted run would.
Reload any output with load_finetuned(folder). The transformers Trainer does the training, so the run works
under `accelerate launch` too (on CPU: --multi_gpu --num_processes N with --cpu; `accelerate launch --cpu`
alone silently runs one process).

Python API (import it from fine-tuning/, e.g. `from finetune_lm import pack_blocks, perplexity`):
  METHODS, CORPORA, MERGEABLE, DEFAULT_LR
  split_documents(docs, share=0.1, seed=0) -> (train_docs, held_out_docs)
  pack_blocks(texts, tokenizer, block_size=128, drop_last=True, max_blocks=None) -> [{"input_ids", "labels"}]
  text_documents(data, seed=0) -> (train_docs, held_out_docs)  a corpus name, .txt or text .jsonl
  mix_blocks(domain_rows, general_rows, share, seed=0) -> rows, `share` of them general
  read_jsonl(path) -> ("text" | "messages", rows)             clear errors naming the row and field
  load_lm_data(data, tokenizer, ...) -> LMData                train/held-out rows for any --data
  load_lm(name, method="none") -> (model, tokenizer)          qlora: 4-bit NF4, CPU gradient fix applied
  apply_peft(model, method, **opts) -> model                  only the method's weights train
  mean_loss(model, rows, pad_id) / perplexity(model, tokenizer, texts, block_size=128) -> float
  evaluate(model, tokenizer, data) -> {"loss", "perplexity"[, "accuracy"]}
  make_trainer(model, tokenizer, train_rows, output_dir, steps, ...) -> transformers.Trainer
  train_lm(model, tokenizer, train_rows, steps, ...) -> log history (a Trainer run without checkpoints)
  save_finetuned(...) / load_finetuned(folder) -> (model, tokenizer) / merge_and_save(folder) -> merged/
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import shutil
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
import transformers
from instruct_task import answer_accuracy, collate, encode, heldout_loss, sentiment_examples

import common
from common import SMOLLM2, ModelNotAvailable, load_dataset, load_model, load_tokenizer, seed_everything

# bitsandbytes (imported by peft) logs that an optional faster CPU kernel package is missing; its own kernel works.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated")  # peft 0.21 uses the old name

METHODS = ("none", "lora", "qlora", "prefix", "prompt", "ia3", "adapter")
CORPORA = ("python_docs", "news", "shakespeare", "python_code")
MERGEABLE = ("lora", "qlora", "ia3")  # methods whose update folds into the base weights
# Peak learning rates that work for a few hundred steps on SmolLM2; --lr overrides them.
DEFAULT_LR = {"none": 5e-5, "lora": 2e-4, "qlora": 2e-4, "prefix": 1e-2, "prompt": 3e-2, "ia3": 3e-3,
              "adapter": 1e-3}
NO_MERGE = {"prefix": "prefix tuning adds trained key/value vectors to every layer, not a weight change",
            "prompt": "prompt tuning adds trained input embeddings, not a weight change",
            "adapter": "bottleneck adapters are extra layers with a non-linearity, not a weight change",
            "none": "full fine-tuning already saves a full model"}


class DataError(ValueError):
    """Bad input data; the CLI prints it as one line and exits with code 2."""


# ------------------------------------------------------------------------------------ data

@dataclass
class LMData:
    """Training and held-out rows ({"input_ids", "labels"}) for one --data source."""
    name: str
    kind: str  # "text": packed blocks, loss on every token; "chat": loss on the last assistant turn
    train: list[dict]
    held_out: list[dict]
    examples: list[dict] = field(default_factory=list)  # sentiment: held-out chats for answer_accuracy


def split_documents(docs: list[str], share: float = 0.1, seed: int = 0) -> tuple[list[str], list[str]]:
    """Hold out about `share` of the characters: whole documents in a seeded order, or the end of a single one."""
    docs = [d for d in docs if d.strip()]
    if len(docs) == 1:  # one document: cut it at a line break near the end
        text = docs[0]
        cut = text.rfind("\n", 0, int(len(text) * (1 - share)))
        cut = cut if cut > len(text) * 0.5 else int(len(text) * (1 - share))
        return [text[:cut]], [text[cut:]]
    order = list(range(len(docs)))
    random.Random(seed).shuffle(order)
    total, held, size = sum(map(len, docs)), set(), 0
    for i in order:
        if size >= share * total or len(held) == len(docs) - 1:
            break
        held.add(i)
        size += len(docs[i])
    return [d for i, d in enumerate(docs) if i not in held], [d for i, d in enumerate(docs) if i in held]


def pack_blocks(texts: list[str], tokenizer, block_size: int = 128, drop_last: bool = True,
                max_blocks: int | None = None) -> list[dict]:
    """Tokenize, join the documents with the end-of-text token and cut the stream into blocks of `block_size`.

    Labels equal the inputs (the model shifts them): every token is predicted. drop_last=False keeps a
    shorter last block (fine for scoring; collate pads it and the padding is not scored). max_blocks stops
    tokenizing once that many blocks are there."""
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    ids: list[int] = []
    for start in range(0, len(texts), 64):  # batches of documents, so max_blocks can stop early
        for doc_ids in tokenizer(texts[start:start + 64], add_special_tokens=False)["input_ids"]:
            ids += doc_ids + eos
        if max_blocks is not None and len(ids) >= max_blocks * block_size:
            break
    end = len(ids) - len(ids) % block_size if drop_last else len(ids)
    rows = [{"input_ids": ids[i:i + block_size], "labels": ids[i:i + block_size]} for i in range(0, end, block_size)]
    return rows[:max_blocks]


def mix_blocks(domain: list[dict], general: list[dict], share: float, seed: int = 0) -> list[dict]:
    """Rows of which `share` are general text (sampled, seeded) and the rest all the domain rows, shuffled."""
    if not 0 <= share < 1:
        raise DataError(f"--mix-share must be in [0, 1), got {share}")
    if not general and share > 0:
        raise DataError("the general text for --mix has no blocks")
    rng = random.Random(seed)
    n = round(len(domain) * share / (1 - share))
    picked = rng.sample(general, n) if n <= len(general) else [rng.choice(general) for _ in range(n)]
    rows = domain + picked
    rng.shuffle(rows)
    return rows


def check_messages(messages, row: int, name: str) -> None:
    """A chat must be a list of {"role", "content"} dicts with string values, ending with an assistant turn."""
    where = f"{name} row {row}"
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{where}: 'messages' must be a non-empty list of {{\"role\", \"content\"}} objects")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise DataError(f"{where}: message {i + 1} needs string 'role' and 'content' fields, got {json.dumps(m)[:80]}")
        if m["role"] not in ("system", "user", "assistant", "tool"):
            raise DataError(f"{where}: message {i + 1} has unknown role '{m['role']}'")
    if messages[-1]["role"] != "assistant":
        raise DataError(f"{where}: the last message must be the assistant's (it is what the model learns)")


def read_jsonl(path: str | Path) -> tuple[str, list]:
    """("text", [str, ...]) or ("messages", [chat, ...]) from a JSONL file; the first row decides which."""
    path = Path(path)
    kind, rows = None, []
    for number, row in common.read_jsonl(path, DataError):
        if kind is None:
            kind = "messages" if "messages" in row else "text" if "text" in row else None
            if kind is None:
                raise DataError(f"{path.name} row {number}: no 'text' or 'messages' field "
                                f"(fields: {', '.join(row) or 'none'})")
        if kind not in row:
            raise DataError(f"{path.name} row {number}: no '{kind}' field (the first row has one, so every row needs it)")
        if kind == "text":
            if not isinstance(row["text"], str):
                raise DataError(f"{path.name} row {number}: 'text' must be a string")
            rows.append(row["text"])
        else:
            check_messages(row["messages"], number, path.name)
            rows.append(row["messages"])
    return kind, rows


def text_documents(data: str, seed: int = 0) -> tuple[list[str], list[str]]:
    """Training and held-out documents of a corpus name (its validation split, else 10% of the documents),
    a .txt file (its last 10%) or a .jsonl file with a "text" field (10% of the rows)."""
    path = Path(data).expanduser()
    if data in CORPORA:
        splits = load_dataset(data)
        train = list(splits["train"]["text"])
        return (train, list(splits["validation"]["text"])) if "validation" in splits else split_documents(train, seed=seed)
    if path.suffix == ".txt":
        text = path.read_text(encoding="utf-8", errors="replace")
        if not text.strip():
            raise DataError(f"data file is empty: {path.name}")
        return split_documents([text], seed=seed)
    kind, rows = read_jsonl(path)
    if kind != "text":
        raise DataError(f"{path.name} holds chats ('messages'); --mix needs plain text")
    return split_documents(rows, seed=seed)


def check_data(data: str) -> None:
    """Fail fast (before loading a model) on a --data that is neither a known name nor a readable file."""
    if data in CORPORA or data == "sentiment":
        return
    path = Path(data).expanduser()
    if path.suffix not in (".txt", ".jsonl"):
        raise DataError(f"unknown data '{data}': give a corpus ({', '.join(CORPORA)}), sentiment, "
                        f"or a .txt / .jsonl file")
    if not path.is_file():
        raise DataError(f"data file not found: {data}")
    if path.stat().st_size == 0:
        raise DataError(f"data file is empty: {path.name}")


def load_lm_data(data: str, tokenizer, block_size: int = 128, max_length: int = 256, eval_blocks: int = 64,
                 eval_examples: int = 200, train_examples: int = 4000, seed: int = 0) -> LMData:
    """Rows for any --data: packed blocks for text, encoded chats (loss on the answer) for messages/sentiment."""
    check_data(data)
    path = Path(data).expanduser()
    if data == "sentiment":
        held = sentiment_examples("validation", eval_examples, seed)
        train = [encode(tokenizer, e["messages"], max_length) for e in sentiment_examples("train", train_examples, seed)]
        return LMData(data, "chat", train, [encode(tokenizer, e["messages"], max_length) for e in held], held)
    if path.suffix == ".jsonl" and read_jsonl(path)[0] == "messages":
        chats = read_jsonl(path)[1]
        if len(chats) < 2:
            raise DataError(f"{path.name}: need at least 2 chats (one is held out for evaluation)")
        order = list(range(len(chats)))
        random.Random(seed).shuffle(order)
        n_held = max(1, round(0.1 * len(chats)))
        rows = [encode(tokenizer, chats[i], max_length) for i in order]
        return LMData(path.name, "chat", rows[n_held:], rows[:n_held])
    train_docs, held_docs = text_documents(data, seed)
    train = pack_blocks(train_docs, tokenizer, block_size)
    if not train:
        n = len(pack_blocks(train_docs, tokenizer, block_size, drop_last=False)[0]["input_ids"]) if train_docs else 0
        raise DataError(f"the training text has {n} tokens, fewer than one block of {block_size}; "
                        f"use more text or a smaller --block-size")
    held = pack_blocks(held_docs, tokenizer, block_size, drop_last=False, max_blocks=eval_blocks)
    return LMData(path.name if path.suffix else data, "text", train, held)


# ------------------------------------------------------------------------------------ model

def bf16_supported(device: str) -> bool:
    """Whether bf16 autocast is fast here: CUDA with bf16, or a CPU with native bf16 (AVX512-BF16/AMX)."""
    if device.startswith("cuda"):
        return torch.cuda.is_bf16_supported()
    if device == "cpu":
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def _bnb_fix_for_cpu(model) -> int:
    """QLoRA on CPU: stop bitsandbytes repacking 4-bit weights for its no-grad AVX512-BF16 kernel.

    Any eval forward (no_grad, eval mode) otherwise repacks the weights into a format whose kernel has no
    autograd, and training after it silently gets no gradient. Returns how many layers were fixed."""
    import bitsandbytes as bnb

    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    for m in layers:
        m.support_avx512bf16_for_cpu = False
    return len(layers)


def load_lm(name: str = SMOLLM2, method: str = "none", device: str | None = None):
    """(model, tokenizer) for any causal LM; method "qlora" loads the weights as 4-bit NF4 (bitsandbytes)."""
    tokenizer = load_tokenizer(name)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if method != "qlora":
        return load_model(name, device=device), tokenizer
    if name.startswith("tiny-"):
        raise DataError("qlora quantizes pretrained weights; a tiny-* model is built from a config. "
                        "Save it with save_pretrained and pass the folder, or use another method")
    try:
        import bitsandbytes  # noqa: F401
        from transformers import BitsAndBytesConfig
    except ImportError:
        raise DataError("qlora needs bitsandbytes: pip install bitsandbytes") from None
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.bfloat16)
    try:
        model = load_model(name, quantization_config=quant, device_map=device)
        if device == "cpu":
            _bnb_fix_for_cpu(model)  # before any forward: an eval forward would repack the weights
        with torch.no_grad():  # a forward proves the 4-bit kernels exist on this device
            model(input_ids=torch.tensor([[tokenizer.eos_token_id or 0]], device=model.device))
    except (RuntimeError, NotImplementedError, ImportError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"qlora: bitsandbytes cannot run 4-bit layers on {device} ({first}); "
                        f"use --peft lora, or a GPU") from None
    return model, tokenizer


def apply_peft(model, method: str, r: int = 8, alpha: int = 16, dropout: float = 0.05,
               target_modules: str | list[str] = "all-linear", num_virtual_tokens: int = 20,
               bottleneck: int = 64, gradient_checkpointing: bool = False):
    """Wrap/freeze `model` so only `method`'s weights train ("none": every weight trains)."""
    import peft

    if method not in METHODS:
        raise DataError(f"unknown method '{method}'; choose one of: {', '.join(METHODS)}")
    if method == "none":
        return model
    if method == "adapter":
        try:
            from bottleneck_adapters import add_adapters
        except ImportError:
            raise DataError("--peft adapter needs fine-tuning/bottleneck_adapters.py (add_adapters)") from None
        add_adapters(model, bottleneck)
        return model
    task = peft.TaskType.CAUSAL_LM
    if method == "qlora":
        model = peft.prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    lora = dict(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=target_modules, task_type=task)
    config = {"lora": lambda: peft.LoraConfig(**lora), "qlora": lambda: peft.LoraConfig(**lora),
              "prefix": lambda: peft.PrefixTuningConfig(num_virtual_tokens=num_virtual_tokens, task_type=task),
              "prompt": lambda: peft.PromptTuningConfig(num_virtual_tokens=num_virtual_tokens, task_type=task,
                                                        prompt_tuning_init=peft.PromptTuningInit.SAMPLE_VOCAB),
              "ia3": lambda: peft.IA3Config(task_type=task)}[method]()
    model = peft.get_peft_model(model, config)
    if method == "qlora" and model.device.type == "cpu":
        _bnb_fix_for_cpu(model)
    return model


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameters; 4-bit weights count as their number of values."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() * (2 if p.dtype == torch.uint8 else 1) for p in model.parameters())
    return trainable, total


# ------------------------------------------------------------------------------- evaluation

def mean_loss(model, rows: list[dict], pad_id: int, batch_size: int = 8, bf16: bool = True) -> float:
    """Mean cross-entropy per scored token over `rows` (labels IGNORE are not scored)."""
    return heldout_loss(model, rows, pad_id, batch_size=batch_size, bf16=bf16)


def perplexity(model, tokenizer, texts: list[str], block_size: int = 128, max_blocks: int | None = None,
               batch_size: int = 8, bf16: bool = True) -> float:
    """exp(mean next-token loss) over `texts` cut into blocks of `block_size` tokens (the first max_blocks)."""
    rows = pack_blocks(texts, tokenizer, block_size, drop_last=False, max_blocks=max_blocks)
    return math.exp(mean_loss(model, rows, tokenizer.pad_token_id or 0, batch_size, bf16))


def evaluate(model, tokenizer, data: LMData, bf16: bool = True, batch_size: int = 8) -> dict[str, float]:
    """Held-out loss and perplexity (text: every token; chat: the answers), and sentiment answer accuracy."""
    loss = mean_loss(model, data.held_out, tokenizer.pad_token_id or 0, batch_size, bf16)
    result = {"loss": round(loss, 4), "perplexity": round(math.exp(loss), 3)}
    if data.examples:
        result["accuracy"] = round(answer_accuracy(model, tokenizer, data.examples, batch_size, bf16)[0], 4)
    return result


# ---------------------------------------------------------------------------------- training

class RowDataset(torch.utils.data.Dataset):
    """A list of encoded rows as a map-style dataset (the Trainer's seeded sampler shuffles it)."""

    def __init__(self, rows: list[dict]):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return self.rows[i]


def make_trainer(model, tokenizer, train_rows: list[dict], output_dir: str | Path, steps: int, batch_size: int = 4,
                 lr: float = 2e-4, grad_accum: int = 1, warmup: float = 0.1, seed: int = 0, bf16: bool = True,
                 cpu: bool | None = None, eval_rows: list[dict] | None = None, eval_every: int = 0,
                 save_every: int = 0, save_total_limit: int = 2, logging_steps: int | None = None,
                 progress: bool = True) -> transformers.Trainer:
    """A transformers Trainer: AdamW, linear warm-up then cosine decay, clipping at 1.0, seeded data order.

    save_every > 0 writes resumable checkpoints (model, optimizer, scheduler, RNG, data position) to
    output_dir; bf16 turns on bf16 autocast (weights stay fp32)."""
    cpu = not torch.cuda.is_available() if cpu is None else cpu
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    args = transformers.TrainingArguments(
        output_dir=str(output_dir), max_steps=steps, per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=batch_size, gradient_accumulation_steps=grad_accum, learning_rate=lr,
        lr_scheduler_type="cosine", warmup_steps=warmup, weight_decay=0.0, max_grad_norm=1.0,
        seed=seed, data_seed=seed, use_cpu=cpu, bf16=bf16,
        eval_strategy="steps" if eval_rows and eval_every else "no", eval_steps=eval_every or None,
        save_strategy="steps" if save_every else "no", save_steps=save_every or steps,
        save_total_limit=save_total_limit, logging_steps=logging_steps or max(1, min(10, steps // 10)),
        report_to="none", disable_tqdm=not progress, remove_unused_columns=False, label_names=["labels"],
        dataloader_num_workers=0, ddp_find_unused_parameters=False)
    return transformers.Trainer(model=model, args=args, train_dataset=RowDataset(train_rows),
                                eval_dataset=RowDataset(eval_rows) if eval_rows and eval_every else None,
                                data_collator=lambda rows: collate(rows, pad_id))


def train_lm(model, tokenizer, train_rows: list[dict], steps: int, batch_size: int = 4, lr: float = 2e-4,
             seed: int = 0, bf16: bool = True, **options) -> list[dict]:
    """Train in place with the Trainer, no checkpoints and no progress bar; returns its log history."""
    with tempfile.TemporaryDirectory() as tmp:
        trainer = make_trainer(model, tokenizer, train_rows, tmp, steps, batch_size, lr, seed=seed, bf16=bf16,
                               progress=options.pop("progress", False), **options)
        trainer.remove_callback(transformers.trainer_callback.PrinterCallback)  # no printed log lines
        trainer.train()
    return trainer.state.log_history


def last_checkpoint(folder: Path) -> Path | None:
    """The newest checkpoint-N in `folder` that was written completely (trainer_state.json comes last)."""
    done = [p for p in folder.glob("checkpoint-*") if (p / "trainer_state.json").exists()]
    return max(done, key=lambda p: int(p.name.split("-")[1])) if done else None


# ------------------------------------------------------------------------------ save / reload

def save_finetuned(model, tokenizer, output: Path, method: str) -> None:
    """Full model: a from_pretrained folder. peft methods: the adapter files (adapter_config.json,
    adapter_model.safetensors). adapter: adapters.safetensors (the bottleneck weights only)."""
    output.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(output)
    if method == "adapter":
        from bottleneck_adapters import adapter_state_dict
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in adapter_state_dict(model).items()}, output / "adapters.safetensors")
    else:
        model.save_pretrained(output)


def _base_for(output: Path, settings: dict):
    base = output / "base"
    return load_model(str(base) if base.exists() else settings["model"])


def load_finetuned(output: str | Path):
    """(model, tokenizer) from a finetune_lm.py output folder, for any method (qlora: unquantized base)."""
    output = Path(output)
    settings = json.loads((output / "settings.json").read_text())
    tokenizer = transformers.AutoTokenizer.from_pretrained(output)
    method = settings["peft"]
    if method == "none":
        return transformers.AutoModelForCausalLM.from_pretrained(output), tokenizer
    model = _base_for(output, settings)
    if method == "adapter":
        from bottleneck_adapters import add_adapters, load_adapter_state_dict
        from safetensors.torch import load_file
        add_adapters(model, settings["bottleneck"])
        load_adapter_state_dict(model, load_file(output / "adapters.safetensors"))
        return model, tokenizer
    import peft
    return peft.PeftModel.from_pretrained(model, output), tokenizer


def merge_and_save(output: str | Path) -> Path:
    """Fold a LoRA/QLoRA/IA3 adapter into a full-precision base and save it in output/merged."""
    output = Path(output)
    settings = json.loads((output / "settings.json").read_text())
    if settings["peft"] not in MERGEABLE:
        raise DataError(f"--merge: {NO_MERGE[settings['peft']]}; merging works for {', '.join(MERGEABLE)}")
    model, tokenizer = load_finetuned(output)
    merged = model.merge_and_unload()
    merged.save_pretrained(output / "merged")
    tokenizer.save_pretrained(output / "merged")
    return output / "merged"


# ------------------------------------------------------------------------------------- CLI

TRAINING_SETTINGS = ("model", "data", "peft", "lora_r", "lora_alpha", "lora_dropout", "num_virtual_tokens",
                     "bottleneck", "block_size", "max_length", "train_examples", "steps", "batch_size",
                     "grad_accum", "lr", "warmup", "seed", "mix", "mix_share", "bf16")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--model", default=SMOLLM2, help=f"short name, local folder or Hub id (default {SMOLLM2})")
    add("--data", default="python_docs", help="corpus name, sentiment, .txt or .jsonl file (default python_docs)")
    add("--output", required=True, help="folder for the model, metrics.json and checkpoints/")
    add("--peft", default="lora", help=f"method: {', '.join(METHODS)} (default lora)")
    add("--lora-r", type=int, default=8, help="LoRA rank (default 8)")
    add("--lora-alpha", type=int, default=16, help="LoRA scaling numerator (default 16)")
    add("--lora-dropout", type=float, default=0.05, help="dropout on the LoRA input (default 0.05)")
    add("--num-virtual-tokens", type=int, default=20, help="prefix/prompt length (default 20)")
    add("--bottleneck", type=int, default=64, help="adapter bottleneck width (default 64)")
    add("--block-size", type=int, default=128, help="tokens per packed text block (default 128)")
    add("--max-length", type=int, default=256, help="longest chat in tokens (default 256)")
    add("--train-examples", type=int, default=4000, help="sentiment: training reviews to encode (default 4000)")
    add("--mix", help="general text mixed into the training stream: corpus name, .txt or text .jsonl")
    add("--mix-share", type=float, default=0.25, help="share of training blocks from --mix (default 0.25)")
    add("--steps", type=int, default=100, help="optimizer steps (default 100)")
    add("--batch-size", type=int, default=4, help="rows per step and process (default 4)")
    add("--grad-accum", type=int, default=1, help="gradient accumulation steps (default 1)")
    add("--lr", type=float, help="peak learning rate (default: per method, " +
        ", ".join(f"{k} {v:g}" for k, v in DEFAULT_LR.items()) + ")")
    add("--warmup", type=float, default=0.1, help="warm-up: share of the steps if < 1, else steps (default 0.1)")
    add("--seed", type=int, default=0, help="seed of the data split, order and new weights (default 0)")
    add("--eval-every", type=int, default=0, help="held-out loss every N steps during training (0: off)")
    add("--eval-blocks", type=int, default=64, help="held-out text blocks scored (default 64)")
    add("--eval-examples", type=int, default=200, help="held-out sentiment reviews scored (default 200)")
    add("--save-every", type=int, default=0, help="checkpoint every N steps, for --resume (0: none)")
    add("--save-total-limit", type=int, default=2, help="checkpoints kept (default 2)")
    add("--resume", action="store_true", help="continue from the last checkpoint in --output")
    add("--merge", action="store_true", help="also save a full model with the update folded in (lora, qlora, ia3)")
    add("--no-bf16", dest="bf16", action="store_false", help="fp32 throughout (default: bf16 autocast if fast here)")
    add("--cpu", action="store_true", help="train on the CPU even if a GPU is present")
    add("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.peft not in METHODS:
        parser.exit(2, f"error: unknown method '{args.peft}'; choose one of: {', '.join(METHODS)}\n")
    if args.merge and args.peft not in MERGEABLE:
        parser.exit(2, f"error: --merge: {NO_MERGE[args.peft]}; merging works for {', '.join(MERGEABLE)}\n")
    for name in ("steps", "batch_size", "grad_accum", "block_size", "max_length", "lora_r", "num_virtual_tokens",
                 "bottleneck", "eval_blocks", "eval_examples", "train_examples"):
        if getattr(args, name) < 1:
            parser.exit(2, f"error: --{name.replace('_', '-')} must be at least 1\n")
    if args.lr is not None and args.lr <= 0 or args.save_every < 0 or args.eval_every < 0:
        parser.exit(2, "error: need --lr > 0, --save-every >= 0 and --eval-every >= 0\n")
    args.lr = args.lr or DEFAULT_LR[args.peft]
    return args


def _check_resume(args: argparse.Namespace, output: Path, settings: dict) -> Path | None:
    """The checkpoint to resume from (None for a fresh run, whose old checkpoints are removed)."""
    checkpoints = output / "checkpoints"
    if not args.resume:
        shutil.rmtree(checkpoints, ignore_errors=True)  # a fresh run never continues an older one
        return None
    checkpoint = last_checkpoint(checkpoints)
    if checkpoint is None:
        raise DataError(f"--resume: no complete checkpoint in {output.name}/checkpoints (run with --save-every first)")
    old = json.loads((output / "settings.json").read_text()) if (output / "settings.json").exists() else {}
    changed = [f"{k} {old.get(k)} -> {settings[k]}" for k in TRAINING_SETTINGS if old.get(k) != settings[k]]
    if changed:
        raise DataError(f"--resume with other settings than the checkpointed run: {'; '.join(changed)}")
    return checkpoint


def run(args: argparse.Namespace) -> dict:
    """The whole CLI pipeline; returns the metrics written to metrics.json."""
    transformers.utils.logging.disable_progress_bar()
    output = Path(args.output)
    check_data(args.data)
    if args.mix:
        check_data(args.mix)
    cpu = args.cpu or not torch.cuda.is_available()
    device = "cpu" if cpu else f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    args.bf16 = args.bf16 and bf16_supported(device)
    settings = {k: getattr(args, k) for k in TRAINING_SETTINGS}
    checkpoint = _check_resume(args, output, settings)
    seed_everything(args.seed)  # tiny-* random init, new peft weights
    model, tokenizer = load_lm(args.model, args.peft, device)
    data = load_lm_data(args.data, tokenizer, args.block_size, args.max_length, args.eval_blocks, args.eval_examples,
                        args.train_examples, args.seed)
    train_rows, general = data.train, None
    if args.mix:
        if data.kind != "text":
            raise DataError("--mix adds general text to continued pretraining; --data must be text")
        general = load_lm_data(args.mix, tokenizer, args.block_size, eval_blocks=args.eval_blocks, seed=args.seed)
        if general.kind != "text":
            raise DataError("--mix needs plain text: a corpus name, .txt or a .jsonl with 'text'")
        train_rows = mix_blocks(data.train, general.train, args.mix_share, args.seed)
    before = evaluate(model, tokenizer, data, args.bf16)  # the model we start from
    if general is not None:
        before["mix_perplexity"] = evaluate(model, tokenizer, general, args.bf16)["perplexity"]
    main_process = int(os.environ.get("RANK", 0)) == 0
    if main_process:
        output.mkdir(parents=True, exist_ok=True)
        (output / "settings.json").write_text(json.dumps(settings, indent=2) + "\n")
        if args.peft != "none" and args.model.startswith("tiny-"):  # a random base: keep it to reload the update
            model.save_pretrained(output / "base")
    model = apply_peft(model, args.peft, args.lora_r, args.lora_alpha, args.lora_dropout,
                       num_virtual_tokens=args.num_virtual_tokens, bottleneck=args.bottleneck)
    trainer = make_trainer(model, tokenizer, train_rows, output / "checkpoints", args.steps, args.batch_size, args.lr,
                           args.grad_accum, args.warmup, args.seed, args.bf16, cpu, data.held_out, args.eval_every,
                           args.save_every, args.save_total_limit, progress=not args.no_progress)
    result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    after = evaluate(model, tokenizer, data, args.bf16)
    if general is not None:
        after["mix_perplexity"] = evaluate(model, tokenizer, general, args.bf16)["perplexity"]
    trainable, total = count_parameters(model)
    losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    done = args.steps - (int(checkpoint.name.split("-")[1]) if checkpoint else 0)
    metrics = dict(model=args.model, data=data.name, kind=data.kind, method=args.peft, trainable_parameters=trainable,
                   total_parameters=total, train_rows=len(train_rows), held_out_rows=len(data.held_out),
                   steps=args.steps, lr=args.lr, bf16=args.bf16, world_size=trainer.args.world_size,
                   before=before, after=after, first_logged_loss=losses[0] if losses else None,
                   last_logged_loss=losses[-1] if losses else None, resumed_from=checkpoint.name if checkpoint else None,
                   seconds_per_step=round(result.metrics["train_runtime"] / max(done, 1), 3))
    if trainer.is_world_process_zero():
        save_finetuned(model, tokenizer, output, args.peft)
        if args.merge:
            metrics["merged"] = merge_and_save(output).name
        (output / "log_history.json").write_text(json.dumps(trainer.state.log_history, indent=1) + "\n")
        (output / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        if (output / "checkpoints").is_dir() and not any((output / "checkpoints").iterdir()):
            (output / "checkpoints").rmdir()  # the Trainer creates it even when it saves nothing
    return metrics


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        metrics = run(args)
    except (DataError, ModelNotAvailable) as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)  # one line
        return 2
    if os.environ.get("RANK", "0") == "0":
        b, a = metrics["before"], metrics["after"]
        acc = f", accuracy {b['accuracy']:.3f} -> {a['accuracy']:.3f}" if "accuracy" in a else ""
        print(f"{metrics['method']} on {metrics['data']}: {metrics['steps']} steps, "
              f"{metrics['trainable_parameters']:,} of {metrics['total_parameters']:,} weights trained; held-out "
              f"perplexity {b['perplexity']:.2f} -> {a['perplexity']:.2f}{acc}. Saved to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
