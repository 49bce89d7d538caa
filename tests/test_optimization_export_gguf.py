"""optimization/export_gguf.py: HF folder -> GGUF that llama.cpp runs with the transformers logits; LoRA merge;
clear errors; the Ollama Modelfile's template renders the HF chat template's prompt."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "optimization"))
import export_gguf  # noqa: E402

PROMPT = "The quick brown fox jumps over the lazy dog. It was a sunny day"


def _llama_cpp_or_skip():
    """Skip, saying why, only when llama-cpp-python could not be built on this machine."""
    try:
        import llama_cpp
    except ImportError:
        failed = (ROOT / ".venv" / ".no-llama-cpp").exists()
        pytest.skip("llama-cpp-python is not installed: " + (
            "tools/setup.sh could not build it here (log: .venv/llama-cpp-build.log); install a C/C++ compiler, "
            "delete .venv/.no-llama-cpp and run `make setup`" if failed else "run `make setup` (it builds it once)"))
    return llama_cpp


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A seeded random-init tiny LLaMA (4 layers, d=128, SmolLM2's tokenizer) saved as a HF folder."""
    from common import load_model, load_tokenizer

    torch.manual_seed(0)
    model, tokenizer = load_model("tiny-llama").eval(), load_tokenizer("tiny-llama")
    folder = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder, model, tokenizer


def _hf_logits(model, ids: list[int]) -> np.ndarray:
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float().numpy()


def _gguf_logits(path, ids: list[int]) -> tuple[np.ndarray, list[int]]:
    from llama_cpp import Llama

    llm = Llama(model_path=str(path), n_ctx=128, n_threads=1, logits_all=True, verbose=False)
    llm.eval(ids)
    return np.array(llm.scores[:len(ids)]), llm.tokenize(PROMPT.encode(), add_bos=False, special=True)


def test_export_f16_and_q8_0_match_the_hf_logits(tiny, tmp_path):
    _llama_cpp_or_skip()
    folder, model, tokenizer = tiny
    paths = export_gguf.export(str(folder), tmp_path, ["f16", "q8_0"], name="tiny")
    assert [p.name for p in paths.values()] == ["tiny.F16.gguf", "tiny.Q8_0.gguf"]
    from gguf import GGUFReader

    for path in paths.values():  # the fast header reader agrees with gguf's own reader
        reference = [(t.name, t.tensor_type.name, int(t.n_elements)) for t in GGUFReader(path).tensors]
        assert export_gguf.tensor_types(path) == reference
    assert {kind for _, kind, _ in export_gguf.tensor_types(paths["q8_0"])} == {"Q8_0", "F32"}
    sizes = {row["type"]: row for row in export_gguf.size_table(paths)}
    assert sizes["Q8_0"]["MB"] < 0.65 * sizes["F16"]["MB"]  # 8.5 vs 16 bits, plus the tokenizer in both
    ids = tokenizer(PROMPT)["input_ids"]
    hf = _hf_logits(model, ids)
    for gguf_type, tolerance in [("f16", 0.02), ("q8_0", 0.05)]:
        logits, gguf_ids = _gguf_logits(paths[gguf_type], ids)
        assert gguf_ids == ids, "the GGUF tokenizer differs from the HF one"
        error = np.abs(logits - hf).max() / np.abs(hf).max()
        assert error < tolerance, f"{gguf_type}: largest logit error {error:.4f} of the largest logit"
        assert (logits.argmax(-1) == hf.argmax(-1)).mean() == 1.0


def test_lora_is_merged_before_export(tiny, tmp_path):
    _llama_cpp_or_skip()
    import peft

    folder, model, tokenizer = tiny
    adapter = tmp_path / "adapter"
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
                             init_lora_weights=False)  # random A and B: the update is not zero
    torch.manual_seed(1)
    tuned = peft.get_peft_model(load_copy(folder), config).eval()
    tuned.save_pretrained(adapter)
    load_copy(folder).save_pretrained(adapter / "base")  # finetune_lm.py's layout: the base model in base/
    tokenizer.save_pretrained(adapter)
    paths = export_gguf.export(None, tmp_path / "out", ["f16"], lora=adapter)  # the base is found in base/
    assert paths["f16"].name == "adapter.F16.gguf"
    ids = tokenizer(PROMPT)["input_ids"]
    merged, base = _hf_logits(tuned, ids), _hf_logits(model, ids)
    logits, _ = _gguf_logits(paths["f16"], ids)
    assert np.abs(merged - base).max() > 0.1 * np.abs(base).max(), "the adapter barely changes the model"
    assert np.abs(logits - merged).max() < 0.02 * np.abs(merged).max()


def load_copy(folder):
    import transformers

    return transformers.AutoModelForCausalLM.from_pretrained(folder)


def test_clear_errors_for_missing_model_adapter_and_unsupported_architecture(tmp_path):
    with pytest.raises(export_gguf.ExportError, match="No model folder"):
        export_gguf.export("./no/such/model", tmp_path)
    with pytest.raises(export_gguf.ExportError, match="no adapter folder"):
        export_gguf.export(None, tmp_path, lora=tmp_path / "missing-adapter")
    (tmp_path / "not-an-adapter").mkdir()
    with pytest.raises(export_gguf.ExportError, match="not a peft adapter"):
        export_gguf.export(None, tmp_path, lora=tmp_path / "not-an-adapter")
    prefix = tmp_path / "prefix-adapter"
    prefix.mkdir()
    (prefix / "adapter_config.json").write_text(json.dumps({"peft_type": "PREFIX_TUNING"}))
    with pytest.raises(export_gguf.ExportError, match="PREFIX_TUNING adapter cannot be merged"):
        export_gguf.export(None, tmp_path, lora=prefix)
    with pytest.raises(export_gguf.ExportError, match="pass it as --lora"):
        export_gguf.export(str(prefix), tmp_path)
    strange = tmp_path / "strange"
    strange.mkdir()
    (strange / "config.json").write_text(json.dumps({"architectures": ["NoSuchModelForCausalLM"]}))
    with pytest.raises(export_gguf.ExportError, match="'NoSuchModelForCausalLM' is not supported"):
        export_gguf.export(str(strange), tmp_path)
    with pytest.raises(export_gguf.ExportError, match="unknown GGUF type"):
        export_gguf.export(str(strange), tmp_path, ["q9_9"])


def test_missing_converter_is_a_clear_error(tmp_path, monkeypatch):
    def offline(pkg):
        raise RuntimeError(f"Could not download {pkg.name}=={pkg.version} from the package index.")

    monkeypatch.setenv("LLM_PATH_CACHE", str(tmp_path))  # an empty cache: nothing extracted yet
    monkeypatch.setattr(export_gguf, "fetch", offline)
    with pytest.raises(export_gguf.ExportError, match="source archive"):
        export_gguf.converter_dir()


def test_cli_exits_2_with_a_message_not_a_traceback(tmp_path):
    out = subprocess.run([sys.executable, "optimization/export_gguf.py", "--model", "./no/such/model", "--out",
                          str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stderr.startswith("error: No model folder")
    assert "Traceback" not in out.stderr


def test_converter_knows_llama_and_its_gguf_py_matches_the_pinned_gguf():
    assert {"LlamaForCausalLM", "Qwen2ForCausalLM", "GPT2LMHeadModel"} <= export_gguf.supported_architectures()
    vendored = (export_gguf.converter_dir() / "gguf-py" / "pyproject.toml").read_text()
    pinned = next(line for line in (ROOT / "requirements.txt").read_text().splitlines() if line.startswith("gguf=="))
    assert f'version = "{pinned.split("==")[1]}"' in vendored


# --- the Ollama Modelfile ---------------------------------------------------------------------------------

CHATS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "Answer in one word."}, {"role": "user", "content": "Capital of Italy?"}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
     {"role": "user", "content": "Tell me a joke.\nA short one."}],
]


@pytest.mark.parametrize("chat", CHATS, ids=["user", "system-user", "multi-turn"])
def test_modelfile_template_renders_the_hf_chat_template(chat):
    from common import load_tokenizer

    modelfile = export_gguf.read_modelfile(ROOT / "deployment" / "ollama" / "Modelfile")
    assert modelfile["FROM"] == "./model.gguf"
    assert ("stop", "<|im_end|>") in modelfile["PARAMETER"]
    expected = load_tokenizer("smollm2-135m-instruct").apply_chat_template(chat, add_generation_prompt=True,
                                                                           tokenize=False)
    assert export_gguf.ollama_prompt(modelfile, chat) == expected


def test_go_template_subset():
    render = export_gguf.render_go_template
    assert render("{{ range .M }}<{{ . }}>{{ end }}", {"M": ["a", "b"]}) == "<a><b>"
    assert render("a  {{- if .X }} x {{- else if eq .Y \"y\" }} y {{- else }} z {{- end }}  b",
                  {"X": "", "Y": "y"}) == "a y  b"
    assert render("{{ range .M }}{{ $.Top }}{{ .K }}{{ end }}", {"Top": "t", "M": [{"K": 1}]}) == "t1"
    with pytest.raises(ValueError, match="unsupported"):
        render("{{ len .Messages }}", {})
    with pytest.raises(ValueError, match=re.escape("has no {{ end }}")):
        render("{{ if .X }}x", {})
