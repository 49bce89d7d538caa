"""evaluation/speed_report.py: CPU time, fresh-process memory, spreads and prices around bench_generate."""

import sys

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "evaluation"))
import speed_report as sr  # noqa: E402


def test_spread_and_price_arithmetic():
    s = sr.spread([5.0, 1.0, 4.0, 2.0, 3.0])
    assert (s["median"], s["p25"], s["p75"], s["min"], s["max"], s["n"]) == (3.0, 2.0, 4.0, 1.0, 5.0, 5)
    assert sr.dollars_per_million(100.0, 0.36) == pytest.approx(1.0)  # 0.36 $/h = 0.0001 $/s; 1e6 tok = 1e4 s
    assert sr.dollars_per_million(200.0, 0.36) == pytest.approx(0.5)


def test_inter_token_gaps():
    timings = [sr.bench.Timing(ttft=1.0, latency=3.0, tokens=5), sr.bench.Timing(ttft=0.5, latency=0.5, tokens=1)]
    assert sr.inter_token(timings) == [0.5]  # a 1-token request has no gap


@pytest.fixture(scope="module")
def tiny():
    from common import load_model, load_tokenizer
    return load_model("tiny-llama"), load_tokenizer("tiny-llama")


@pytest.mark.parametrize("backend", ["hf", "hf-batch", "engine"])
def test_timed_counts_tokens_and_cpu(tiny, backend):
    model, tokenizer = tiny
    items = sr.bench.workload(tokenizer, 3, (8, 16), (3, 6), seed=1)
    row = sr.timed(backend, model, tokenizer, items, batch_size=3)
    assert row["new_tokens"] == sum(i.new_tokens for i in items)
    assert row["cpu_s_per_1k"] > 0  # cpu_s is rounded to 0.01 s, the per-1k figure is computed before rounding
    assert row["cpu_s_per_1k"] == pytest.approx(1000 * row["cpu_s"] / row["new_tokens"],
                                                abs=1000 * 0.006 / row["new_tokens"])
    assert len(row["timings"]) == 3 and row["itl_p50"] > 0


def test_child_reports_its_own_peak_not_the_parents():
    import numpy as np

    ballast = np.ones(600 * 2**20 // 8)  # 600 MB in this process: a parent-side ru_maxrss would report >= that
    base = sr.baseline_child(threads=1)
    row = sr.child("hf", "tiny-llama", requests=2, prompt_tokens=(8, 16), new_tokens=(2, 4), threads=1,
                   dtype="float32")
    asked = sr.bench.workload(sr.bench.load_tokenizer("tiny-llama"), 2, (8, 16), (2, 4), seed=0)
    assert row["requests"] == 2 and row["new_tokens"] == sum(i.new_tokens for i in asked)
    assert 0 < base["peak_rss_mb"] < ballast.nbytes / 2**20, "the child's peak includes the parent's memory"
    assert row["peak_rss_mb"] > base["peak_rss_mb"], "loading a model did not raise the peak"
    assert row["cpu_s"] > 0 and row["process_s"] > 0


def test_child_failure_is_reported():
    with pytest.raises(RuntimeError, match="failed"):
        sr.child("llamacpp", "tiny-llama", requests=1, threads=1, gguf="no/such/file.gguf")


def test_memory_bandwidth_kinds():
    assert all(sr.memory_bandwidth(32, 2, kind) > 0.05 for kind in ("read", "copy", "clone"))
    with pytest.raises(KeyError):
        sr.memory_bandwidth(1, 1, "write")
