"""Helpers for the repository's lm-eval tasks: data loaders and a SQuAD-style token F1.

The YAML files next to this one refer to these functions with `!function utils.<name>`. The data
come from the repository (`common.load_dataset`, the same seeded splits every lesson uses), so the
tasks run offline and from any working directory.
"""

from __future__ import annotations

import re
import string
import sys
from collections import Counter
from pathlib import Path

from datasets import DatasetDict

try:
    from common import load_dataset
except ImportError:  # the repository is not installed (pip install -e .): import it from its folder
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from common import load_dataset

QA_FEWSHOT_POOL = 10  # python_qa rows held out as few-shot examples; the other 50 are the test set


def rotten_tomatoes(**metadata) -> DatasetDict:
    """Movie-review snippets, label 0 negative / 1 positive (train 10,201 / validation / test 1,276)."""
    return load_dataset("rotten_tomatoes")


def python_qa(**metadata) -> DatasetDict:
    """The 60 hand-written questions over the Python reference: 10 few-shot examples, 50 to test."""
    rows = load_dataset("python_qa")["test"]
    parts = rows.train_test_split(test_size=len(rows) - QA_FEWSHOT_POOL, seed=0)
    return DatasetDict(train=parts["train"], test=parts["test"])


def normalize(text: str) -> str:
    """SQuAD's answer normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def token_f1(references: list[str], predictions: list[str], **kwargs) -> float:
    """Token-overlap F1 between one prediction and one reference (SQuAD definition)."""
    pred, gold = normalize(predictions[0]).split(), normalize(references[0]).split()
    common = sum((Counter(pred) & Counter(gold)).values())
    if not pred or not gold:
        return float(pred == gold)
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)
