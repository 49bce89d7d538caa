"""pretrained/pretrain.py: every architecture trains and reloads, loss falls, resume is exact, bad input."""

import json
import signal
import subprocess
import sys
import time
from functools import partial

import pytest
import torch

from tests.conftest import ROOT, run_script

SCRIPT = "pretrained/pretrain.py"
TINY = ["--layers", "1", "--hidden", "32", "--heads", "2", "--context", "32", "--batch-size", "2",
        "--eval-examples", "8", "--no-progress"]


run = partial(run_script, SCRIPT, timeout=120)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """60 kB of Shakespeare (its last 10 % is the held-out part)."""
    from common import corpus_text
    path = tmp_path_factory.mktemp("corpus") / "plays.txt"
    path.write_text(corpus_text("shakespeare", "train")[:60_000])
    return path


def metrics(folder):
    return json.loads((folder / "metrics.json").read_text())


def losses(folder):
    return [json.loads(line) for line in (folder / "loss_log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("arch", ["gpt2", "llama", "bert", "roberta", "electra", "t5"])
def test_each_arch_trains_and_reloads(arch, corpus, tmp_path):
    import transformers

    out = run("--arch", arch, "--corpus", corpus, "--steps", 3, "--output", tmp_path, *TINY)
    assert out.returncode == 0, out.stderr
    assert [row["step"] for row in losses(tmp_path)] == [1, 2, 3]
    auto = {"gpt2": "AutoModelForCausalLM", "llama": "AutoModelForCausalLM", "bert": "AutoModelForMaskedLM",
            "roberta": "AutoModelForMaskedLM", "electra": "AutoModelForPreTraining", "t5": "AutoModelForSeq2SeqLM"}
    model = getattr(transformers, auto[arch]).from_pretrained(tmp_path)
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert model.config.model_type == arch and model.config.vocab_size == len(tokenizer)
    ids = tokenizer("To be, or not to be", return_tensors="pt")["input_ids"]
    extra = {"decoder_input_ids": ids[:, :1]} if arch == "t5" else {}
    with torch.no_grad():
        assert torch.isfinite(model(input_ids=ids, **extra).logits).all()
    if arch == "t5":  # SmolLM2's tokenizer has no sentinels: they were added and the vocabulary grown
        assert "<extra_id_0>" in tokenizer.get_vocab() and len(tokenizer) == 49152 + 100
    if arch == "electra":  # the discriminator is the saved model; the generator sits beside it
        assert model.__class__.__name__ == "ElectraForPreTraining" and (tmp_path / "generator").is_dir()


def test_gpt2_held_out_loss_falls(corpus, tmp_path):
    out = run("--arch", "gpt2", "--corpus", corpus, "--train-tokenizer", 512, "--steps", 60, "--lr", 3e-3,
              "--output", tmp_path, *TINY)
    assert out.returncode == 0, out.stderr
    m = metrics(tmp_path)
    assert m["val_loss"] < m["untrained_val_loss"] - 1.0, m
    assert m["val_perplexity"] < m["untrained_val_perplexity"] / 3
    assert "held-out loss" in out.stdout


# RoBERTa: dropout and dynamic masking both draw random numbers, so a resume must restore them exactly.
RESUMABLE = ["--arch", "roberta", "--train-tokenizer", 400, "--steps", 30, "--save-every", 10, *TINY]


@pytest.fixture(scope="module")
def uninterrupted(corpus, tmp_path_factory):
    """The reference: the same 30 steps in one go."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    out = run(*RESUMABLE, "--corpus", corpus, "--output", folder)
    assert out.returncode == 0, out.stderr
    return folder


def assert_same_run(a, b):
    for row_a, row_b in zip(losses(a), losses(b), strict=True):
        assert row_a["step"] == row_b["step"] and abs(row_a["loss"] - row_b["loss"]) < 1e-5, (row_a, row_b)
    assert abs(metrics(a)["final_train_loss"] - metrics(b)["final_train_loss"]) < 1e-5
    assert abs(metrics(a)["val_loss"] - metrics(b)["val_loss"]) < 1e-5


def test_resume_after_abrupt_exit_matches_uninterrupted_run(corpus, uninterrupted, tmp_path):
    out = run(*RESUMABLE, "--corpus", corpus, "--output", tmp_path, "--stop-after", 25)
    assert out.returncode == 3 and not (tmp_path / "metrics.json").exists()  # died like a killed process
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step-000020.pt"]
    assert len(losses(tmp_path)) == 25  # steps 21-25 are logged but not checkpointed: they are redone
    out = run(*RESUMABLE, "--corpus", corpus, "--output", tmp_path, "--resume")
    assert out.returncode == 0, out.stderr
    assert [r["step"] for r in losses(tmp_path)] == list(range(1, 31))
    assert_same_run(uninterrupted, tmp_path)


def test_resume_after_a_real_kill(corpus, uninterrupted, tmp_path):
    args = [sys.executable, SCRIPT, *map(str, RESUMABLE), "--corpus", str(corpus), "--output", str(tmp_path)]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint, deadline = tmp_path / "checkpoints" / "step-000020.pt", time.time() + 120
    while proc.poll() is None and not checkpoint.exists() and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # if it already finished, resuming just re-saves the result
    proc.wait()
    out = run(*RESUMABLE, "--corpus", corpus, "--output", tmp_path, "--resume")
    assert out.returncode == 0, out.stderr
    assert_same_run(uninterrupted, tmp_path)


def test_bad_input_is_a_clear_error_from_the_terminal(tmp_path):
    out = run("--corpus", tmp_path / "missing.txt", "--output", tmp_path / "out")
    assert out.returncode == 2 and "error: corpus file not found" in out.stderr and "Traceback" not in out.stderr
    out = run("--arch", "gpt5", "--output", tmp_path / "out")
    assert out.returncode == 2 and "unknown architecture 'gpt5'" in out.stderr


def test_bad_input_messages(corpus, tmp_path, capsys):
    sys.path.insert(0, str(ROOT / "pretrained"))
    from pretrain import main

    def error(*args):
        with pytest.raises(SystemExit) as exit_:  # argparse errors exit 2 themselves
            sys.exit(main([*map(str, args), "--output", str(tmp_path / "out")]))
        assert exit_.value.code == 2
        return capsys.readouterr().err

    (tmp_path / "empty.txt").write_text("  \n")
    assert "corpus file is empty" in error("--corpus", tmp_path / "empty.txt")
    assert "unknown corpus 'no_such_dataset'" in error("--corpus", "no_such_dataset")
    assert "no checkpoint" in error("--corpus", corpus, "--resume")
    (tmp_path / "tiny.txt").write_text("Just a few words.")
    assert "fewer than one example" in error("--corpus", tmp_path / "tiny.txt")
    assert "multiple of --heads" in error("--hidden", 30, "--heads", 4)
    assert "--steps must be at least 1" in error("--steps", 0)


def test_masking_static_for_bert_dynamic_for_roberta():
    sys.path.insert(0, str(ROOT / "pretrained"))
    from pretrain import batch_indices, row_seeds

    index = torch.tensor([5, 9])
    assert row_seeds("bert", 0, 3, index) == row_seeds("bert", 0, 77, index)  # same example, same mask
    assert row_seeds("roberta", 0, 3, index) != row_seeds("roberta", 0, 77, index)
    # every example once per epoch, in a seeded order that depends only on the step
    epoch = torch.cat([batch_indices(10, 2, step, seed=1) for step in range(5)])
    assert sorted(epoch.tolist()) == list(range(10))
    assert torch.equal(batch_indices(10, 2, 7, seed=1), batch_indices(10, 2, 7, seed=1))


def test_tokenize_matches_the_tokenizer_without_its_padding():
    """MiniLM's tokenizer.json pads and truncates to 128: the fast path must not inherit that."""
    sys.path.insert(0, str(ROOT / "pretrained"))
    from pretrain import load_pretrain_tokenizer, tokenize

    tokenizer = load_pretrain_tokenizer("bert")
    text = "Now is the winter of our discontent " * 40  # one line of ~300 tokens
    ids = tokenize([text, "Made glorious summer."], tokenizer).tolist()
    first = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(first) > 128 and ids[: len(first)] == first and ids[len(first)] == tokenizer.sep_token_id
    assert tokenizer.pad_token_id not in ids
