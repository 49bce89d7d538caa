"""Test settings shared by every test: offline Hub, one cache, quiet libraries."""

import os
import subprocess
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


def run_script(script: Path | str, *args, timeout: float = 240, **kwargs) -> subprocess.CompletedProcess:
    """Run a repository script with this Python from the repository root, output captured as text; `kwargs` go to
    subprocess.run (input=..., env=...). Test files bind their script: `run = partial(run_script, SCRIPT)`."""
    return subprocess.run([sys.executable, str(script), *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, **kwargs)


@pytest.fixture(scope="session")
def smollm2():
    from common import load_model, load_tokenizer
    return load_model("smollm2-135m-instruct").eval(), load_tokenizer("smollm2-135m-instruct")


def pytest_terminal_summary(terminalreporter):
    """After the run: each notebook's CI time and peak memory, as measured by this run."""
    import json

    results = ROOT / "build" / "notebook_ci_runs.json"
    if not results.exists():
        return
    data = json.loads(results.read_text())
    terminalreporter.section("notebooks in CI (this run)")
    for path, r in sorted(data.items()):
        terminalreporter.write_line(f"{r['seconds']:6.1f} s  {r['peak_rss_mb']:6.0f} MB  {path}")
