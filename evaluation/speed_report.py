"""Speed and cost figures you can trust, on top of optimization/bench_generate.py (which does the timing).

bench_generate.py times one backend on one workload. This module adds what an honest comparison needs:
the CPU time a run costs (`timed`), a fresh process per backend so that its peak memory is its own (`child`:
the process reads its own VmHWM and user + system CPU seconds as it ends), the spread of repeated
measurements (`spread`), inter-token latency, the machine's memory bandwidth (`memory_bandwidth`) and the
price arithmetic (`dollars_per_million`). evaluation/06_speed_and_cost.ipynb uses it.

Python API:
  timed(backend, model, tokenizer, items, **options) -> dict      one in-process run: summary + CPU seconds
  child(backend, model=..., requests=4, ...) -> dict               one run in a fresh process: + peak RSS
  baseline_child(threads) -> dict                                  the same process with nothing loaded
  inter_token(timings) -> list[float]                              seconds between tokens, per request
  spread(values) -> dict                                           median, p25, p75, min, max
  server_runs(tokenizer, items, concurrency) -> list[dict]         deployment/server.py via the openai backend
  peak_rss_mb(pid) -> float                                        a running process's VmHWM
  memory_bandwidth(mb=256, repeats=5, kind) -> float               GB/s reading (or copying) a large tensor
  dollars_per_million(tokens_per_s, price_per_hour) -> float       machine price / tokens it makes
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT, ROOT / "optimization"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))
import bench_generate as bench  # noqa: E402

BENCH = ROOT / "optimization" / "bench_generate.py"


def inter_token(timings: list[bench.Timing]) -> list[float]:
    """Mean gap between two tokens of each request: (done - first token) / (tokens - 1)."""
    return [(t.latency - t.ttft) / (t.tokens - 1) for t in timings if t.tokens > 1]


def timed(backend: str, model, tokenizer, items: list[bench.Item], warmup: bool = True, **options) -> dict:
    """bench.run plus the CPU seconds this process spent on it (all threads: time.process_time).

    The warm-up (a 2-token request) runs before the clocks start. For llamacpp the CPU time includes opening
    the GGUF file (bench_generate does it inside run), for engine the one-off weight prepacking.
    """
    if warmup and backend in ("hf", "hf-batch", "engine"):
        bench.run(backend, model, tokenizer, [bench.Item(items[0].prompt[:8], 2)], warmup=False, **options)
    cpu = time.process_time()
    result = bench.run(backend, model, tokenizer, items, warmup=False, **options)
    cpu_s = time.process_time() - cpu
    summary = result.summary()
    gaps = inter_token(result.timings)
    return summary | {"itl_p50": round(bench.percentile(gaps, 50), 4) if gaps else None,
                      "cpu_s": round(cpu_s, 2), "cpu_s_per_1k": round(1000 * cpu_s / summary["new_tokens"], 2),
                      "timings": result.timings}


# The child reports its own peak memory: VmHWM, the high-water mark of ITS address space. The parent's view of a
# child, os.wait4 / RUSAGE_CHILDREN ru_maxrss, is wrong here: Linux carries the peak RSS across fork + exec, so a
# child started from a notebook that holds 2 GB reports at least 2 GB even if it only runs `pass`.
_CHILD = """
import json, resource, sys
root, out, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
sys.path[:0] = [root, root + "/optimization"]
import bench_generate
if argv:
    code = bench_generate.main(argv)
else:  # the floor: imports, tokenizer and the workload's data, no model
    code = 0 * len(bench_generate.workload(bench_generate.load_tokenizer(bench_generate.SMOLLM2), 1))
usage = resource.getrusage(resource.RUSAGE_SELF)
hwm = [line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")]
json.dump({"peak_rss_mb": round(int(hwm[0]) / 1024) if hwm else round(usage.ru_maxrss / 1024),
           "cpu_s": round(usage.ru_utime + usage.ru_stime, 2)}, open(out, "w"))
sys.exit(code)
"""


def _run_child(argv: list[str], threads: int, timeout: float, tmp: Path) -> tuple[dict, float]:
    """Run bench_generate.main(argv) in a fresh interpreter (no argv: only imports + tokenizer); returns its
    self-reported usage and the wall seconds."""
    command = [sys.executable, "-c", _CHILD, str(ROOT), str(tmp / "usage.json"), *argv]
    with tempfile.TemporaryFile(mode="w+") as log:  # a file, not a pipe: a full pipe would block the child
        started = time.perf_counter()
        process = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=log, timeout=timeout,
                                 env=dict(os.environ, OMP_NUM_THREADS=str(threads)))
        wall = time.perf_counter() - started
        if process.returncode != 0:
            log.seek(0)
            raise RuntimeError(f"bench_generate.py {' '.join(argv)} failed ({process.returncode}):\n"
                               f"{log.read()[-2000:]}")
    return json.loads((tmp / "usage.json").read_text()), wall


def child(backend: str, model: str = bench.SMOLLM2, requests: int = 4, prompt_tokens: tuple[int, int] = (32, 256),
          new_tokens: tuple[int, int] = (16, 64), seed: int = 0, threads: int = 2, dtype: str = "bfloat16",
          batch_size: int = 16, gguf: str | Path | None = None, timeout: float = 600) -> dict:
    """bench_generate.py's CLI for one backend in a fresh process: its summary, plus the peak RSS and the CPU
    seconds of the whole process (start-up, model load and run), as the process itself read them at the end."""
    argv = ["--backend", backend, "--model", model, "--dtype", dtype, "--requests", str(requests),
            "--prompt-tokens", f"{prompt_tokens[0]}:{prompt_tokens[1]}",
            "--new-tokens", f"{new_tokens[0]}:{new_tokens[1]}", "--seed", str(seed), "--threads", str(threads),
            "--batch-size", str(batch_size), *(["--gguf", str(gguf)] if gguf else [])]
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        usage, wall = _run_child(argv + ["--json", str(tmp / "result.json")], threads, timeout, tmp)
        summary = json.loads((tmp / "result.json").read_text())["summary"]
    summary.pop("concurrency", None)  # the CLI always passes its --concurrency; it means nothing here
    return summary | {"process_s": round(wall, 1)} | usage


def baseline_child(threads: int = 2) -> dict:
    """The same child importing what bench_generate.py imports (torch, transformers, the project's common),
    loading the tokenizer and building a workload, but no model: the floor under every child's peak RSS."""
    with tempfile.TemporaryDirectory() as folder:
        usage, wall = _run_child([], threads, 300, Path(folder))
    return {"backend": "baseline (no model)", "process_s": round(wall, 1)} | usage


def spread(values: list[float]) -> dict:
    """Median and the middle half (p25..p75) of repeated measurements, plus the extremes."""
    return {"median": statistics.median(values), "p25": bench.percentile(values, 25),
            "p75": bench.percentile(values, 75), "min": min(values), "max": max(values), "n": len(values)}


def memory_bandwidth(mb: int = 256, repeats: int = 5, kind: str = "read") -> float:
    """GB/s moving a float32 tensor far larger than the CPU caches. kind="read" sums it (weights are only read
    when generating); "copy" copies it into a buffer allocated beforehand (bytes read + written); "clone" copies
    into fresh memory each time, which also pays the page faults of that memory. Best of `repeats`: other load
    can only slow a pass down, so the fastest is the closest to the hardware."""
    src = torch.ones(mb * 2**20 // 4)
    dst = torch.empty_like(src).copy_(src)  # every page of dst touched once
    work, moved = {"read": (src.sum, 1), "copy": (lambda: dst.copy_(src), 2), "clone": (src.clone, 2)}[kind]
    work()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return moved * src.numel() * 4 / best / 1e9


def dollars_per_million(tokens_per_s: float, price_per_hour: float) -> float:
    """$ per million generated tokens for a machine rented by the hour and kept busy with this workload:
    price_per_hour / 3600 * 1e6 / tokens_per_s."""
    return price_per_hour / 3600 * 1e6 / tokens_per_s


def peak_rss_mb(pid: int) -> float | None:
    """The kernel's high-water mark of a running process's resident memory (VmHWM, Linux only)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024)
    except OSError:
        pass
    return None


def server_runs(tokenizer, items: list[bench.Item], concurrency: list[int], model: str = bench.SMOLLM2,
                threads: int = 2) -> list[dict]:
    """deployment/server.py (the engine behind an OpenAI API, bf16), started by deployment/load_test.py; the same
    items at each concurrency through bench_generate's `openai` backend (streaming clients; times count from when
    each request is sent). CPU seconds are the server process's own (psutil), peak RSS its VmHWM."""
    import psutil

    if str(ROOT / "deployment") not in sys.path:
        sys.path.insert(0, str(ROOT / "deployment"))
    import load_test

    running = load_test.start("project", model=model, threads=threads)
    try:
        proc, rows = psutil.Process(running.process.pid), []
        options = {"base_url": running.base_url, "model_name": running.served_name}
        bench.run("openai", None, tokenizer, items[:1], concurrency=1, **options)  # warm-up
        for c in concurrency:
            before = sum(proc.cpu_times()[:2])
            result = bench.run("openai", None, tokenizer, items, concurrency=c, **options)
            cpu_s = sum(proc.cpu_times()[:2]) - before
            summary, gaps = result.summary(), inter_token(result.timings)
            rows.append(summary | {"backend": f"server c={c}", "itl_p50": round(bench.percentile(gaps, 50), 4),
                                   "cpu_s": round(cpu_s, 2),
                                   "cpu_s_per_1k": round(1000 * cpu_s / summary["new_tokens"], 2),
                                   "timings": result.timings})
        peak = peak_rss_mb(proc.pid)
    finally:
        running.stop()
    return [row | {"peak_rss_mb": peak} for row in rows]
