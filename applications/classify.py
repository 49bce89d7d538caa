"""Classify texts: train a classifier on your CSV/JSONL file (or a named set), predict labels for new texts, or
let a small chat model pick among labels you name (zero-shot, no training).

`train --method embed` (the default) embeds every text once with a frozen sentence encoder (all-MiniLM-L6-v2:
mean pooling, unit length, as applications/rag.py does) and fits a scikit-learn logistic regression on the
vectors: seconds on a CPU. `train --method finetune` trains all the encoder's weights plus a new head with
fine-tuning/finetune_classifier.py: minutes, usually more accurate with enough data. Either way the folder --out
holds the model, classifier.json (method, label names) and metrics.json (test accuracy and macro-F1 next to
the majority-class baseline). `predict` reads such a folder and labels a CSV/JSONL file or lines on stdin.
`zero-shot` scores each label name as the continuation of a prompt with SmolLM2 (evaluation/evaluate_model.py's
label_scores) and picks the most likely: no training data at all, but a 135M model is a weak judge.

Examples:
  python applications/classify.py train --out build/clf-rt                      # rotten_tomatoes, embeddings + LR
  python applications/classify.py train --data emotion --method finetune --epochs 10 --out build/clf-emotion
  python applications/classify.py train --data reviews.csv --text-column review --label-column stars --out build/clf
  python applications/classify.py predict build/clf-rt --data new_reviews.csv --output predicted.csv
  echo "A joyless, overlong mess." | python applications/classify.py predict build/clf-rt
  python applications/classify.py zero-shot --data reviews.csv --labels positive negative --prompt $'Review: {text}\\nSentiment ({labels}):'
  echo "The striker scored twice." | python applications/classify.py zero-shot --labels sport politics business --calibrate
  python applications/classify.py train --model sentence-transformers/all-mpnet-base-v2 --out build/clf  # online

Data: a named set (rotten_tomatoes, emotion, reuters8, newsgroups) or a .csv, .tsv, .jsonl or .json file with a
text and a label column; a file is split 70/10/20 into train/validation/test (seeded, stratified).
Output of predict and zero-shot: the input rows plus `predicted` and `probability` columns, as CSV (stdout or an
--output .csv) or JSONL (--output .jsonl). zero-shot's probability is the softmax of the label scores over the
labels given, not a calibrated confidence.

Python API (applications/09_sentiment_emotion.ipynb and 11_text_classification.ipynb use it):
  load_data(data, text_column, label_column, seed) -> (DatasetDict with text/label, label names)
  subsample(data, n_train, n_test, seed) -> DatasetDict
  train_embed(data, labels, encoder, C, progress) -> (EmbedClassifier, metrics)
  train_finetune(data, labels, out, model, epochs, max_steps, batch_size, lr, progress) -> (FinetunedClassifier, metrics)
  load_classifier(folder) -> classifier;  classifier.predict_proba(texts) -> (n, labels) array;  .save(folder)
  zero_shot_proba(texts, labels, model, tokenizer, prompt, progress) -> (n, labels) array
  calibrate(proba, prior) -> proba with the label preference on a content-free text divided out
  scores(labels_true, labels_pred, n_labels) -> {accuracy, macro_f1};  majority(train, test, n_labels) -> same
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "applications"), str(ROOT / "fine-tuning"), str(ROOT / "evaluation")]
from common import MINILM, SMOLLM2, ModelNotAvailable, load_model, load_tokenizer, write_jsonl  # noqa: E402, I001
import finetune_classifier as ftc  # noqa: E402
from evaluate_model import label_scores  # noqa: E402
from rag import Embedder  # noqa: E402

METHODS = ("embed", "finetune")
FORMAT = 1  # version of classifier.json
ZERO_SHOT_PROMPT = "Text: {text}\nCategory ({labels}):"


class ClassifyError(ValueError):
    """Bad input (file, column, labels, folder): printed as one line, exit code 2."""


# --- data ---------------------------------------------------------------------------------------------------

def load_data(data: str, text_column: str = "text", label_column: str = "label", seed: int = 0):
    """A named set or a user file as train/validation/test (columns text, label) and the label names."""
    import datasets

    bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # a written set is cast to ClassLabel on every load: no bar for that
    try:
        return ftc.load_classification_data(data, "seq", text_column, label_column, seed)
    except ftc.InputError as err:
        raise ClassifyError(str(err)) from None
    finally:
        if bars:
            datasets.enable_progress_bars()


def subsample(data, n_train: int | None, n_test: int | None, seed: int = 0):
    """Seeded slices: n_train training rows, n_test validation and test rows (None: the whole split)."""
    return ftc.take(data, n_train, n_test, seed)


def read_texts(source: str | None, column: str = "text") -> tuple[list[dict], list[str]]:
    """Rows and their texts from a .csv/.tsv/.jsonl/.json file, or one text per line of stdin (None or '-')."""
    if source in (None, "-"):
        texts = [line.strip() for line in sys.stdin if line.strip()]
        if not texts:
            raise ClassifyError("no text on stdin: pipe lines in, or give --data FILE")
        return [{column: t} for t in texts], texts
    path = Path(source).expanduser()
    if not path.is_file():
        raise ClassifyError(f"data file '{source}' not found")
    try:
        rows = ftc.read_rows(path)
    except ftc.InputError as err:
        raise ClassifyError(str(err)) from None
    if not rows:
        raise ClassifyError(f"{path.name} has no rows")
    if column not in rows[0]:
        raise ClassifyError(f"column '{column}' not found in {path.name}; its columns are: {', '.join(map(str, rows[0]))}")
    return rows, ["" if not isinstance(r[column], str) else r[column] for r in rows]


def write_rows(rows: list[dict], output: str | None) -> None:
    """CSV to stdout (output None), or to a .csv file, or JSONL to a .jsonl file."""
    if output and Path(output).suffix.lower() == ".jsonl":
        write_jsonl(output, rows)
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    if output:
        Path(output).write_text(buffer.getvalue(), encoding="utf-8")
    else:
        sys.stdout.write(buffer.getvalue())


# --- metrics ------------------------------------------------------------------------------------------------

def scores(truth, predicted, n_labels: int) -> dict:
    """Accuracy and macro-F1 (every label counts equally, also one never predicted)."""
    return ftc.compute_metrics(np.asarray(predicted), np.asarray(truth), "seq", [str(i) for i in range(n_labels)])


def majority(train_labels, test_labels, n_labels: int) -> dict:
    """The same metrics for always answering the most frequent training label."""
    return ftc.majority_baseline(train_labels, test_labels, "seq", [str(i) for i in range(n_labels)])


# --- method 1: frozen embeddings + logistic regression ------------------------------------------------------

class EmbedClassifier:
    """A frozen sentence encoder and a logistic regression on its unit vectors."""

    def __init__(self, encoder: str, labels: list[str], coef: np.ndarray, intercept: np.ndarray,
                 embedder: Embedder | None = None):
        self.encoder, self.labels, self.coef, self.intercept = encoder, labels, coef, intercept
        self._embedder = embedder

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:  # loaded on first use: a saved classifier opens without its model
            self._embedder = Embedder(self.encoder)
        return self._embedder

    def proba_from_vectors(self, vectors: np.ndarray) -> np.ndarray:
        """What sklearn's predict_proba gives: a sigmoid for two labels, a softmax over the labels otherwise."""
        logits = vectors @ self.coef.T + self.intercept
        if len(self.labels) == 2:
            p = 1 / (1 + np.exp(-logits[:, 0]))
            return np.stack([1 - p, p], axis=1)
        logits = logits - logits.max(axis=1, keepdims=True)
        return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)

    def predict_proba(self, texts: list[str], progress: bool = False) -> np.ndarray:
        return self.proba_from_vectors(self.embedder.encode(texts, progress=progress))

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / "head.npz", coef=self.coef, intercept=self.intercept)
        _write_meta(folder, "embed", self.labels, encoder=self.encoder)


def train_embed(data, labels: list[str], encoder: str = MINILM, C: float = 1.0,
                progress: bool = True) -> tuple[EmbedClassifier, dict]:
    """Embed train and test once, fit a logistic regression, score it on test next to the majority baseline."""
    from sklearn.linear_model import LogisticRegression

    start = time.perf_counter()
    embedder = Embedder(encoder)
    x_train = embedder.encode(data["train"]["text"], progress=progress)
    x_test = embedder.encode(data["test"]["text"], progress=progress)
    y_train = np.array(data["train"]["label"])
    head = LogisticRegression(C=C, max_iter=2000).fit(x_train, y_train)
    if len(head.classes_) != len(labels):
        raise ClassifyError(f"the training split holds {len(head.classes_)} of the {len(labels)} labels; "
                            "give more rows per label")
    model = EmbedClassifier(encoder, labels, head.coef_, head.intercept_, embedder)
    predicted = model.proba_from_vectors(x_test).argmax(axis=1)
    metrics = {"method": "embed", "model": encoder, **scores(data["test"]["label"], predicted, len(labels)),
               **{f"majority_{k}": v for k, v in majority(y_train, data["test"]["label"], len(labels)).items()},
               "labels": labels, "n_train": len(y_train), "n_test": len(data["test"]),
               "seconds": time.perf_counter() - start}
    return model, metrics


# --- method 2: fine-tuning (fine-tuning/finetune_classifier.py) ------------------------------------------------

class FinetunedClassifier:
    """An encoder with a sequence-classification head, as saved by finetune_classifier."""

    def __init__(self, folder: str | Path, labels: list[str], model=None, tokenizer=None, max_length: int = 128):
        self.folder, self.labels, self.max_length = Path(folder), labels, max_length
        self.tokenizer = tokenizer or load_tokenizer(str(folder))
        self.model = (model or load_model(str(folder), kind="seq-cls", dtype=torch.float32)).eval()

    @torch.inference_mode()
    def predict_proba(self, texts: list[str], progress: bool = False, batch_size: int = 32) -> np.ndarray:
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        device = next(self.model.parameters()).device
        for b in tqdm(range(0, len(texts), batch_size), desc="classifying", unit="batch", disable=not progress):
            enc = self.tokenizer(texts[b:b + batch_size], padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt").to(device)
            out[b:b + batch_size] = self.model(**enc).logits.float().softmax(-1).cpu().numpy()
        return out

    def save(self, folder: str | Path) -> None:
        self.model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        _write_meta(Path(folder), "finetune", self.labels)


def train_finetune(data, labels: list[str], out: str | Path, model: str = MINILM, epochs: float = 1.0,
                   max_steps: int = -1, batch_size: int = 16, lr: float = 5e-5, max_length: int = 128,
                   seed: int = 0, progress: bool = True) -> tuple[FinetunedClassifier, dict]:
    """Fine-tune all weights of `model` plus a new head on data["train"]; save to `out`; test metrics."""
    import transformers

    start = time.perf_counter()
    tokenizer = load_tokenizer(model)
    if tokenizer.pad_token is None:  # decoder tokenizers have no pad token
        tokenizer.pad_token = tokenizer.eos_token
    tokenized = ftc.tokenize_splits(data, tokenizer, "seq", max_length)
    net = ftc.build_model(model, "seq", labels, "none", tokenizer, seed)
    trainer = ftc.build_trainer(net, tokenizer, tokenized, "seq", labels, str(out), max_steps, epochs, batch_size,
                                lr, eval_steps=0, save_steps=0, seed=seed, progress=progress)
    if not progress:  # without a bar the Trainer prints every log as a dict; the caller shows the losses
        trainer.remove_callback(transformers.PrinterCallback)
    trainer.train()
    metrics = {"method": "finetune", "model": model, "steps": trainer.state.global_step,
               "train_loss": ftc.mean_train_loss(trainer.state.log_history),
               **ftc.evaluate_test(trainer, tokenized, "seq", labels),
               "labels": labels, "n_train": len(data["train"]), "n_test": len(data["test"]),
               "seconds": time.perf_counter() - start}
    ftc.save_outputs(trainer, tokenizer, out, metrics)
    _write_meta(Path(out), "finetune", labels)
    classifier = FinetunedClassifier(out, labels, trainer.model, tokenizer, max_length)
    classifier.log_history = trainer.state.log_history
    return classifier, metrics


# --- saved folders ------------------------------------------------------------------------------------------

def _write_meta(folder: Path, method: str, labels: list[str], **extra) -> None:
    meta = {"format": FORMAT, "method": method, "labels": labels, **extra}
    (folder / "classifier.json").write_text(json.dumps(meta, indent=1) + "\n")


def load_classifier(folder: str | Path):
    """An EmbedClassifier or FinetunedClassifier from a folder written by `train`."""
    folder = Path(folder).expanduser()
    if not (folder / "classifier.json").is_file():
        raise ClassifyError(f"no classifier in '{folder}' (classifier.json is missing): "
                            f"train one with `classify.py train --out {folder}`")
    try:
        meta = json.loads((folder / "classifier.json").read_text())
        if meta.get("format") != FORMAT or meta.get("method") not in METHODS:
            raise ValueError("unknown format or method")
        if meta["method"] == "embed":
            with np.load(folder / "head.npz") as head:
                return EmbedClassifier(meta["encoder"], meta["labels"], head["coef"], head["intercept"])
        return FinetunedClassifier(folder, meta["labels"])
    except ModelNotAvailable:
        raise
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ClassifyError(f"the classifier in '{folder}' cannot be read ({type(err).__name__}: "
                            f"{' '.join(str(err).split())[:120]}); train it again") from None


# --- zero-shot --------------------------------------------------------------------------------------------------

def zero_shot_proba(texts: list[str], labels: list[str], model=None, tokenizer=None,
                    prompt: str = ZERO_SHOT_PROMPT, progress: bool = False, max_chars: int = 1000) -> np.ndarray:
    """Softmax over the labels of each label's log-likelihood as the continuation of the filled-in prompt.

    Texts are cut to max_chars characters: a long document costs one forward pass of its full length per label.
    """
    if len(labels) < 2:
        raise ClassifyError("zero-shot needs at least two labels")
    if "{text}" not in prompt:
        raise ClassifyError("the prompt must contain {text}")
    tokenizer = tokenizer or load_tokenizer(SMOLLM2)
    model = model if model is not None else load_model(SMOLLM2, dtype=torch.float32).eval()
    out = np.zeros((len(texts), len(labels)))
    for i, text in enumerate(tqdm(texts, desc="zero-shot", unit="text", disable=not progress)):
        s = np.array(label_scores(model, tokenizer, text[:max_chars], labels, prompt))
        out[i] = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
    return out


def calibrate(proba: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Divide out the model's preference for some labels (Zhao et al. 2021, "Calibrate before use").

    prior: zero_shot_proba of a content-free text such as "N/A" (one row). Returns renormalised probabilities."""
    p = proba / prior.reshape(1, -1)
    return p / p.sum(axis=1, keepdims=True)


# --- command line ------------------------------------------------------------------------------------------

def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train a classifier and save it to --out")
    train.add_argument("--data", default="rotten_tomatoes", help="named set or .csv/.tsv/.jsonl/.json file "
                                                                  "(default: %(default)s)")
    train.add_argument("--text-column", default="text", help="column with the text (default: %(default)s)")
    train.add_argument("--label-column", default="label", help="column with the label (default: %(default)s)")
    train.add_argument("--method", choices=METHODS, default="embed",
                       help="embed: frozen embeddings + logistic regression (fast, default); finetune: all weights")
    train.add_argument("--model", default=MINILM, help="encoder: short name, local folder or Hub id "
                                                        "(default: %(default)s)")
    train.add_argument("--out", default="build/classifier", help="folder to save to (default: %(default)s)")
    train.add_argument("--max-train-examples", type=int, help="train on a seeded slice of this many rows")
    train.add_argument("--max-test-examples", type=int, help="test on at most this many rows")
    train.add_argument("--C", type=float, default=1.0, help="embed: inverse regularisation strength (default 1)")
    train.add_argument("--epochs", type=float, default=1.0, help="finetune: passes over the training rows")
    train.add_argument("--max-steps", type=int, default=-1, help="finetune: optimizer steps (overrides --epochs)")
    train.add_argument("--batch-size", type=int, default=16, help="finetune: rows per step (default 16)")
    train.add_argument("--lr", type=float, default=5e-5, help="finetune: peak learning rate (default 5e-5)")
    train.add_argument("--seed", type=int, default=0)
    for name, help_text in (("predict", "label texts with a saved classifier"),
                            ("zero-shot", "pick among --labels with a causal LM, no training")):
        p = sub.add_parser(name, help=help_text)
        if name == "predict":
            p.add_argument("folder", help="a folder written by `train`")
        else:
            p.add_argument("--labels", nargs="+", required=True, help="label names, e.g. positive negative")
            p.add_argument("--model", default=SMOLLM2, help="causal LM (default: %(default)s)")
            p.add_argument("--prompt", default=ZERO_SHOT_PROMPT, help="template with {text} and {labels}")
            p.add_argument("--calibrate", action="store_true",
                           help="divide out the label preference the model shows on the empty text 'N/A'")
        p.add_argument("--data", help="a .csv/.tsv/.jsonl/.json file (default: one text per line on stdin)")
        p.add_argument("--text-column", default="text", help="column with the text (default: %(default)s)")
        p.add_argument("--output", help="write a .csv or .jsonl file instead of CSV on stdout")
    for p in sub.choices.values():
        p.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    for name in ("max_train_examples", "max_test_examples", "batch_size"):
        if getattr(args, name, None) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def run_train(args: argparse.Namespace) -> dict:
    data, labels = load_data(args.data, args.text_column, args.label_column, args.seed)
    data = subsample(data, args.max_train_examples, args.max_test_examples, args.seed)
    if args.method == "embed":
        classifier, metrics = train_embed(data, labels, args.model, args.C, progress=not args.no_progress)
        classifier.save(args.out)
        (Path(args.out) / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
        return metrics
    return train_finetune(data, labels, args.out, args.model, args.epochs, args.max_steps, args.batch_size,
                          args.lr, seed=args.seed, progress=not args.no_progress)[1]


def run_predict(args: argparse.Namespace) -> None:
    if args.command == "predict":
        classifier = load_classifier(args.folder)  # fail on a bad folder before reading stdin
        rows, texts = read_texts(args.data, args.text_column)
        labels, proba = classifier.labels, classifier.predict_proba(texts, progress=not args.no_progress)
    else:
        rows, texts = read_texts(args.data, args.text_column)
        labels = args.labels
        if len(set(labels)) < 2:
            raise ClassifyError("--labels needs at least two different labels")
        model = load_model(args.model, dtype=torch.float32).eval()
        tokenizer = load_tokenizer(args.model)
        proba = zero_shot_proba(texts, labels, model, tokenizer, args.prompt, progress=not args.no_progress)
        if args.calibrate:
            proba = calibrate(proba, zero_shot_proba(["N/A"], labels, model, tokenizer, args.prompt))
    for row, p in zip(rows, proba, strict=True):
        row["predicted"], row["probability"] = labels[int(p.argmax())], round(float(p.max()), 4)
    write_rows(rows, args.output)
    if args.output:
        print(f"wrote {len(rows)} rows to {args.output}", file=sys.stderr)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        if args.command == "train":
            m = run_train(args)
            print(f"test: accuracy {m['accuracy']:.3f} (majority {m['majority_accuracy']:.3f})  macro-F1 "
                  f"{m['macro_f1']:.3f} (majority {m['majority_macro_f1']:.3f})  ->  saved to {args.out}")
        else:
            run_predict(args)
    except (ClassifyError, OSError) as err:  # OSError: ModelNotAvailable, an unwritable --out
        print("error: " + " ".join(str(err).split()), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
