"""optimization/export_onnx.py: a tiny LLaMA exported to ONNX gives the PyTorch logits and, in onnxruntime's greedy
loop, the tokens of transformers generate; the int8 copy stores every linear layer in int8 and stays close; bad input gives a one-line error."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "optimization"))
import export_onnx as eo  # noqa: E402

SCRIPT = ROOT / "optimization" / "export_onnx.py"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A seeded random-init tiny LLaMA (2 layers, d=128, SmolLM2's tokenizer) saved as a HF folder."""
    from common import load_model, load_tokenizer

    torch.manual_seed(0)
    model, tokenizer = load_model("tiny-llama", num_hidden_layers=2).eval(), load_tokenizer("tiny-llama")
    folder = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder, model, tokenizer


@pytest.fixture(scope="module")
def exported(tiny, tmp_path_factory):
    """The command line run on the tiny folder, with --int8 (and --no-optimize: test_no_past_graph optimizes)."""
    folder = tiny[0]
    out = tmp_path_factory.mktemp("onnx")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--model", str(folder), "--out", str(out), "--int8",
                           "--no-optimize", "--threads", "1", "--new-tokens", "4"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    return proc, out


def test_cli_exports_a_graph_that_matches_torch(exported):
    proc, out = exported
    assert proc.returncode == 0, proc.stderr[-3000:]
    diff = float(re.search(r"max \|onnxruntime - torch\| logits = (\S+)", proc.stdout).group(1))
    assert diff <= eo.TOLERANCE
    assert json.loads((out / "export.json").read_text())["max_abs_diff"] <= eo.TOLERANCE
    for name in ("model.onnx", "model.onnx.data", "model.int8.onnx", "config.json", "tokenizer.json"):
        assert (out / name).exists(), name
    decoder = eo.OrtDecoder(out / "model.onnx", threads=1)
    assert decoder.with_past and decoder.layers == 2
    shapes = {i.name: i.shape for i in decoder.session.get_inputs()}
    assert shapes["input_ids"] == ["batch", "sequence"]
    assert shapes["past_key_values.0.key"][0::2] == ["batch", "past_sequence"]


def test_logits_match_torch_at_other_shapes(tiny, exported):
    """The axes are really dynamic: a batch of 3 and 11 tokens, unlike the export's example inputs."""
    _, model, _ = tiny
    decoder = eo.OrtDecoder(exported[1] / "model.onnx", threads=1)
    assert eo.compare(model, decoder) <= eo.TOLERANCE
    ids = np.random.default_rng(1).integers(0, model.config.vocab_size, (3, 11))
    logits, presents = decoder(ids, np.ones_like(ids), np.tile(np.arange(11), (3, 1)))
    with torch.no_grad():
        ref = model(torch.from_numpy(ids)).logits.numpy()
    assert np.abs(logits - ref).max() <= eo.TOLERANCE
    assert presents[0].shape == (3, model.config.num_key_value_heads, 11, 32)


def test_onnxruntime_greedy_equals_transformers_generate(tiny, exported):
    _, model, tokenizer = tiny
    decoder = eo.OrtDecoder(exported[1] / "model.onnx", threads=1)
    prompts = [tokenizer(t)["input_ids"] for t in ("The sky is", "def add(a, b):\n    return", "1, 2, 3,")]
    for prompt in prompts:
        with torch.no_grad():
            ref = model.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False)[0, len(prompt):].tolist()
        assert eo.greedy(decoder, [prompt], 12).tokens[0] == ref
        assert eo.greedy(decoder, [prompt], 12, use_cache=False).tokens[0] == ref  # whole sequence each step
    batch = eo.greedy(decoder, prompts, 12)  # left-padded batch: same tokens as one by one
    assert batch.tokens == [eo.greedy(decoder, [p], 12).tokens[0] for p in prompts]
    assert len(batch.step_s) == 11 and batch.tokens_per_s > 0


def test_greedy_stops_at_eos(tiny, exported):
    _, model, tokenizer = tiny
    decoder = eo.OrtDecoder(exported[1] / "model.onnx", threads=1)
    prompt = tokenizer("The sky is")["input_ids"]
    free = eo.greedy(decoder, [prompt], 8).tokens[0]
    stopped = eo.greedy(decoder, [prompt], 8, eos_token_id=free[2]).tokens[0]
    assert stopped == free[:free.index(free[2]) + 1]


def test_int8_copy_quantizes_every_linear_layer_and_stays_close(tiny, exported):
    import onnx

    _, model, tokenizer = tiny
    out = exported[1]
    int8_weights = [t for t in onnx.load(str(out / "model.int8.onnx")).graph.initializer
                    if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 2]  # not the zero points
    linear = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]  # the tied lm_head too
    assert len(int8_weights) == len(linear)
    assert sum(np.prod(t.dims) for t in int8_weights) == sum(m.weight.numel() for m in linear)
    fp32, int8 = eo.OrtDecoder(out / "model.onnx", threads=1), eo.OrtDecoder(out / "model.int8.onnx", threads=1)
    ids = tokenizer("The quick brown fox jumps over the lazy dog. " * 4)["input_ids"]
    ppl32, ppl8 = eo.perplexity(fp32, ids), eo.perplexity(int8, ids)
    assert abs(ppl8 - ppl32) / ppl32 < 0.1, (ppl32, ppl8)
    assert eo.compare(model, int8) > eo.compare(model, fp32)  # it did change the model


def test_int8_keep_leaves_the_named_layers_in_float32(tiny, exported, tmp_path):
    import onnx

    _, model, _ = tiny
    mixed = eo.quantize_int8(exported[1] / "model.onnx", tmp_path / "mixed.onnx", keep=("down_proj",))
    graph = onnx.load(str(mixed)).graph
    int8 = sum(t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 2 for t in graph.initializer)
    assert int8 == sum(isinstance(m, torch.nn.Linear) for m in model.modules()) - model.config.num_hidden_layers
    kept = [n for n in graph.node if n.op_type == "MatMul" and "down_proj" in eo.module_name(n)]
    assert len(kept) == model.config.num_hidden_layers
    with pytest.raises(eo.ExportError, match="no MatMul"):
        eo.quantize_int8(exported[1] / "model.onnx", tmp_path / "x.onnx", keep=("no_such_layer",))


def test_no_past_graph(tiny, tmp_path):
    _, model, tokenizer = tiny
    decoder = eo.OrtDecoder(eo.export(model, tmp_path, with_past=False), threads=1)
    assert not decoder.with_past and [i.name for i in decoder.session.get_inputs()] == list(eo.INPUTS)
    assert eo.compare(model, decoder) <= eo.TOLERANCE
    prompt = tokenizer("The sky is")["input_ids"]
    with torch.no_grad():
        ref = model.generate(torch.tensor([prompt]), max_new_tokens=8, do_sample=False)[0, len(prompt):].tolist()
    assert eo.greedy(decoder, [prompt], 8).tokens[0] == ref


@pytest.mark.parametrize("args, message", [
    (["--model", "tiny-t5"], "not a decoder-only causal LM"),
    (["--model", "./no/such/model"], "No model folder"),
    (["--out", "README.md/onnx"], "cannot write to the output folder"),
    (["--opset", "9"], "--opset must be between 18 and 23"),
    (["--int8-keep", "down_proj"], "--int8-keep only makes sense with --int8"),
])
def test_bad_input_gives_a_one_line_error(args, message, tmp_path):
    out = [] if "--out" in args else ["--out", str(tmp_path)]
    proc = subprocess.run([sys.executable, str(SCRIPT), *args, *out], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
