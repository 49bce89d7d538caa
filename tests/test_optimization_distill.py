"""optimization/distill.py: the KD loss, the layer-dropped student, training and the CLI.

A tiny random LLaMA (common's tiny-llama, saved to a folder with SmolLM2's tokenizer) is the teacher: what is
tested is that the student copies the right weights, learns to imitate the teacher, saves and reloads.
"""

import json
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "optimization"))
import distill  # noqa: E402

SCRIPT = ROOT / "optimization" / "distill.py"
TEXT = " ".join(f"The {w} of {v} is the {u} of all {w}s." for w in ("king", "queen", "fool", "ghost")
                for v in ("Denmark", "Verona", "Rome") for u in ("end", "hope", "fear", "crown", "song")) * 12


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    from common import load_model, load_tokenizer

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("teacher")
    load_model("tiny-llama", initializer_range=0.2).save_pretrained(folder)  # peaked, not uniform
    load_tokenizer("tiny-llama").save_pretrained(folder)
    (folder.parent / "text.txt").write_text(TEXT)
    return folder


@pytest.fixture(scope="module")
def teacher(teacher_dir):
    from common import load_model

    return load_model(str(teacher_dir), dtype=torch.float32).eval()


def run_cli(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_kd_loss_equals_torch_kl_div(temperature):
    g = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(2, 5, 50, generator=g) * 3, torch.randn(2, 5, 50, generator=g) * 3
    reference = F.kl_div(F.log_softmax(student / temperature, -1).flatten(0, 1),
                         F.log_softmax(teacher / temperature, -1).flatten(0, 1),
                         log_target=True, reduction="batchmean") * temperature**2
    assert distill.kd_loss(student, teacher, temperature).item() == pytest.approx(reference.item(), rel=1e-5)
    assert distill.kd_loss(teacher, teacher, temperature).item() == pytest.approx(0.0, abs=1e-6)


def test_pick_layers():
    assert distill.pick_layers(30, 6, "spread") == [0, 6, 12, 17, 23, 29]
    assert distill.pick_layers(30, 6, "first") == [0, 1, 2, 3, 4, 5]
    assert distill.pick_layers(30, 14, "ends") == [0, 1, 2, 3, *range(20, 30)]
    assert distill.pick_layers(4, 4, "ends") == distill.pick_layers(4, 4, "spread") == [0, 1, 2, 3]
    with pytest.raises(distill.DataError, match="between 1 and 4"):
        distill.pick_layers(4, 5)


def test_student_copies_the_chosen_layers(teacher):
    student = distill.make_student(teacher, [0, 3])
    assert student.config.num_hidden_layers == 2 and len(student.model.layers) == 2
    torch.testing.assert_close(student.model.layers[1].mlp.up_proj.weight, teacher.model.layers[3].mlp.up_proj.weight)
    torch.testing.assert_close(student.model.embed_tokens.weight, teacher.model.embed_tokens.weight)
    ids = torch.randint(100, 5000, (2, 16))
    full = distill.make_student(teacher, [0, 1, 2, 3]).eval()  # all layers: the same function as the teacher
    with torch.no_grad():
        torch.testing.assert_close(full(input_ids=ids).logits, teacher(input_ids=ids).logits)
    with pytest.raises(distill.DataError, match="increasing"):
        distill.make_student(teacher, [2, 1])


def test_kd_training_lowers_the_kd_loss(teacher):
    torch.manual_seed(0)
    ids = torch.randint(100, 3000, (40,))  # a handful of windows: imitating the teacher on them is learnable fast
    run = distill.Run("kd", distill.make_student(teacher, [0, 3]), "kd", temperature=2.0, lr=3e-3)
    ce = distill.Run("ce", distill.make_student(teacher, [0, 3]), "ce", lr=3e-3)
    distill.train([run, ce], teacher, ids, steps=12, batch_size=4, seq_len=32, dtype=torch.float32)
    losses = [h["loss"] for h in run.history]
    assert len(losses) == 12 and sum(losses[-3:]) / 3 < 0.5 * losses[0], losses
    assert "kl" in ce.history[0]  # every run logs the KL to the teacher when the teacher runs
    assert run.history[-1]["kl"] < ce.history[-1]["kl"]  # imitating the teacher beats fitting the labels at it


def test_score_against_itself_agrees_fully_with_zero_kl(teacher):
    ids = torch.randint(100, 5000, (300,)).tolist()
    result = distill.score(teacher, ids, window=64, keep_logprobs=True)
    assert result["tokens"] == 299 and len(result["predictions"]) == 299 and result["logprobs"].shape[0] == 299
    again = distill.score(teacher, ids, window=64, reference=result)
    assert again["agreement"] == 1.0 and again["perplexity"] == pytest.approx(result["perplexity"])
    assert again["kl_to_teacher"] == pytest.approx(0.0, abs=0.02)  # bf16-stored log-probs: not exactly 0
    other = distill.score(distill.make_student(teacher, [0, 3]).eval(), ids, window=64, reference=result)
    assert other["kl_to_teacher"] > 0.1 and other["agreement"] < 1.0


def test_cli_trains_saves_a_loadable_student_and_resumes(teacher_dir, teacher, tmp_path):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "student"
    common = ["--teacher", teacher_dir, "--student-layers", "2", "--data", teacher_dir.parent / "text.txt",
              "--batch-size", "2", "--seq-len", "32", "--dtype", "float32", "--save-every", "2", "--eval-chars", "1000",
              "--out", out]
    first = run_cli(*common, "--steps", "4")
    assert first.returncode == 0, first.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["layers"] == [2, 3] and len(metrics["history"]) == 4 and metrics["method"] == "kd"
    assert 0 <= metrics["student"]["agreement"] <= 1 and metrics["student"]["perplexity"] > 1
    assert metrics["student"]["parameters"] < metrics["teacher_scores"]["parameters"]
    student = AutoModelForCausalLM.from_pretrained(out)
    assert student.config.num_hidden_layers == 2 and (out / "tokenizer.json").exists()
    torch.testing.assert_close(student.model.embed_tokens.weight, teacher.model.embed_tokens.weight)  # frozen
    assert not torch.equal(student.model.layers[0].mlp.up_proj.weight, teacher.model.layers[2].mlp.up_proj.weight)
    resumed = run_cli(*common, "--steps", "6", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed at step 4" in resumed.stdout
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert [h["step"] for h in history] == list(range(6))


@pytest.mark.parametrize(("args", "message"), [
    (["--data", "no_such_file.txt"], "no such file"),
    (["--data", "not_a_dataset"], "neither a file nor a data set"),
    (["--student-layers", "9"], "between 1 and 4"),
    (["--resume"], "no checkpoint"),
])
def test_bad_input_gives_a_one_line_error(teacher_dir, tmp_path, args, message):
    defaults = {"--data": teacher_dir.parent / "text.txt", "--teacher": teacher_dir}
    extra = [x for k, v in defaults.items() if k not in args for x in (k, v)]
    out = run_cli(*args, *extra, "--steps", "1", "--out", tmp_path / "out")
    assert out.returncode == 2
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in out.stderr, out.stderr
