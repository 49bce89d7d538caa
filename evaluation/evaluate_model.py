r"""Score a causal language model on text: perplexity and bits per byte (or label accuracy), as JSON and a table.

Perplexity is exp(mean negative log-likelihood per token). A text longer than the model's context is scored with
a sliding window: the model reads at most --window tokens at a time and the window moves by --stride tokens, so
every token is scored exactly once with at least window - stride + 1 tokens of context (except near the start).
--stride equal to --window is plain chunking: cheaper, but the first tokens of every chunk see almost no context,
so the perplexity comes out higher. Perplexity per token depends on the tokenizer, so two models with different
tokenizers are compared in bits per byte: the same total log-likelihood, divided by the UTF-8 bytes of the text.

--task classify scores a labelled data set instead: for each text, the label whose name the model finds most
likely after a prompt (zero-shot, no training) is the prediction; the output is accuracy against the majority
class. The prompt matters a lot for small models: on 100 reviews SmolLM2 scored 0.79 (majority class 0.53) with
a prompt that the review continues naturally, and below the majority class with the default question-style prompt.

Examples:
  python evaluation/evaluate_model.py                                  # SmolLM2 on held-out Shakespeare plays
  python evaluation/evaluate_model.py --data news --max-chars 50000 --window 1024 --stride 512
  python evaluation/evaluate_model.py --data python_docs --dtype int8 --keep-float down_proj --json build/int8.json
  python evaluation/evaluate_model.py --data notes.txt                 # your own text file
  python evaluation/evaluate_model.py --data posts.jsonl --column body # one JSON object per line
  python evaluation/evaluate_model.py --model runs/gpt2 --window 128   # a model saved by pretrained/pretrain.py
  python evaluation/evaluate_model.py --model HuggingFaceTB/SmolLM2-360M --dtype bfloat16   # any Hub id
  python evaluation/evaluate_model.py --task classify --data emotion --limit 50       # labels from the data
  python evaluation/evaluate_model.py --task classify --data rotten_tomatoes --prompt $'{text}\nOverall, the review is'

Data: a name from common.load_dataset (shakespeare, news, python_docs, python_code, rotten_tomatoes, ...; the
first of the test, validation and train splits unless --split says otherwise) or a .txt, .jsonl, .json or .csv
file. Documents are joined with blank lines and cut at --max-chars. --dtype int8 is torch dynamic int8
quantization of the linear layers (CPU; --keep-float down_proj leaves the layers so named in float32), nf4 is
bitsandbytes 4-bit NormalFloat.

Python API (evaluation/01_perplexity.ipynb uses it):
  token_losses(model, ids) -> Tensor                    NLL (nats) of ids[1:], one forward pass
  window_spans(n, window, stride) -> [(start, first, last)]    inputs ids[start:last-1] score ids[first:last]
  sliding_window_losses(model, ids, window, stride) -> Tensor    every token of ids[1:] scored once
  sliding_window_nll(model, ids, window, stride) -> (total_nll_nats, n_tokens)
  perplexity(total_nll, n_tokens), bits_per_byte(total_nll_nats, n_bytes)
  encode(tokenizer, text) -> [start token] + token ids;  start_token_id(tokenizer)
  load_variant(name, dtype, keep_float=()) -> model;  model_size_mb(model);  model_context(model)
  load_rows(data, split) -> (datasets.Dataset, source);  join_text(rows, column, max_chars) -> str
  evaluate_text(model, tokenizer, text, window, stride) -> dict
  label_scores(model, tokenizer, text, labels, prompt);  classify(model, tokenizer, texts, labels, prompt)
"""

from __future__ import annotations

import argparse
import copy
import csv
import inspect
import io
import json
import math
import sys
import time
import warnings
from pathlib import Path

import datasets
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from common import DATASETS, SMOLLM2, ModelNotAvailable, load_dataset, load_model, load_tokenizer  # noqa: E402

DTYPES = ("float32", "bfloat16", "float16", "int8", "nf4")
FILE_TYPES = (".txt", ".jsonl", ".json", ".csv")
DEFAULT_PROMPT = "Text: {text}\nWhich label fits best ({labels})?\nLabel:"


class DataError(ValueError):
    """A problem with the user's data or settings: the CLI prints the message and exits with code 2."""


# ------------------------------------------------------------------------------------------------ scoring

def _logits(model, input_ids: torch.Tensor, keep: int) -> torch.Tensor:
    """The last `keep` positions' logits in float32; `logits_to_keep` skips the output layer for the rest."""
    if "logits_to_keep" in inspect.signature(model.forward).parameters:
        logits = model(input_ids=input_ids, logits_to_keep=keep).logits
    else:
        logits = model(input_ids=input_ids).logits
    return logits[:, -keep:].float()  # log-softmax in float32 even for bf16/int8 models


@torch.inference_mode()
def token_losses(model, ids: list[int] | torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood in nats of each of ids[1:] given all the tokens before it (one forward pass).

    ids[0] is context only (it has nothing to be predicted from). The sequence must fit the model's context.
    """
    ids = torch.as_tensor(ids, dtype=torch.long).view(-1)
    if len(ids) < 2:
        raise DataError("need at least 2 tokens to score one")
    logits = _logits(model, ids[None, :-1].to(model.device), len(ids) - 1)[0]
    return torch.nn.functional.cross_entropy(logits, ids[1:].to(logits.device), reduction="none").cpu()


def window_spans(n: int, window: int, stride: int) -> list[tuple[int, int, int]]:
    """The forward passes of the sliding window over n tokens, as (start, first, last).

    Pass k reads ids[start:last-1] (at most `window` tokens) and scores targets ids[first:last], the last
    `stride` (or fewer) predictions, so targets 1..n-1 are each scored once, with between
    window - stride + 1 and window tokens of context. stride == window: non-overlapping chunks.
    """
    if not 1 <= stride <= window:
        raise DataError(f"need 1 <= stride <= window, got stride {stride} and window {window}")
    # Windows sit at fixed offsets (as in chunking): the last, partial one is shorter, not moved back.
    return [(max(0, first - 1 - (window - stride)), first, min(first + stride, n)) for first in range(1, n, stride)]


@torch.inference_mode()
def sliding_window_losses(model, ids: list[int] | torch.Tensor, window: int, stride: int) -> torch.Tensor:
    """NLL in nats of every token of ids[1:], each scored once by the sliding window (see window_spans)."""
    ids = torch.as_tensor(ids, dtype=torch.long).view(-1)
    losses = []
    for start, first, last in window_spans(len(ids), window, stride):
        logits = _logits(model, ids[None, start:last - 1].to(model.device), last - first)[0]
        losses.append(torch.nn.functional.cross_entropy(logits, ids[first:last].to(logits.device),
                                                        reduction="none").cpu())
    return torch.cat(losses) if losses else torch.zeros(0)


def sliding_window_nll(model, ids: list[int] | torch.Tensor, window: int, stride: int) -> tuple[float, int]:
    """Total NLL in nats and the number of tokens scored (len(ids) - 1), with the sliding window."""
    losses = sliding_window_losses(model, ids, window, stride)
    return float(losses.double().sum()), len(losses)


def perplexity(total_nll: float, n_tokens: int) -> float:
    """exp(mean NLL per token): the effective number of equally likely choices the model hesitates between."""
    return math.exp(total_nll / n_tokens)


def bits_per_byte(total_nll_nats: float, n_bytes: int) -> float:
    """Total NLL converted from nats to bits (÷ ln 2), per UTF-8 byte of the text: independent of the tokenizer."""
    return total_nll_nats / math.log(2) / n_bytes


def start_token_id(tokenizer) -> int:
    """The token to put before a text, so that its first real token is scored too.

    What the model saw at the start of a document in pretraining: the BOS the tokenizer adds itself (LLaMA-2,
    Gemma), else <|endoftext|> (GPT-2, SmolLM2, Qwen), else the end-of-sequence token (pretrained/pretrain.py).
    """
    added = tokenizer("a")["input_ids"]
    if tokenizer.bos_token_id is not None and added and added[0] == tokenizer.bos_token_id:
        return tokenizer.bos_token_id
    vocab = tokenizer.get_vocab()
    if "<|endoftext|>" in vocab:
        return vocab["<|endoftext|>"]
    for tid in (tokenizer.eos_token_id, tokenizer.bos_token_id, tokenizer.sep_token_id, tokenizer.cls_token_id):
        if tid is not None:
            return tid
    raise DataError("the tokenizer has no BOS, EOS or <|endoftext|> token to start the text with")


def encode(tokenizer, text: str) -> list[int]:
    """[start token] + the text's tokens (no other special tokens): scoring ids[1:] scores the whole text."""
    return [start_token_id(tokenizer)] + tokenizer(text, add_special_tokens=False)["input_ids"]


def model_context(model) -> int | None:
    """The longest sequence the model's position embeddings allow (None if the config does not say)."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    for name in ("max_position_embeddings", "n_positions", "n_ctx", "max_sequence_length", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def evaluate_text(model, tokenizer, text: str, window: int, stride: int) -> dict:
    """Perplexity, bits per byte and the counts behind them for one text."""
    ids = encode(tokenizer, text)
    start = time.perf_counter()
    nll, n_tokens = sliding_window_nll(model, ids, window, stride)
    seconds = time.perf_counter() - start
    n_bytes = len(text.encode("utf-8"))
    return {"perplexity": perplexity(nll, n_tokens), "bits_per_byte": bits_per_byte(nll, n_bytes),
            "loss_per_token": nll / n_tokens, "nll_nats": nll, "tokens": n_tokens, "bytes": n_bytes,
            "chars": len(text), "bytes_per_token": n_bytes / n_tokens, "window": window, "stride": stride,
            "forward_passes": len(window_spans(len(ids), window, stride)), "seconds": seconds,
            "tokens_per_s": n_tokens / max(seconds, 1e-9)}


# ---------------------------------------------------------------------------------------- models

def load_variant(name: str = SMOLLM2, dtype: str = "float32", keep_float: tuple[str, ...] = ()):
    """A causal LM in one of DTYPES, in eval mode: float weights, torch dynamic int8, or bitsandbytes NF4.

    int8: every nn.Linear whose name contains none of `keep_float` (e.g. ("down_proj",)) gets int8 weights.
    """
    if dtype not in DTYPES:
        raise DataError(f"unknown dtype '{dtype}'; choose one of: {', '.join(DTYPES)}")
    if dtype in ("float32", "bfloat16", "float16"):
        return load_model(name, dtype=getattr(torch, dtype)).eval()
    if dtype == "int8":
        from torch.ao.quantization import per_channel_dynamic_qconfig

        model = load_model(name, dtype=torch.float32).eval()
        # Weights become int8 with one scale per output row; activations are quantized on the fly, one scale
        # per tensor, which is what hurts layers whose inputs have outliers. Embeddings stay float32.
        spec = {n: per_channel_dynamic_qconfig for n, m in model.named_modules()
                if isinstance(m, torch.nn.Linear) and not any(k in n for k in keep_float)}
        with warnings.catch_warnings():  # deprecated in favour of torchao, but still the simplest CPU int8
            warnings.simplefilter("ignore")
            return torch.ao.quantization.quantize_dynamic(model, spec, dtype=torch.qint8)
    if name.startswith("tiny-"):
        raise DataError("nf4 quantizes pretrained weights; a tiny-* model is built from a config. Save it with "
                        "save_pretrained and pass the folder")
    try:
        import bitsandbytes  # noqa: F401
        from transformers import BitsAndBytesConfig
    except ImportError:
        raise DataError("--dtype nf4 needs bitsandbytes: pip install bitsandbytes") from None
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return load_model(name, quantization_config=quant, device_map=device).eval()


def model_size_mb(model) -> float:
    """Size of the saved weights (torch.save of the state dict; tied weights once), in MB."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell() / 1e6


# ------------------------------------------------------------------------------------------ data

def load_rows(data: str, split: str | None = None):
    """(datasets.Dataset, source description) for a load_dataset name or a .txt/.jsonl/.json/.csv file."""
    from datasets import Dataset

    path = Path(data).expanduser()
    if path.suffix.lower() in FILE_TYPES or path.exists() or "/" in data:
        return Dataset.from_list(_read_file(path)), str(data)
    if data not in DATASETS:
        raise DataError(f"'{data}' is neither a file nor a data set name. Files: {', '.join(FILE_TYPES)}; "
                        f"data sets: {', '.join(DATASETS)}")
    dataset = load_dataset(data)
    if split is None:  # prefer held-out text: a model may have been trained on `train`
        split = next(s for s in ("test", "validation", "train") if s in dataset)
    if split not in dataset:
        raise DataError(f"data set '{data}' has no split '{split}'; its splits: {', '.join(dataset)}")
    return dataset[split], f"{data}/{split}"


def _read_file(path: Path) -> list[dict]:
    if not path.is_file():
        raise DataError(f"no such file: {path}" if not path.exists() else f"not a file: {path}")
    suffix = path.suffix.lower()
    if suffix not in FILE_TYPES:
        raise DataError(f"cannot read {path.name}: use a {', '.join(FILE_TYPES)} file")
    content = path.read_text(encoding="utf-8", errors="replace")
    if suffix == ".txt":
        rows = [{"text": content}] if content.strip() else []
    elif suffix == ".csv":
        rows = list(csv.DictReader(io.StringIO(content)))
    elif suffix == ".json":
        try:
            rows = json.loads(content)
        except json.JSONDecodeError as err:
            raise DataError(f"{path.name} is not valid JSON ({err})") from None
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise DataError(f"{path.name} must hold a JSON list of objects, one per document")
    else:
        rows = []
        for number, line in enumerate(content.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise DataError(f"{path.name}, line {number}: not valid JSON ({err.msg})") from None
                if not isinstance(rows[-1], dict):
                    raise DataError(f"{path.name}, line {number}: expected a JSON object, one per line")
    if not rows:
        raise DataError(f"{path.name} holds no documents")
    return rows


def check_column(rows, column: str) -> None:
    if column not in rows.column_names:
        raise DataError(f"no column '{column}'; the available columns are: {', '.join(rows.column_names)} "
                        f"(choose one with --column)")


def join_text(rows, column: str = "text", max_chars: int | None = None) -> str:
    """The documents of one column joined by blank lines, cut at max_chars (None: all)."""
    check_column(rows, column)
    parts, size = [], 0
    for value in rows[column]:
        if not isinstance(value, str):
            raise DataError(f"column '{column}' holds {type(value).__name__}, not text")
        parts.append(value)
        size += len(value) + 2
        if max_chars is not None and size >= max_chars:
            break
    text = "\n\n".join(parts)[:max_chars]
    if not text.strip():
        raise DataError(f"column '{column}' holds no text")
    return text


# ---------------------------------------------------------------------------------- classification

@torch.inference_mode()
def label_scores(model, tokenizer, text: str, labels: list[str], prompt: str = DEFAULT_PROMPT) -> list[float]:
    """Log-probability of each label's tokens (" positive") after the prompt filled in with the text.

    The prompt is read once; every label continues from a copy of its key/value cache, so eight labels cost about
    one forward pass over the prompt instead of eight.
    """
    context = encode(tokenizer, prompt.format(text=text, labels=", ".join(labels)))
    label_ids = [tokenizer(" " + label, add_special_tokens=False)["input_ids"] for label in labels]
    limit = model_context(model) or 10**9
    if len(context) + max(map(len, label_ids)) > limit:
        # a text too long for the model loses its beginning: the question and the label come last
        return [-float(token_losses(model, (context + ids)[-limit:])[-len(ids):].sum()) for ids in label_ids]
    keep = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}
    out = model(input_ids=torch.tensor([context], device=model.device), use_cache=True, **keep)
    first = out.logits[0, -1].float().log_softmax(-1)
    scores = []
    for ids in label_ids:
        score = float(first[ids[0]])
        if len(ids) > 1:  # the label's other tokens, each predicted from the prompt and the label so far
            cache = copy.deepcopy(out.cache)
            logits = model(input_ids=torch.tensor([ids[:-1]], device=model.device), cache=cache,
                           use_cache=True).logits[0].float()
            score += float(logits.log_softmax(-1)[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].sum())
        scores.append(score)
    return scores


def classify(model, tokenizer, texts: list[str], labels: list[str], prompt: str = DEFAULT_PROMPT) -> list[int]:
    """Zero-shot: for each text, the index of the label the model finds most likely after the prompt."""
    predictions = []
    for text in texts:
        scores = label_scores(model, tokenizer, text, labels, prompt)
        predictions.append(max(range(len(labels)), key=scores.__getitem__))
    return predictions


def label_names(rows, column: str) -> list[str]:
    """Label names of a ClassLabel column, or the sorted distinct values of a string column."""
    check_column(rows, column)
    feature = rows.features[column]
    names = getattr(feature, "names", None)
    return list(names) if names else sorted({str(v) for v in rows[column]})


def evaluate_classification(model, tokenizer, rows, column: str, label_column: str, limit: int,
                            prompt: str = DEFAULT_PROMPT) -> dict:
    check_column(rows, column)
    labels = label_names(rows, label_column)
    rows = rows.select(range(min(limit, len(rows))))
    names = getattr(rows.features[label_column], "names", None)
    truth = [labels.index(names[v] if names else str(v)) for v in rows[label_column]]
    start = time.perf_counter()
    predicted = classify(model, tokenizer, list(rows[column]), labels, prompt)
    majority = max(set(truth), key=truth.count)
    return {"accuracy": sum(p == t for p, t in zip(predicted, truth, strict=True)) / len(truth),
            "majority_class_accuracy": truth.count(majority) / len(truth), "examples": len(truth),
            "prompt": prompt, "labels": labels, "predicted_counts": {lab: predicted.count(i) for i, lab in enumerate(labels)},
            "true_counts": {lab: truth.count(i) for i, lab in enumerate(labels)},
            "seconds": time.perf_counter() - start}


# ----------------------------------------------------------------------------------------------- CLI

def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:5]))
    parser.add_argument("--model", default=SMOLLM2, help="short name, local folder or Hub id (default: %(default)s)")
    parser.add_argument("--data", default="shakespeare", help="data set name or .txt/.jsonl/.json/.csv file "
                                                              "(default: %(default)s)")
    parser.add_argument("--split", help="split of a named data set (default: test, else validation, else train)")
    parser.add_argument("--column", default="text", help="column holding the text (default: %(default)s)")
    parser.add_argument("--max-chars", type=int, default=20_000,
                        help="score at most this many characters (default: %(default)s; 0: all)")
    parser.add_argument("--window", type=int, help="tokens per forward pass (default: min(1024, model context))")
    parser.add_argument("--stride", type=int, help="tokens the window moves by (default: window / 2)")
    parser.add_argument("--dtype", choices=DTYPES, default="float32", help="weights (default: %(default)s)")
    parser.add_argument("--keep-float", nargs="+", default=[], metavar="NAME",
                        help="int8: leave linear layers whose name contains NAME in float32 (e.g. down_proj)")
    parser.add_argument("--task", choices=("perplexity", "classify"), default="perplexity")
    parser.add_argument("--label-column", default="label", help="classify: column of labels (default: %(default)s)")
    parser.add_argument("--limit", type=int, default=100, help="classify: examples to score (default: %(default)s)")
    parser.add_argument("--prompt", default=DEFAULT_PROMPT, help="classify: template with {text} and {labels}")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    for name in ("window", "stride", "limit", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name} must be at least 1")
    if args.max_chars < 0:
        parser.error("--max-chars must be 0 (all) or more")
    if "{text}" not in args.prompt:
        parser.error("--prompt must contain {text}")
    return args


def run(args: argparse.Namespace) -> dict:
    """The whole CLI job; raises DataError / ModelNotAvailable for problems the user can fix."""
    rows, source = load_rows(args.data, args.split)
    check_column(rows, args.column)  # before loading the model: fail in a second, not after
    if args.task == "classify":
        check_column(rows, args.label_column)
    tokenizer = load_tokenizer(args.model)
    model = load_variant(args.model, args.dtype, tuple(args.keep_float))
    result = {"model": args.model, "dtype": args.dtype, "keep_float": args.keep_float, "data": source, "column": args.column, "task": args.task}
    if args.task == "classify":
        return result | evaluate_classification(model, tokenizer, rows, args.column, args.label_column,
                                                args.limit, args.prompt)
    context = model_context(model)
    window = args.window or min(1024, context or 1024)
    if context is not None and window > context:
        raise DataError(f"--window {window} is longer than the model's context of {context} tokens; "
                        f"use --window {context} or less")
    stride = args.stride or max(1, window // 2)
    if stride > window:
        raise DataError(f"--stride {stride} is larger than --window {window}: tokens would be skipped. "
                        f"Use a stride of at most {window} (equal to the window: plain chunks)")
    text = join_text(rows, args.column, args.max_chars or None)
    return result | {"context": context} | evaluate_text(model, tokenizer, text, window, stride)


def table(result: dict) -> str:
    """A short human-readable summary of run()'s result."""
    head = [("model", f"{result['model']} ({result['dtype']})"), ("data", f"{result['data']}, column {result['column']}")]
    if result["task"] == "classify":
        rows = head + [("examples", f"{result['examples']}, labels: {', '.join(result['labels'])}"),
                       ("accuracy", f"{result['accuracy']:.3f} (majority class: {result['majority_class_accuracy']:.3f})"),
                       ("predicted", ", ".join(f"{k} {v}" for k, v in result["predicted_counts"].items())),
                       ("time", f"{result['seconds']:.1f} s")]
    else:
        rows = head + [
            ("text", f"{result['chars']:,} characters = {result['bytes']:,} bytes"),
            ("tokens scored", f"{result['tokens']:,} ({result['bytes_per_token']:.2f} bytes per token)"),
            ("window / stride", f"{result['window']} / {result['stride']} tokens ({result['forward_passes']} forward passes)"),
            ("loss", f"{result['loss_per_token']:.4f} nats per token"),
            ("perplexity", f"{result['perplexity']:.3f} per token"),
            ("bits per byte", f"{result['bits_per_byte']:.4f}"),
            ("time", f"{result['seconds']:.1f} s ({result['tokens_per_s']:,.0f} tokens/s)")]
    return "\n".join(f"{k:<16} {v}" for k, v in rows)


def main(argv=None) -> int:
    args = parse_args(argv)
    datasets.disable_progress_bars()  # a first load of a written set would print a casting bar
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        result = run(args)
    except (DataError, ModelNotAvailable) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(table(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
