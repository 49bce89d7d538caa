"""Fine-tune any encoder for sequence classification (one label per text) or token classification (one tag
per word, e.g. named entities) with the transformers Trainer, fully or with LoRA, IA3 or prompt tuning.

Examples:
  python fine-tuning/finetune_classifier.py                     # MiniLM, sentiment on rotten_tomatoes
  python fine-tuning/finetune_classifier.py --data reuters8 --max-steps 300 --output runs/topics
  python fine-tuning/finetune_classifier.py --task token        # named entities on wnut_ner
  python fine-tuning/finetune_classifier.py --data reviews.csv --text-column review --label-column stars
  python fine-tuning/finetune_classifier.py --task token --data tagged.jsonl --text-column words --label-column tags
  python fine-tuning/finetune_classifier.py --peft lora         # or ia3, prompt (prefix tuning needs a decoder)
  python fine-tuning/finetune_classifier.py --model ./my-encoder   # any local folder, or a Hub id when online
  python fine-tuning/finetune_classifier.py --output runs/rt --save-steps 50           # killed half-way?
  python fine-tuning/finetune_classifier.py --output runs/rt --save-steps 50 --resume  # ...continue it
  accelerate launch fine-tuning/finetune_classifier.py --max-steps 100     # as your accelerate config says
  accelerate launch --multi_gpu --num_processes 2 fine-tuning/finetune_classifier.py   # 2 CPU processes (gloo)

On a CPU, `accelerate launch --cpu --num_processes 2` silently runs ONE process; the --multi_gpu form above
starts two that train as one (DDP over gloo); on a 2-core machine that is no faster, but it is the same code.

Data: a named set (rotten_tomatoes, newsgroups, reuters8, emotion for --task seq; wnut_ner for --task token)
or your own .csv, .tsv, .jsonl or .json file. A file is split 70/10/20 into train/validation/test (seeded,
stratified when every class has enough rows). For --task token each row holds a list of words and a list of
tags of the same length (JSONL or JSON), e.g. {"words": ["Ada", "lives", "in", "Paris"], "tags": ["B-PER", "O",
"O", "B-LOC"]}.
Output (--output): the model and tokenizer (label names in config.json's id2label; LoRA and IA3 are merged
into the weights, prompt tuning is saved as a peft adapter), metrics.json with test accuracy and macro-F1
(seq) or entity F1 (token, seqeval) next to a majority-class baseline, and checkpoint-N/ folders for --resume.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import sys
import warnings
from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import torch
import transformers  # its classes load on first use, after the logging setting below
from datasets import ClassLabel, Dataset, DatasetDict

from common import (
    DATASETS,
    MINILM,
    load_dataset,
    load_model,
    load_tokenizer,
    seed_everything,
)

# Quiet two harmless messages: bitsandbytes (imported with the Trainer) looks for an optional CPU kernel
# package, and peft calls a transformers method that was renamed.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)

TASKS = {"seq": "seq-cls", "token": "token-cls"}  # --task -> kind of head in common.load_model
DEFAULT_DATA = {"seq": "rotten_tomatoes", "token": "wnut_ner"}
DEFAULT_COLUMNS = {"seq": ("text", "label"), "token": ("tokens", "ner_tags")}
PEFT_METHODS = ("lora", "ia3", "prompt")
DEFAULT_LR = {"none": 5e-5, "lora": 5e-4, "ia3": 3e-3, "prompt": 3e-2}
FILE_TYPES = (".csv", ".tsv", ".jsonl", ".json")
MIN_ROWS = 10  # a user file is split 70/10/20: fewer rows leave a split empty
IGNORE = -100  # label of positions the loss and the metrics skip


class InputError(ValueError):
    """Bad input from the user: printed as a one-line error, exit code 2."""


# ---------------------------------------------------------------- data

def read_rows(path: Path) -> list[dict]:
    """Rows of a .csv/.tsv (pandas) or .jsonl/.json file as a list of dicts."""
    suffix = path.suffix.lower()
    if suffix not in FILE_TYPES:
        raise InputError(f"unsupported file type '{suffix or path.name}' (use {', '.join(FILE_TYPES)})")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path.name} is not UTF-8 text") from None
    if not text.strip():
        raise InputError(f"{path.name} is empty")
    if suffix in (".csv", ".tsv"):
        import pandas as pd
        try:
            return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",").to_dict("records")
        except pd.errors.ParserError as err:
            raise InputError(f"{path.name} is not valid {suffix[1:].upper()}: {err}") from None
    lines = [text] if suffix == ".json" else text.splitlines()
    rows = []
    for number, line in enumerate(lines, 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise InputError(f"{path.name} line {err.lineno if suffix == '.json' else number} is not "
                                 f"valid JSON: {err.msg}") from None
    rows = rows[0] if suffix == ".json" else rows
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise InputError(f"{path.name} must hold JSON objects (a list of them in .json, one a line in .jsonl)")
    return rows


def _check_columns(rows: list[dict], source: str, columns: tuple[str, str]) -> None:
    if not rows:
        raise InputError(f"{source} has no rows")
    for column in columns:
        if column not in rows[0]:
            raise InputError(f"column '{column}' not found in {source}; its columns are: {', '.join(map(str, rows[0]))}")


def _check_rows_and_classes(n_rows: int, names: list[str], label_column: str, source: str) -> None:
    if len(names) < 2:
        raise InputError(f"label column '{label_column}' has a single class ('{names[0] if names else ''}'); "
                         "a classifier needs at least two")
    if n_rows < MIN_ROWS:
        raise InputError(f"{source} has {n_rows} usable rows; at least {MIN_ROWS} are needed to split it into "
                         "train, validation and test")


def as_label(value) -> str:
    """A label as text: 5, 5.0 (pandas turns an int column with a gap into floats) and "5" are all "5"."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _label_names(values: list) -> list[str]:
    """Distinct labels as strings, sorted (numerically if they are numbers); BIO tag sets keep 'O' first."""
    names = {as_label(v) for v in values}
    numeric = all(re.fullmatch(r"-?\d+(\.\d+)?", n) for n in names)
    return sorted(names, key=lambda n: (n != "O", float(n) if numeric else 0.0, n))


def split_rows(ds: Dataset, label_column: str | None, seed: int) -> DatasetDict:
    """Seeded 70/10/20 train/validation/test split, stratified by the label when every class allows it."""
    def split(part: Dataset, test_size: float) -> DatasetDict:
        try:
            return part.train_test_split(test_size=test_size, seed=seed, stratify_by_column=label_column)
        except ValueError:  # a class too small to stratify, or no ClassLabel column
            return part.train_test_split(test_size=test_size, seed=seed)

    first = split(ds, 0.2)
    second = split(first["train"], 0.125)  # 10 % of the whole
    return DatasetDict(train=second["train"], validation=second["test"], test=first["test"])


def _from_file(path: Path, task: str, columns: tuple[str, str], seed: int) -> DatasetDict:
    rows = read_rows(path)
    _check_columns(rows, path.name, columns)
    text_col, label_col = columns
    if task == "seq":
        rows = [r for r in rows if isinstance(r[text_col], str) and as_label(r[label_col]) not in ("", "nan")]
        names = _label_names([r[label_col] for r in rows])
        _check_rows_and_classes(len(rows), names, label_col, path.name)
        ds = Dataset.from_dict({"text": [r[text_col] for r in rows],
                                "label": [names.index(as_label(r[label_col])) for r in rows]})
        ds = ds.cast_column("label", ClassLabel(names=names))
        return split_rows(ds, "label", seed)
    for number, r in enumerate(rows, 1):
        if not isinstance(r[text_col], list) or not isinstance(r[label_col], list) or \
                len(r[text_col]) != len(r[label_col]):
            raise InputError(f"row {number} of {path.name}: '{text_col}' and '{label_col}' must be lists "
                             "of the same length (one tag per word)")
    names = _label_names([t for r in rows for t in r[label_col]])
    _check_rows_and_classes(len(rows), names, label_col, path.name)
    features = datasets.Features(tokens=datasets.Sequence(datasets.Value("string")),
                                 tags=datasets.Sequence(ClassLabel(names=names)))
    ds = Dataset.from_dict({"tokens": [[str(w) for w in r[text_col]] for r in rows],
                            "tags": [[names.index(as_label(t)) for t in r[label_col]] for r in rows]}, features)
    return split_rows(ds, None, seed)


def _from_named(name: str, task: str, columns: tuple[str, str]) -> DatasetDict:
    data = load_dataset(name)
    _check_columns([data["train"][0]], f"data set '{name}'", columns)
    text_col, label_col = columns
    keep = {text_col: "text" if task == "seq" else "tokens", label_col: "label" if task == "seq" else "tags"}
    data = data.select_columns(list(keep)).rename_columns({k: v for k, v in keep.items() if k != v})
    if task == "seq" and not isinstance(data["train"].features["label"], ClassLabel):  # e.g. a text column
        names = _label_names([v for split in data.values() for v in split["label"]])
        data = data.map(lambda b: {"label": [names.index(as_label(v)) for v in b["label"]]}, batched=True)
        data = data.cast_column("label", ClassLabel(names=names))
    if sorted(data) != ["test", "train", "validation"]:  # re-split a set that lacks one of the three
        data = split_rows(datasets.concatenate_datasets(list(data.values())), "label" if task == "seq" else None, 0)
    return data


def label_names_of(data: DatasetDict, task: str) -> list[str]:
    feature = data["train"].features["label" if task == "seq" else "tags"]
    feature = getattr(feature, "feature", feature)  # a Sequence/List of ClassLabel for token tags
    if isinstance(feature, ClassLabel):
        return list(feature.names)
    column = data["train"]["label"] if task == "seq" else [t for tags in data["train"]["tags"] for t in tags]
    return [str(i) for i in range(max(column) + 1)]


def load_classification_data(data: str, task: str = "seq", text_column: str | None = None,
                             label_column: str | None = None, seed: int = 0) -> tuple[DatasetDict, list[str]]:
    """A named set or a user file as train/validation/test with columns text/label (seq) or tokens/tags (token).

    Returns the splits and the label names (index i is label id i). Raises InputError for bad input.
    """
    if task not in TASKS:
        raise InputError(f"unknown task '{task}' (use {' or '.join(TASKS)})")
    columns = (text_column or DEFAULT_COLUMNS[task][0], label_column or DEFAULT_COLUMNS[task][1])
    path = Path(data).expanduser()
    if path.is_file():
        splits = _from_file(path, task, columns, seed)
    elif data in DATASETS:
        splits = _from_named(data, task, columns)
    elif path.suffix:
        raise InputError(f"data file '{data}' not found")
    else:
        raise InputError(f"'{data}' is neither a file nor a named data set ({', '.join(DATASETS)})")
    names = label_names_of(splits, task)
    _check_rows_and_classes(len(splits["train"]) + len(splits["test"]), names, columns[1], data)
    return splits, names


# ---------------------------------------------------------------- tokenization

def align_labels(word_ids: list[int | None], word_labels: list[int]) -> list[int]:
    """Word-level tags -> one label per sub-word token: the first piece of a word gets the word's tag,
    later pieces and special tokens get IGNORE (so each word is scored once)."""
    labels, previous = [], None
    for word in word_ids:
        labels.append(IGNORE if word is None or word == previous else word_labels[word])
        previous = word
    return labels


def tokenize_splits(data: DatasetDict, tokenizer, task: str, max_length: int = 128) -> DatasetDict:
    """Token ids (truncated to max_length) and labels for every split, ready for the Trainer's collator."""
    max_length = min(max_length, tokenizer.model_max_length)
    if task == "token" and not tokenizer.is_fast:
        raise InputError("--task token needs a fast tokenizer (it maps sub-words back to words)")

    def encode(batch):
        if task == "seq":
            enc = tokenizer(batch["text"], truncation=True, max_length=max_length)
            enc["labels"] = batch["label"]
        else:
            enc = tokenizer(batch["tokens"], is_split_into_words=True, truncation=True, max_length=max_length)
            enc["labels"] = [align_labels(enc.word_ids(i), tags) for i, tags in enumerate(batch["tags"])]
        return enc

    bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # a second of work; no bar in notebooks and logs
    try:
        return data.map(encode, batched=True, remove_columns=data["train"].column_names)
    finally:
        if bars:
            datasets.enable_progress_bars()


# ---------------------------------------------------------------- metrics

def compute_metrics(predictions: np.ndarray, labels: np.ndarray, task: str, label_names: list[str]) -> dict:
    """seq: accuracy and macro-F1 of predicted label ids. token: seqeval entity precision/recall/F1 (and
    per-token accuracy) over the positions whose label is not IGNORE."""
    from sklearn.metrics import accuracy_score, f1_score

    if task == "seq":
        return {"accuracy": float(accuracy_score(labels, predictions)),
                "macro_f1": float(f1_score(labels, predictions, average="macro",
                                           labels=list(range(len(label_names))), zero_division=0))}
    from seqeval.metrics import f1_score as entity_f1
    from seqeval.metrics import precision_score, recall_score

    true, pred = [], []
    for p_row, l_row in zip(predictions, labels, strict=True):
        keep = l_row != IGNORE
        true.append([label_names[i] for i in l_row[keep]])
        pred.append([label_names[i] for i in p_row[keep]])
    flat_true, flat_pred = sum(true, []), sum(pred, [])
    return {"entity_f1": float(entity_f1(true, pred, zero_division=0)),
            "entity_precision": float(precision_score(true, pred, zero_division=0)),
            "entity_recall": float(recall_score(true, pred, zero_division=0)),
            "token_accuracy": float(np.mean([t == p for t, p in zip(flat_true, flat_pred, strict=True)]))}


def metrics_for_trainer(task: str, label_names: list[str]):
    """compute_metrics in the form the Trainer calls: logits and labels in an EvalPrediction."""
    def fn(eval_pred) -> dict:
        logits, labels = eval_pred.predictions, eval_pred.label_ids
        return compute_metrics(np.argmax(logits, axis=-1), labels, task, label_names)
    return fn


def majority_baseline(train_labels, test_labels, task: str, label_names: list[str]) -> dict:
    """The same metrics for a model that always predicts the most frequent training label (tag).

    seq: 1-D label ids. token: one row of per-token label ids per example (lists of any lengths, or a padded
    array); IGNORE marks the positions that are not scored."""
    if task == "token":
        train_labels, test_labels = _padded(train_labels), _padded(test_labels)
    train_labels, test_labels = np.asarray(train_labels), np.asarray(test_labels)
    majority = Counter(train_labels[train_labels != IGNORE].tolist()).most_common(1)[0][0]
    predictions = np.where(test_labels == IGNORE, IGNORE, majority)
    return compute_metrics(predictions, test_labels, task, label_names)


def _padded(rows) -> np.ndarray:
    rows = [list(r) for r in rows]
    width = max(len(r) for r in rows)
    return np.array([r + [IGNORE] * (width - len(r)) for r in rows])


# ---------------------------------------------------------------- model and trainer

def apply_peft(model, method: str, task: str):
    """Wrap a classifier with a peft method; the new head stays fully trainable."""
    check_peft(method)
    import peft

    task_type = peft.TaskType.SEQ_CLS if task == "seq" else peft.TaskType.TOKEN_CLS
    config = {"lora": lambda: peft.LoraConfig(task_type=task_type, r=8, lora_alpha=16, lora_dropout=0.1),
              "ia3": lambda: peft.IA3Config(task_type=task_type),
              "prompt": lambda: peft.PromptTuningConfig(task_type=task_type, num_virtual_tokens=16)}[method]()
    try:
        return peft.get_peft_model(model, config)
    except ValueError as err:  # e.g. an architecture peft has no default target modules for
        raise InputError(f"peft {method} cannot wrap this model: {err}") from None


def build_model(name: str, task: str, label_names: list[str], peft_method: str = "none", tokenizer=None,
                seed: int = 0):
    """A classifier with a fresh head of len(label_names) outputs, label names in its config.

    The new weights (the head, or all of a tiny-* model) are drawn after seeding, so a rerun starts equal."""
    seed_everything(seed)
    labels = dict(num_labels=len(label_names), id2label=dict(enumerate(label_names)),
                  label2id={n: i for i, n in enumerate(label_names)})
    extra = {} if name.startswith("tiny-") else {"ignore_mismatched_sizes": True}
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # the load report only says the new head is missing (expected)
    try:
        model = load_model(name, kind=TASKS[task], dtype=torch.float32, **labels, **extra)
    finally:
        transformers.logging.set_verbosity(verbosity)
    if tokenizer is not None and model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model if peft_method == "none" else apply_peft(model, peft_method, task)


class _PromptLabels:
    """Prompt tuning prepends virtual tokens to the input; token labels get as many IGNORE labels in front."""

    def __init__(self, collator, virtual_tokens: int):
        self.collator, self.virtual_tokens = collator, virtual_tokens

    def __call__(self, features):
        batch = self.collator(features)
        front = torch.full((batch["labels"].shape[0], self.virtual_tokens), IGNORE, dtype=batch["labels"].dtype)
        batch["labels"] = torch.cat([front, batch["labels"]], dim=1)
        return batch


def _log_last_step():
    """A callback that also logs the loss at the last step, so the final partial window is not lost."""
    class LogLastStep(transformers.TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == state.max_steps:
                control.should_log = True
    return LogLastStep()


def build_trainer(model, tokenizer, tokenized: DatasetDict, task: str, label_names: list[str], output: str,
                  max_steps: int = -1, epochs: float = 1.0, batch_size: int = 16, lr: float = 5e-5,
                  eval_steps: int = 0, save_steps: int = 0, seed: int = 0, progress: bool = True,
                  logging_steps: int = 10, bf16: bool = False) -> transformers.Trainer:
    """A Trainer with a seeded data order (so --resume ends where an uninterrupted run ends), step-wise
    evaluation on the validation split (eval_steps > 0) and checkpoints every save_steps (> 0)."""
    if save_steps > 0:  # log windows that never straddle a checkpoint: a resumed run logs the same losses
        logging_steps = math.gcd(logging_steps, save_steps)
    args = transformers.TrainingArguments(
        output_dir=output, max_steps=max_steps, num_train_epochs=epochs, per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=2 * batch_size, learning_rate=lr, warmup_steps=0.06, weight_decay=0.01,
        eval_strategy="steps" if eval_steps > 0 else "no", eval_steps=eval_steps or None,
        save_strategy="steps" if save_steps > 0 else "no", save_steps=save_steps or 500, save_total_limit=2,
        logging_steps=logging_steps, seed=seed, data_seed=seed, report_to="none", disable_tqdm=not progress,
        use_cpu=not (torch.cuda.is_available() or torch.backends.mps.is_available()), bf16=bf16,
        dataloader_num_workers=0, ddp_find_unused_parameters=False,
        # Each example's loss is a plain mean; scaling it by the number of processes (the default, meant for
        # token-level losses) doubles the reported loss under a 2-process launch.
        average_tokens_across_devices=False)
    if task == "seq":
        collator = transformers.DataCollatorWithPadding(tokenizer)
    else:
        collator = transformers.DataCollatorForTokenClassification(tokenizer, label_pad_token_id=IGNORE)
        virtual = getattr(getattr(model, "active_peft_config", None), "num_virtual_tokens", None)
        if virtual:
            collator = _PromptLabels(collator, virtual)
    return transformers.Trainer(model=model, args=args, train_dataset=tokenized["train"],
                                eval_dataset=tokenized["validation"], processing_class=tokenizer,
                                data_collator=collator, compute_metrics=metrics_for_trainer(task, label_names),
                                callbacks=[_log_last_step()])


def mean_train_loss(log_history: list[dict]) -> float:
    """Mean training loss over the logged steps (each log averages the steps since the previous one)."""
    total, steps, previous = 0.0, 0, 0
    for row in log_history:
        if "loss" in row:
            total += row["loss"] * (row["step"] - previous)
            steps, previous = row["step"], row["step"]
    return total / steps if steps else float("nan")


def last_checkpoint(output: str | Path) -> Path | None:
    """The newest complete checkpoint-N folder (trainer_state.json is written last, so a folder without
    it is a save that was cut short)."""
    found = [(int(m[1]), p) for p in Path(output).glob("checkpoint-*")
             if (m := re.fullmatch(r"checkpoint-(\d+)", p.name)) and (p / "trainer_state.json").exists()]
    return max(found)[1] if found else None


def evaluate_test(trainer: transformers.Trainer, tokenized: DatasetDict, task: str, label_names: list[str]) -> dict:
    """Test metrics of the trained model next to the majority baseline's."""
    result = trainer.predict(tokenized["test"])
    metrics = {k if k == "test_loss" else k.removeprefix("test_"): v for k, v in result.metrics.items()
               if not k.endswith(("_runtime", "_per_second"))}
    baseline = majority_baseline(tokenized["train"]["labels"], tokenized["test"]["labels"], task, label_names)
    metrics.update({f"majority_{k}": v for k, v in baseline.items()})
    return metrics


def save_outputs(trainer: transformers.Trainer, tokenizer, output: str | Path, metrics: dict) -> None:
    """Model (LoRA/IA3 merged into plain weights), tokenizer and metrics.json; on the main process only."""
    if not trainer.is_world_process_zero():
        return
    model = trainer.model
    if hasattr(model, "merge_and_unload") and not model.active_peft_config.is_prompt_learning:
        model = model.merge_and_unload()
    model.save_pretrained(output)
    tokenizer.save_pretrained(output)
    Path(output, "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")


# ---------------------------------------------------------------- command line

def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=list(TASKS), default="seq",
                        help="seq: one label per text (default); token: one tag per word")
    parser.add_argument("--model", default=MINILM, help=f"short name, local folder or Hub id (default {MINILM})")
    parser.add_argument("--data", help="named data set or a .csv/.tsv/.jsonl/.json file "
                                       "(default rotten_tomatoes; wnut_ner for --task token)")
    parser.add_argument("--text-column", help="column with the text (seq) or the list of words (token); "
                                              "default text / tokens")
    parser.add_argument("--label-column", help="column with the label (seq) or the list of tags (token); "
                                               "default label / ner_tags")
    parser.add_argument("--output", default="finetuned-classifier", help="folder for the model, metrics, checkpoints")
    parser.add_argument("--peft", default="none", help="none (full fine-tuning, default), lora, ia3 or prompt")
    parser.add_argument("--epochs", type=float, default=1.0, help="passes over the training split (default 1)")
    parser.add_argument("--max-steps", type=int, default=-1, help="optimizer steps; overrides --epochs when > 0")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, help="learning rate (default 5e-5 full, 5e-4 lora, 3e-3 ia3, 3e-2 prompt)")
    parser.add_argument("--max-length", type=int, default=128, help="truncate inputs to this many tokens")
    parser.add_argument("--max-train-examples", type=int, help="train on a seeded slice of this many examples")
    parser.add_argument("--max-eval-examples", type=int, help="validate and test on at most this many examples")
    parser.add_argument("--eval-steps", type=int, default=200, help="validate every N steps (0: never)")
    parser.add_argument("--save-steps", type=int, default=200, help="checkpoint every N steps (0: never)")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --output")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast (faster on CPUs with AVX512-BF16)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs as lines)")
    args = parser.parse_args(argv)
    for name in ("batch_size", "max_length", "max_train_examples", "max_eval_examples"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.max_steps == 0 or args.epochs <= 0:
        parser.error("--max-steps and --epochs must be positive")
    return args


def take(data: DatasetDict, train: int | None, evaluation: int | None, seed: int) -> DatasetDict:
    """Seeded slices of the splits (the whole split when the limit is None or larger)."""
    def cut(split: Dataset, n: int | None) -> Dataset:
        return split if n is None or n >= len(split) else split.shuffle(seed=seed).select(range(n))
    return DatasetDict({name: cut(split, train if name == "train" else evaluation) for name, split in data.items()})


def check_peft(method: str) -> None:
    """Fail fast (before any data or model is loaded) on a peft method this script cannot apply."""
    if method == "prefix":
        raise InputError("prefix tuning is not supported on encoder classifiers such as BERT (they have no "
                         f"past key values); use --peft {', '.join(PEFT_METHODS)}")
    if method not in ("none", *PEFT_METHODS):
        raise InputError(f"unknown --peft '{method}'; use none, {', '.join(PEFT_METHODS)}")


def run(args: argparse.Namespace) -> dict:
    """The whole job: data, model, training (or resuming), test metrics, saved outputs."""
    check_peft(args.peft)
    data, names = load_classification_data(args.data or DEFAULT_DATA[args.task], args.task, args.text_column,
                                           args.label_column, args.seed)
    data = take(data, args.max_train_examples, args.max_eval_examples, args.seed)
    checkpoint = last_checkpoint(args.output) if args.resume else None
    if args.resume and checkpoint is None:
        raise InputError(f"--resume: no complete checkpoint in {args.output} (was --save-steps 0?)")
    tokenizer = load_tokenizer(args.model)
    if tokenizer.pad_token is None:  # decoder tokenizers (GPT-2, LLaMA) have no pad token
        tokenizer.pad_token = tokenizer.eos_token
    tokenized = tokenize_splits(data, tokenizer, args.task, args.max_length)
    model = build_model(args.model, args.task, names, args.peft, tokenizer, args.seed)
    lr = args.lr or DEFAULT_LR.get(args.peft, 5e-5)
    trainer = build_trainer(model, tokenizer, tokenized, args.task, names, args.output, args.max_steps, args.epochs,
                            args.batch_size, lr, args.eval_steps, args.save_steps, args.seed, not args.no_progress,
                            bf16=args.bf16)
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    metrics = {"task": args.task, "model": args.model, "peft": args.peft, "steps": trainer.state.global_step,
               "train_loss": mean_train_loss(trainer.state.log_history),
               **evaluate_test(trainer, tokenized, args.task, names),
               "labels": names, "n_train": len(data["train"]), "n_test": len(data["test"])}
    save_outputs(trainer, tokenizer, args.output, metrics)
    return metrics if trainer.is_world_process_zero() else {}


def report(metrics: dict) -> str:
    keys = ("accuracy", "macro_f1") if metrics["task"] == "seq" else ("entity_f1", "token_accuracy")
    return "  ".join(f"{k} {metrics[k]:.3f} (majority {metrics['majority_' + k]:.3f})" for k in keys)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        metrics = run(args)
    except (InputError, OSError) as err:  # OSError: ModelNotAvailable, or a folder that is not a model
        print("error: " + " ".join(str(err).split()), file=sys.stderr)  # one line
        return 2
    if metrics:  # empty on the other processes of a multi-process launch
        print(f"test: {report(metrics)}  ->  saved to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
