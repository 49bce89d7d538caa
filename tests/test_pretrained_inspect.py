"""pretrained/inspect_model.py: parameter counts match real models; clear errors for bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.script


def inspect(*args: str, offline: bool = False) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1") if offline else None
    return subprocess.run([sys.executable, "pretrained/inspect_model.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def inspect_json(name: str) -> dict:
    proc = inspect(name, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_smollm2_counts_match_the_real_model():
    from common import SMOLLM2, load_model

    info = inspect_json(SMOLLM2)
    real = load_model(SMOLLM2)
    assert info["parameters"]["total"] == sum(p.numel() for p in real.parameters())  # tied head once
    assert info["parameters"]["head"] == 0 and info["config"]["tied_embeddings"] is True
    assert info["parameters"]["embeddings"] == real.model.embed_tokens.weight.numel()
    assert info["parameters"]["mlp"] == sum(p.numel() for n, p in real.named_parameters() if ".mlp." in n)
    assert info["parameters"]["other"] == 0
    cfg = info["config"]
    assert (cfg["layers"], cfg["heads"], cfg["kv_heads"], cfg["head_dim"]) == (30, 9, 3, 64)
    assert cfg["positional_encoding"].startswith("RoPE") and "SwiGLU" in cfg["activation"]
    assert info["memory_mb"]["bf16"] == pytest.approx(info["memory_mb"]["fp32"] / 2, abs=0.1)


def test_minilm_encoder():
    from common import MINILM, load_model

    info = inspect_json(MINILM)
    assert info["family"] == "encoder-only" and info["architecture"] == "BertModel"
    assert info["parameters"]["total"] == sum(p.numel() for p in load_model(MINILM, kind="encoder").parameters())
    assert info["config"]["positional_encoding"] == "learned absolute"
    assert info["parameters"]["other"] == 0 and info["kv_cache_mb_per_1k_tokens_bf16"] is None


def test_tiny_gpt2_text_report():
    import transformers

    from common import tiny_config

    proc = inspect("tiny-gpt2")
    assert proc.returncode == 0, proc.stderr
    real = transformers.AutoModelForCausalLM.from_config(tiny_config("gpt2"))
    total = sum(p.numel() for p in real.parameters())
    assert f"{total / 1e6:,.1f} M parameters" in proc.stdout and "decoder-only" in proc.stdout
    assert "learned absolute" in proc.stdout and "Memory for the weights" in proc.stdout


def test_unknown_hub_id_offline_fails_clearly():
    proc = inspect("no-such-org/no-such-model-xyz", offline=True)
    assert proc.returncode == 2
    assert "error:" in proc.stderr and "Hub" in proc.stderr and "Traceback" not in proc.stderr
