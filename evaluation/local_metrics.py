"""Load this section's local `evaluate` metric modules by name, from any working directory.

The Hub's metric scripts (`evaluate.load("rouge")`) need the internet. The modules in `evaluation/metrics/`
are ordinary `evaluate.Metric` classes in local files, loaded by path, so they work offline:

    from local_metrics import load_metric              # from evaluation/ (notebooks run there)
    rouge = load_metric("rouge")                       # = evaluate.load(".../evaluation/metrics/rouge")
    rouge.compute(predictions=["the cat sat"], references=["the cat sat on the mat"])

`evaluate.load` copies the script into its modules cache ($HF_MODULES_CACHE, default
~/.cache/huggingface/modules) and imports it from there.
"""

from __future__ import annotations

from pathlib import Path

METRICS_DIR = Path(__file__).resolve().parent / "metrics"


def available() -> list[str]:
    """Names of the local metric modules (a folder `metrics/<name>/` holding `<name>.py`)."""
    return sorted(p.parent.name for p in METRICS_DIR.glob("*/*.py") if p.stem == p.parent.name)


def metric_path(name: str) -> Path:
    """The folder of a local metric module; a clear error for an unknown name."""
    path = METRICS_DIR / name
    if not (path / f"{name}.py").is_file():
        raise ValueError(f"No local metric '{name}'. Available: {', '.join(available())}.")
    return path


def load_metric(name: str, **kwargs):
    """`evaluate.load` on the local module's folder; results stay in memory (no cache files) by default."""
    import evaluate

    kwargs.setdefault("keep_in_memory", True)
    return evaluate.load(str(metric_path(name)), **kwargs)
