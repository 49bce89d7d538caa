"""optimization/bench_generate.py: the same workload for every backend, exact token counts, sane timings."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "optimization"))
import bench_generate as bg  # noqa: E402


@pytest.fixture(scope="module")
def tiny():
    from common import load_model, load_tokenizer
    torch.manual_seed(0)
    return load_model("tiny-llama").eval(), load_tokenizer("tiny-llama")


def test_percentile_matches_numpy():
    values = [0.3, 5.0, 1.2, 9.9, 2.2, 0.1, 7.0]
    for q in (0, 50, 95, 100):
        assert bg.percentile(values, q) == pytest.approx(np.percentile(values, q))
    assert bg.percentile([4.0], 95) == 4.0


def test_workload_is_deterministic_and_in_range(tiny):
    _, tok = tiny
    a = bg.workload(tok, 6, (10, 40), (3, 9), seed=1)
    assert a == bg.workload(tok, 6, (10, 40), (3, 9), seed=1) != bg.workload(tok, 6, (10, 40), (3, 9), seed=2)
    assert all(10 <= len(i.prompt) <= 40 and 3 <= i.new_tokens <= 9 for i in a)
    assert len({len(i.prompt) for i in a}) > 1  # mixed lengths, not one size


@pytest.mark.parametrize("backend", ["hf", "hf-batch", "engine", "ceiling"])
def test_backends_produce_exactly_the_requested_tokens(tiny, backend):
    model, tok = tiny
    items = bg.workload(tok, 5, (8, 30), (2, 12), seed=0)
    result = bg.run(backend, model, tok, items, batch_size=3)
    summary = result.summary()
    assert [t.tokens for t in result.timings] == [i.new_tokens for i in items]
    assert summary["new_tokens"] == sum(i.new_tokens for i in items)
    assert all(0 < t.ttft <= t.latency <= result.seconds for t in result.timings)
    assert summary["tokens_per_s"] == pytest.approx(summary["new_tokens"] / result.seconds, rel=0.01)
    if backend == "hf":  # one after the other: each request finishes after the one before it
        assert [t.latency for t in result.timings] == sorted(t.latency for t in result.timings)


def test_ceiling_replays_the_engine_schedule_at_matmul_cost_only(tiny):
    model, tok = tiny
    items = bg.workload(tok, 6, (8, 30), (4, 12), seed=3)
    engine, ceiling = (bg.run(b, model, tok, items, batch_size=4) for b in ("engine", "ceiling"))
    for result in (engine, ceiling):  # the same schedule: requests 5 and 6 wait until 4 slots free up
        ttft = [t.ttft for t in result.timings]
        assert min(ttft[4:]) > max(ttft[:4])
    assert ceiling.seconds < engine.seconds  # the matmuls are part of what an engine step does


def test_cli_writes_json_and_refuses_bad_arguments(tmp_path):
    out = tmp_path / "b.json"
    run = subprocess.run([sys.executable, str(ROOT / "optimization" / "bench_generate.py"), "--model", "tiny-llama",
                          "--backend", "engine", "--requests", "3", "--prompt-tokens", "8:16", "--new-tokens", "4",
                          "--batch-size", "2", "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    data = json.loads(out.read_text())
    assert data["summary"]["new_tokens"] == 12 and len(data["timings"]) == 3
    assert json.loads(run.stdout)["backend"] == "engine"
    for bad, message in ((["--backend", "llamacpp"], "needs --gguf"), (["--new-tokens", "9:3"], "LOW:HIGH"),
                         (["--requests", "0"], "at least 1")):
        run = subprocess.run([sys.executable, str(ROOT / "optimization" / "bench_generate.py"), *bad],
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 2 and message in run.stderr
