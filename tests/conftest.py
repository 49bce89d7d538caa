"""Test settings shared by every test: offline Hub, one cache, quiet libraries."""

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ["pretrained", "fine-tuning", "applications", "optimization", "evaluation", "deployment"]

# The suite never needs the Hub: make any accidental Hub call fail fast instead of retrying.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(ROOT))
(ROOT / "build").mkdir(exist_ok=True)  # `make test` keeps pytest temp files in build/pytest


def notebooks() -> list[Path]:
    """Every lesson notebook of the six sections, in path order."""
    return sorted(p for s in SECTIONS for p in (ROOT / s).glob("[0-9][0-9]_*.ipynb"))


def scripts() -> list[Path]:
    """Every terminal script of the six sections (section-level .py files with a main)."""
    return sorted(p for s in SECTIONS for p in (ROOT / s).glob("*.py")
                  if "__main__" in p.read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def smollm2():
    from common import load_model, load_tokenizer
    return load_model("smollm2-135m-instruct").eval(), load_tokenizer("smollm2-135m-instruct")
