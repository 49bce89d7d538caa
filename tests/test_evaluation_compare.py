"""evaluation/compare_models.py: the before/after report of two models, on tiny models saved to folders."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "evaluation" / "compare_models.py"
SMALL = ["--n-task", "12", "--n-docs", "4", "--doc-chars", "400", "--n-prompts", "3", "--max-new-tokens", "6",
         "--n-boot", "300", "--window", "128"]


def run_script(*args, timeout=600):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A random tiny-llama saved as the base, and a copy trained 8 steps on news text as the "fine-tune"."""
    import torch

    from common import corpus_text, load_model, load_tokenizer, seed_everything

    seed_everything(0)
    folder = tmp_path_factory.mktemp("models")
    tokenizer = load_tokenizer("tiny-llama")
    model = load_model("tiny-llama")
    model.save_pretrained(folder / "base")
    tokenizer.save_pretrained(folder / "base")
    ids = torch.tensor(tokenizer(corpus_text("news", "train")[:20_000])["input_ids"][:4 * 128]).view(4, 128)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    for _ in range(8):
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(folder / "tuned")
    tokenizer.save_pretrained(folder / "tuned")
    return folder


def brackets(section):
    return section["ci"][0] - 1e-12 <= section["diff"] <= section["ci"][1] + 1e-12


def test_report_has_every_section_and_cis_bracket_the_estimates(models, tmp_path):
    out = run_script("--base", models / "base", "--tuned", models / "tuned", "--judge", models / "base", *SMALL,
                     "--json", tmp_path / "report.json")
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert {"task", "text", "judge", "verdict"} <= set(report)
    task, text, judge = report["task"], report["text"], report["judge"]
    assert task["items"] == 12 and task["both_right"] + task["both_wrong"] + task["only_base_right"] \
        + task["only_tuned_right"] == 12
    assert brackets(task) and brackets(text["bits_per_byte"]) and brackets(text["perplexity"])
    assert judge["prompts"] == 3 and len(judge["answers"]) == 3
    assert judge["ci"][0] <= judge["win_rate"] <= judge["ci"][1]
    # the paired interval is never wider than the unpaired one on the same 0/1 scores
    assert task["ci"][1] - task["ci"][0] <= task["unpaired_ci"][1] - task["unpaired_ci"][0] + 1e-9
    # 8 steps on news text make a random model predict held-out news much better: a real, one-sided change
    bpb = text["bits_per_byte"]
    assert bpb["tuned"] < bpb["base"] and bpb["ci"][1] < 0
    assert text["documents"] == 4 and len(text["per_document_bpb_diff"]) == 4
    assert "bits per byte" in out.stdout and "tuned better" in out.stdout and len(report["verdict"]) == 3


def test_identical_models_give_a_difference_ci_containing_zero(models, tmp_path):
    out = run_script("--base", models / "base", "--tuned", models / "base", *SMALL, "--no-judge",
                     "--json", tmp_path / "same.json")
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "same.json").read_text())
    assert "judge" not in report
    for section in (report["task"], report["text"]["bits_per_byte"]):
        assert section["diff"] == 0 and section["ci"][0] <= 0 <= section["ci"][1]
    assert "no evidence" in report["verdict"][0] and "no evidence" in report["verdict"][1]


def test_paired_bootstrap_cancels_what_the_items_share():
    sys.path.insert(0, str(ROOT / "evaluation"))
    import compare_models as CM

    rng = np.random.default_rng(0)
    difficulty = rng.normal(size=400)  # shared by both models: cancels in a paired difference
    base, tuned = difficulty + rng.normal(0, 0.1, 400), difficulty + 0.05 + rng.normal(0, 0.1, 400)
    paired = CM.paired_bootstrap(base, tuned, 1000)
    unpaired = CM.unpaired_bootstrap(base, tuned, 1000)
    assert paired["ci"][0] > 0  # the small shift is detected only with pairing
    assert unpaired[0] < 0 < unpaired[1]
    same = CM.paired_bootstrap(base, base, 500)
    assert same["diff"] == 0 and same["ci"] == [0.0, 0.0]
    noise = CM.paired_bootstrap(base, base + rng.normal(0, 0.1, 400), 1000)  # no shift: the CI contains 0
    assert noise["ci"][0] < 0 < noise["ci"][1]


def test_tokenizer_mismatch_keeps_bits_per_byte_and_drops_the_per_token_ci():
    sys.path.insert(0, str(ROOT / "evaluation"))
    import compare_models as CM

    from common import load_tokenizer

    assert not CM.same_tokenizer(load_tokenizer("tiny-llama"), load_tokenizer("tiny-bert"))
    docs = [{"nll": 100.0, "tokens": 50, "bytes": 200}, {"nll": 80.0, "tokens": 40, "bytes": 150}]
    other = [{"nll": 90.0, "tokens": 60, "bytes": 200}, {"nll": 85.0, "tokens": 45, "bytes": 150}]
    section = CM.text_section("x", docs, other, comparable_tokens=False, n_boot=200)
    assert section["perplexity"]["ci"] is None and section["bits_per_byte"]["ci"] is not None
    assert section["bits_per_byte"]["base"] == pytest.approx(180 / 350 / np.log(2))


@pytest.mark.parametrize("make, args, message", [
    (None, ["--tuned", "no/such/folder/model"], "model folder not found"),
    ("empty_dir", ["--tuned", "{empty_dir}"], "holds no model"),
    ("empty_prompts", ["--tuned", "tiny-llama", "--prompts", "{empty_prompts}"], "holds no rows"),
    ("blank_text", ["--tuned", "tiny-llama", "--text", "{blank_text}"], "holds no documents"),
    (None, ["--tuned", "tiny-llama", "--task", "missing.csv"], "no such file"),
    (None, ["--tuned", "tiny-llama", "--n-docs", "0"], "--n-docs must be at least 1"),
])
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, make, args, message):
    paths = {"empty_dir": tmp_path / "empty", "empty_prompts": tmp_path / "p.jsonl", "blank_text": tmp_path / "t.txt"}
    paths["empty_dir"].mkdir()
    paths["empty_prompts"].write_text("\n")
    paths["blank_text"].write_text("   \n")
    out = run_script(*[a.format(**{k: str(v) for k, v in paths.items()}) for a in args])
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert "Traceback" not in out.stderr


def test_model_source_picks_the_merged_model_of_a_finetune_folder(tmp_path):
    sys.path.insert(0, str(ROOT / "evaluation"))
    import compare_models as CM

    run = tmp_path / "run"
    (run / "merged").mkdir(parents=True)
    (run / "settings.json").write_text("{}")
    assert CM.model_source(str(run)) == str(run)  # adapter only: loaded on its base and merged in memory
    (run / "merged" / "config.json").write_text("{}")
    assert CM.model_source(str(run)) == str(run / "merged")
    assert CM.model_source("tiny-llama") == "tiny-llama"
    with pytest.raises(CM.DataError, match="not found"):
        CM.model_source(str(tmp_path / "nothing"))
