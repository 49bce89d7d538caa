"""optimization/prune.py: exact sparsity, structured pruning that changes shapes and config, save/reload, errors."""

import copy
import json
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "optimization"))
from prune import (  # noqa: E402
    DataError,
    count_parameters,
    decoder_linears,
    head_scores,
    linear_weights,
    magnitude_prune,
    neuron_scores,
    prune,
    prune_heads,
    prune_neurons,
)

from common import load_model  # noqa: E402

SCRIPT = ROOT / "optimization" / "prune.py"


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return load_model("tiny-llama").eval()  # 4 layers, d=128, 4 query heads in 2 KV groups, 512 MLP neurons


@pytest.fixture(scope="module")
def ids():
    return torch.randint(0, 5000, (2, 24), generator=torch.Generator().manual_seed(1))


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


@pytest.mark.parametrize("scope", ["layer", "global"])
@pytest.mark.parametrize("amount", [0.1, 0.37, 0.9])
def test_magnitude_pruning_hits_the_requested_sparsity_exactly(tiny, scope, amount):
    model = copy.deepcopy(tiny)
    before = {n: m.weight.detach().abs().clone() for n, m in decoder_linears(model).items()}
    sparsity = magnitude_prune(model, amount, scope)
    nonzero, total = linear_weights(model)
    if scope == "global":
        assert total - nonzero == round(amount * total)
        # the zeros are the smallest weights overall: every kept weight >= every removed one
        kept = torch.cat([before[n][m.weight != 0] for n, m in decoder_linears(model).items()])
        removed = torch.cat([before[n][m.weight == 0] for n, m in decoder_linears(model).items()])
        assert kept.min() >= removed.max()
    else:
        for name, module in decoder_linears(model).items():
            assert int((module.weight == 0).sum()) == round(amount * module.weight.numel()), name
            assert sparsity[name] == pytest.approx(amount, abs=1 / module.weight.numel())
    assert model.lm_head.weight.count_nonzero() == tiny.lm_head.weight.count_nonzero()  # embeddings untouched


def test_magnitude_pruning_is_exact_with_ties(tiny):
    model = copy.deepcopy(tiny)
    for module in decoder_linears(model).values():
        module.weight.data.fill_(0.5)  # every weight ties with the threshold
    magnitude_prune(model, 0.3, "global")
    nonzero, total = linear_weights(model)
    assert total - nonzero == round(0.3 * total)


@pytest.mark.parametrize("method,unit", [("neurons", "query"), ("heads", "query"), ("heads", "group")])
@pytest.mark.parametrize("importance", ["activation", "weight"])
def test_structured_pruning_of_nothing_changes_nothing(tiny, ids, method, unit, importance):
    model = copy.deepcopy(tiny)
    changes = prune(model, method, 0.0, ids, importance, head_unit=unit)
    assert torch.equal(logits(model, ids), logits(tiny, ids))
    assert all(old == new for old, new in changes.values())
    assert count_parameters(model) == count_parameters(tiny)


def test_neuron_pruning_shapes_save_and_reload(tiny, ids, tmp_path):
    model = copy.deepcopy(tiny)
    scores = neuron_scores(model, ids, "activation")
    prune_neurons(model, 0.25, scores)  # 128 of 512 neurons per layer
    for layer in model.model.layers:
        assert layer.mlp.gate_proj.weight.shape == (384, 128) and layer.mlp.up_proj.weight.shape == (384, 128)
        assert layer.mlp.down_proj.weight.shape == (128, 384)
    # the kept neurons are the highest-scoring ones, rows and columns taken from the original matrices
    first = tiny.model.layers[0].mlp
    kept0 = scores[0].topk(384).indices.sort().values
    assert torch.equal(model.model.layers[0].mlp.gate_proj.weight, first.gate_proj.weight[kept0])
    assert torch.equal(model.model.layers[0].mlp.down_proj.weight, first.down_proj.weight[:, kept0])
    assert count_parameters(tiny) - count_parameters(model) == 128 * 3 * 128 * 4
    expected = logits(model, ids)
    assert not torch.allclose(expected, logits(tiny, ids))
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert reloaded.config.intermediate_size == 384
    assert torch.equal(logits(reloaded, ids), expected)


@pytest.mark.parametrize("unit,heads,kv", [("query", 2, 2), ("group", 2, 1)])
def test_head_pruning_changes_the_config_and_reloads(tiny, ids, tmp_path, unit, heads, kv):
    model = copy.deepcopy(tiny)
    prune_heads(model, 0.5, head_scores(model, ids, "activation"), unit)
    attn = model.model.layers[0].self_attn
    assert attn.q_proj.weight.shape == (heads * 32, 128) and attn.o_proj.weight.shape == (128, heads * 32)
    assert attn.k_proj.weight.shape == (kv * 32, 128)
    expected = logits(model, ids)
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert (reloaded.config.num_attention_heads, reloaded.config.num_key_value_heads) == (heads, kv)
    assert reloaded.config.head_dim == 32
    assert torch.equal(logits(reloaded, ids), expected)


def test_head_pruning_matches_zeroing_the_heads(tiny, ids):
    """Removing query head h must equal keeping it with its o_proj columns set to zero."""
    model, zeroed = copy.deepcopy(tiny), copy.deepcopy(tiny)
    scores = [torch.tensor([1.0, 0.0, 0.0, 1.0])] * 4  # drop head 1 (group 0) and head 2 (group 1)
    prune_heads(model, 0.5, scores, "query")
    for layer in zeroed.model.layers:
        layer.self_attn.o_proj.weight.data[:, 32:96] = 0
    torch.testing.assert_close(logits(model, ids), logits(zeroed, ids), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("amount", [-0.1, 1.0])
def test_bad_amount_raises(tiny, amount):
    with pytest.raises(DataError, match="amount"):
        magnitude_prune(copy.deepcopy(tiny), amount)


def run_cli(*args, timeout=300):
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("amount", ["1.5", "-0.2"])
def test_cli_bad_amount_is_a_one_line_error(amount):
    out = run_cli("--model", "tiny-llama", "--amount", amount)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "--amount" in out.stderr and "Traceback" not in out.stderr


def test_cli_too_many_heads_is_a_one_line_error():
    out = run_cli("--model", "tiny-llama", "--method", "heads", "--head-unit", "group", "--amount", "0.9",
                  "--importance", "weight", "--max-chars", "300", "--repeats", "1", "--new-tokens", "2")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    last = out.stderr.strip().splitlines()[-1]  # (loading a model may log library notices before it)
    assert last.startswith("error: --amount 0.9 would remove every group")


def test_cli_neurons_saves_a_loadable_smaller_model(tmp_path):
    out = run_cli("--model", "tiny-llama", "--method", "neurons", "--amount", "0.5", "--calibration-samples", "2",
                  "--seq-len", "64", "--max-chars", "600", "--window", "128", "--new-tokens", "4", "--repeats", "1",
                  "--recover-steps", "2", "--out", str(tmp_path / "m"), "--json", str(tmp_path / "r.json"))
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["changes"] == {"intermediate_size": [512, 256]}
    assert report["pruned"]["parameters"] == report["original"]["parameters"] - 256 * 3 * 128 * 4
    assert report["fraction_of_linear_weights_removed"] == pytest.approx(0.4)  # half the MLP = 80 % of them
    assert report["pruned"]["decode_tokens_per_s"] > 0 and report["pruned"]["perplexity"] > 1
    assert report["recovery"]["steps"] == 2
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "m")
    assert reloaded.config.intermediate_size == 256
    assert (tmp_path / "m" / "tokenizer.json").exists()


def test_cli_magnitude_reports_the_sparsity():
    out = run_cli("--model", "tiny-llama", "--method", "magnitude", "--amount", "0.6", "--scope", "global",
                  "--max-chars", "600", "--window", "128", "--new-tokens", "4", "--repeats", "1")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["fraction_of_linear_weights_removed"] == pytest.approx(0.6, abs=1e-4)
    assert report["pruned"]["parameters"] == report["original"]["parameters"]  # zeros are still parameters
