"""Execute a lesson notebook with papermill and measure its wall time and peak memory.

    python -m tools.nbrun pretrained/01_pipelines_tokenizers_chat.ipynb            # run, report
    python -m tools.nbrun NB --ci                      # with its small CI parameters (tests/)
    python -m tools.nbrun NB --record                  # run at defaults, save outputs in place,
                                                       # then time a CI run; both go in metadata

The notebook runs in its own folder (so it can import its section's scripts); the kernel is
this process's only child, so the children's peak RSS is the notebook's peak memory.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
CI_PARAMS = ROOT / "tests" / "notebook_params.toml"


def ci_parameters(notebook: Path) -> dict:
    """Small parameters injected in CI, from tests/notebook_params.toml (by relative path)."""
    table = tomllib.loads(CI_PARAMS.read_text()) if CI_PARAMS.exists() else {}
    path = notebook.resolve()
    return table.get(path.relative_to(ROOT).as_posix(), {}) if path.is_relative_to(ROOT) else {}


def execute(notebook: Path, output: Path, parameters: dict, cell_timeout: int) -> dict:
    """Run papermill in this process; return seconds and the kernel's peak RSS in MB."""
    import papermill

    os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
    start = time.perf_counter()
    papermill.execute_notebook(str(notebook), str(output), parameters=parameters,
                               cwd=str(notebook.parent), progress_bar=False, kernel_name="python3",
                               execution_timeout=cell_timeout)
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KB on Linux
    return {"seconds": round(seconds, 1), "peak_rss_mb": round(peak_mb)}


def run_isolated(notebook: Path, ci: bool, output: Path, timeout: float) -> dict:
    """Run in a fresh process (clean child accounting); raises CalledProcessError on failure."""
    cmd = [sys.executable, "-m", "tools.nbrun", str(notebook), "--output", str(output), "--json"]
    if ci:
        cmd.append("--ci")
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{notebook} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def record(notebook: Path, timeout: float) -> dict:
    """Run at defaults (outputs saved in place), then time the CI parameters; store both."""
    with tempfile.TemporaryDirectory() as tmp:
        full = run_isolated(notebook, ci=False, output=Path(tmp) / "full.ipynb", timeout=timeout)
        ci = run_isolated(notebook, ci=True, output=Path(tmp) / "ci.ipynb", timeout=timeout)
        nb = nbformat.read(Path(tmp) / "full.ipynb", as_version=4)
    nb.metadata.pop("papermill", None)
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
    nb.metadata["llm_path"] = {"default_run": full, "ci_run": ci,
                               "recorded": dt.date.today().isoformat(), "machine": machine()}
    nbformat.write(nb, notebook)
    return nb.metadata["llm_path"]


def machine() -> str:
    return f"{os.cpu_count()} CPU cores" + (", GPU" if _has_gpu() else "")


def _has_gpu() -> bool:
    try:
        import torch
        return torch.cuda.is_available()
    except ImportError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--ci", action="store_true", help="inject the CI parameters")
    parser.add_argument("--record", action="store_true", help="save default-run outputs in place")
    parser.add_argument("--output", type=Path, help="where to write the executed notebook")
    parser.add_argument("--json", action="store_true", help="print the measurement as JSON")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per notebook")
    args = parser.parse_args()
    for nb in args.notebooks:
        if args.record:
            print(nb, json.dumps(record(nb, args.timeout)), flush=True)
            continue
        params = ci_parameters(nb) if args.ci else {}
        output = args.output or Path(tempfile.mkdtemp()) / nb.name
        result = execute(nb.resolve(), output, params, cell_timeout=int(args.timeout))
        print(json.dumps(result) if args.json else f"{nb}: {result}")


if __name__ == "__main__":
    main()
