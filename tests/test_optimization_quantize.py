"""optimization/quantize.py: every format is smaller than fp32 with a finite perplexity near it; llama.cpp scores
a GGUF like transformers scores the model; saved artefacts load back; bad input gives a one-line error."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "optimization"))
import quantize  # noqa: E402

SMALL = ["--max-chars", "600", "--window", "128", "--requests", "1", "--new-tokens", "4", "--repeats", "1",
         "--threads", "1"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A seeded random-init tiny LLaMA saved as a folder, with untied output embeddings like most larger models.

    Tied, its 49k x 128 embedding would be 86 % of the weights: torch.ao int8 keeps the embedding in float32 and
    adds an int8 copy for the output layer, so that format would come out larger than fp32 (on SmolLM2, where the
    embedding is a fifth of the weights, it is half the size; the lesson shows it)."""
    from common import load_model, load_tokenizer

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny")
    load_model("tiny-llama", tie_word_embeddings=False).save_pretrained(folder)
    load_tokenizer("tiny-llama").save_pretrained(folder)
    return folder


def _cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "optimization/quantize.py", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def _report(tmp_path, model: str, formats: list[str]) -> dict:
    run = _cli("--model", model, "--format", *formats, "--out", str(tmp_path), *SMALL)
    assert run.returncode == 0, run.stderr[-3000:]
    results = {r["format"]: r for r in json.loads((tmp_path / "report.json").read_text())["results"]}
    assert list(results) == formats
    for fmt, r in results.items():
        assert r["files"] and all(Path(f).is_file() for f in r["files"]), fmt
        assert r["tokens_per_s"] > 0 and r["tokens"] > 50 and math.isfinite(r["perplexity"]), fmt
    return results


def _smaller_and_close(results: dict, factor: float) -> None:
    ref = results["fp32"]
    for fmt, r in results.items():
        if fmt != "fp32":
            assert r["disk_mb"] < ref["disk_mb"] and r["memory_mb"] < ref["memory_mb"], fmt
            assert 1 / factor < r["perplexity"] / ref["perplexity"] < factor, (fmt, r["perplexity"], ref["perplexity"])


@pytest.mark.parametrize("formats", [["fp32", "bf16", "int8", "nf4"], ["fp32", "torchao-int8", "torchao-int8-dyn",
                                                                         "bnb-int8"]], ids=["torch+nf4", "torchao+bnb"])
def test_each_format_is_smaller_than_fp32_with_a_sane_perplexity(tiny, tmp_path, formats):
    results = _report(tmp_path, str(tiny), formats)
    _smaller_and_close(results, 1.1)
    assert results["fp32"]["disk_mb"] == pytest.approx(results["fp32"]["memory_mb"], rel=0.05)
    if "bf16" in results:
        assert results["bf16"]["disk_mb"] == pytest.approx(results["fp32"]["disk_mb"] / 2, rel=0.05)


def test_gguf_from_llama_cpp_scores_like_transformers(tmp_path):
    """The real SmolLM2: llama.cpp's F16 perplexity equals transformers' float32 one (same ids, same windows), and
    Q8_0 / Q4_K_M are smaller and close (Q8_0 is quantized from the F16 file the first export left in --out)."""
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is built by `make setup`")
    results = _report(tmp_path, "smollm2-135m-instruct", ["fp32", "gguf-f16", "gguf-q8_0", "gguf-q4_k_m"])
    _smaller_and_close(results, 1.3)
    assert all(r["same_ids"] for r in results.values())
    assert results["gguf-f16"]["perplexity"] == pytest.approx(results["fp32"]["perplexity"], rel=0.005)
    assert results["gguf-q8_0"]["perplexity"] == pytest.approx(results["fp32"]["perplexity"], rel=0.03)
    assert results["gguf-q4_k_m"]["disk_mb"] < results["gguf-q8_0"]["disk_mb"] < 0.6 * results["gguf-f16"]["disk_mb"]
    assert results["gguf-q8_0"]["quantize_s"] < results["gguf-f16"]["quantize_s"]  # no second conversion


@pytest.mark.parametrize("fmt", ["int8", "torchao-int8", "nf4"])
def test_saved_artefacts_load_back_with_the_same_outputs(tiny, tmp_path, fmt):
    q = quantize.quantize(str(tiny), fmt, tmp_path)
    folder = q.files[0].parent
    reloaded = quantize.load_saved(folder)
    ids = torch.tensor([[1, 200, 3000, 40000, 7, 99]])
    with torch.inference_mode():
        assert torch.equal(q.model(ids).logits, reloaded(ids).logits)
    assert quantize.storage(q) == quantize.storage(quantize.Quantized(fmt, reloaded))


@pytest.mark.parametrize("args, message", [
    (["--format", "int3"], "unknown format 'int3'"),
    (["--model", "no/such/model/folder"], "No model folder"),
    (["--model", "tiny-llama", "--format", "nf4"], "save it with save_pretrained"),
    (["--window", "64", "--stride", "128"], "larger than --window"),
])
def test_bad_input_gives_a_one_line_error(args, message):
    run = _cli(*args, timeout=120)
    assert run.returncode == 2, run.stderr[-2000:]
    assert message in run.stderr
    if "--stride" not in args:  # argparse's own errors also print the usage line
        assert len(run.stderr.strip().splitlines()) == 1, run.stderr
