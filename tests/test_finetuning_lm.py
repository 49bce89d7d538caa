"""fine-tuning/finetune_lm.py: every method trains and reloads, user files, QLoRA gradients, bad input,
kill-and-resume is exact, and a real two-process run under `accelerate launch`."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "fine-tuning"))

SCRIPT = "fine-tuning/finetune_lm.py"
TINY = ["--model", "tiny-llama", "--block-size", "32", "--max-length", "96", "--batch-size", "2",
        "--eval-blocks", "8", "--no-progress"]


def run(*args, timeout=600, env=None):
    return subprocess.run([sys.executable, SCRIPT, *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env)


def metrics(folder):
    return json.loads((folder / "metrics.json").read_text())


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Real text and chats as the user files the script accepts: .txt, .jsonl with text, .jsonl with messages."""
    from instruct_task import sentiment_examples

    from common import corpus_text
    folder = tmp_path_factory.mktemp("data")
    text = corpus_text("shakespeare", "validation")[:24_000]
    (folder / "plays.txt").write_text(text)
    paragraphs = [p for p in text.split("\n\n") if p.strip()]
    (folder / "text.jsonl").write_text("".join(json.dumps({"text": p}) + "\n" for p in paragraphs))
    chats = [e["messages"] for e in sentiment_examples("train", 20)]
    (folder / "chats.jsonl").write_text("".join(json.dumps({"messages": m}) + "\n" for m in chats))
    return {"txt": folder / "plays.txt", "text_jsonl": folder / "text.jsonl", "chats": folder / "chats.jsonl"}


# Each method on one of the user file kinds, so both are covered without running every pair.
CASES = [("none", "txt", "text"), ("lora", "text_jsonl", "text"), ("prefix", "chats", "chat"),
         ("prompt", "txt", "text"), ("ia3", "chats", "chat"), ("adapter", "text_jsonl", "text")]


@pytest.mark.parametrize("method,source,kind", CASES, ids=[c[0] for c in CASES])
def test_method_trains_saves_and_reloads(method, source, kind, files, tmp_path):
    from finetune_lm import evaluate, load_finetuned, load_lm_data

    merge = ["--merge"] if method == "lora" else []
    out = run("--peft", method, "--data", files[source], "--steps", 3, "--warmup", 0, "--output", tmp_path,
              *TINY, *merge)
    assert out.returncode == 0, out.stderr[-3000:]
    m = metrics(tmp_path)
    assert m["method"] == method and m["kind"] == kind and m["steps"] == 3
    assert m["after"]["loss"] != m["before"]["loss"], "training changed nothing"
    if method == "none":
        assert m["trainable_parameters"] == m["total_parameters"]
    else:
        assert 0 < m["trainable_parameters"] < m["total_parameters"] / 10
    # The saved output reloads to the model that was evaluated: same held-out loss.
    model, tokenizer = load_finetuned(tmp_path)
    data = load_lm_data(str(files[source]), tokenizer, block_size=32, max_length=96, eval_blocks=8)
    assert evaluate(model, tokenizer, data)["loss"] == pytest.approx(m["after"]["loss"], abs=2e-3)
    if merge:  # the merged full model computes what base + LoRA computes
        import transformers
        merged = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
        assert evaluate(merged, tokenizer, data)["loss"] == pytest.approx(m["after"]["loss"], abs=2e-3)


def test_qlora_trains_every_layer_and_merges(tmp_path):
    """SmolLM2 in 4-bit NF4 + LoRA. Without the CPU fix, the "before" evaluation would repack the 4-bit weights
    for bitsandbytes' no-grad kernel and the gradient would stop at the last layer: every lora_B stays zero
    except the top ones, and torch warns that gemv_4bit has no autograd kernel."""
    from safetensors.torch import load_file

    out = run("--peft", "qlora", "--data", "sentiment", "--steps", 3, "--warmup", 0, "--batch-size", 2,
              "--train-examples", 6, "--eval-examples", 4, "--merge", "--no-progress", "--output", tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "autograd kernel was not registered" not in out.stderr
    m = metrics(tmp_path)
    assert m["method"] == "qlora" and "accuracy" in m["after"] and m["after"]["loss"] != m["before"]["loss"]
    lora_b = {k: v for k, v in load_file(tmp_path / "adapter_model.safetensors").items() if "lora_B" in k}
    assert len(lora_b) == 30 * 7 and all(v.abs().sum() > 0 for v in lora_b.values()), "some layers got no gradient"
    assert (tmp_path / "merged" / "model.safetensors").exists()


# ------------------------------------------------------------------------------ bad input

def write(folder, name, text):
    path = folder / name
    path.write_text(text)
    return str(path)


BAD = {
    "empty txt": (lambda d: ["--data", write(d, "e.txt", "")], "data file is empty: e.txt"),
    "empty jsonl": (lambda d: ["--data", write(d, "e.jsonl", "\n\n")], "e.jsonl holds no rows"),
    "row without a field": (lambda d: ["--data", write(d, "a.jsonl", '{"prompt": "hi", "answer": "yo"}\n')],
                            "a.jsonl row 1: no 'text' or 'messages' field (fields: prompt, answer)"),
    "row missing text": (lambda d: ["--data", write(d, "b.jsonl", '{"text": "one"}\n{"body": "two"}\n')],
                         "b.jsonl row 2: no 'text' field"),
    "row not json": (lambda d: ["--data", write(d, "c.jsonl", '{"text": "one"}\n{text: two}\n')],
                     "c.jsonl, line 2: not valid JSON"),
    "messages not a list": (lambda d: ["--data", write(d, "m.jsonl", '{"messages": "hello"}\n')],
                            "m.jsonl row 1: 'messages' must be a non-empty list"),
    "message without content": (
        lambda d: ["--data", write(d, "n.jsonl", '{"messages": [{"role": "user", "content": "a"}, '
                   '{"role": "assistant", "content": "b"}]}\n{"messages": [{"role": "user"}]}\n')],
        "n.jsonl row 2: message 1 needs string 'role' and 'content' fields"),
    "chat ends with user": (
        lambda d: ["--data", write(d, "u.jsonl", '{"messages": [{"role": "user", "content": "a"}]}\n')],
        "u.jsonl row 1: the last message must be the assistant's"),
    "unknown data": (lambda d: ["--data", "wikipedia"], "unknown data 'wikipedia'"),
    "missing file": (lambda d: ["--data", str(d / "nope.txt")], "data file not found"),
    "unknown model": (lambda d: ["--model", "no-such-org/no-such-model"], "cannot be reached"),
    "qlora on a random model": (lambda d: ["--peft", "qlora"], "qlora quantizes pretrained weights"),
    "resume without checkpoint": (lambda d: ["--resume"], "--resume: no complete checkpoint"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_input_is_one_clear_line(case, tmp_path, capsys):
    from finetune_lm import main

    make_args, message = BAD[case]
    args = make_args(tmp_path)
    model = [] if "--model" in args else ["--model", "tiny-llama"]
    assert main([*model, *args, "--steps", "1", "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("error: ") and err.count("\n") == 1, err


@pytest.mark.parametrize("args,message", [
    (["--peft", "lokr"], "unknown method 'lokr'; choose one of: none, lora, qlora, prefix, prompt, ia3, adapter"),
    (["--peft", "prompt", "--merge"], "--merge: prompt tuning adds trained input embeddings"),
    (["--peft", "prefix", "--merge"], "--merge: prefix tuning adds trained key/value vectors"),
])
def test_bad_options_exit_2(args, message, tmp_path, capsys):
    from finetune_lm import main

    with pytest.raises(SystemExit) as exit_:
        main([*args, "--output", str(tmp_path)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and message in err and err.count("\n") == 1, err


def test_bad_jsonl_from_the_terminal(tmp_path):
    bad = write(tmp_path, "rows.jsonl", '{"text": "fine"}\n{"txt": "typo"}\n')
    out = run("--data", bad, "--output", tmp_path / "out", *TINY)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1] == ("error: rows.jsonl row 2: no 'text' field "
                                                   "(the first row has one, so every row needs it)")


# -------------------------------------------------------------------------- kill and resume

# The Trainer logs the mean loss since its last log (every 3 steps here); checkpoints on the same steps
# make the resumed run's log identical too, not only its weights.
RESUMABLE = ["--data", "{txt}", "--peft", "lora", "--steps", 18, "--save-every", 3, "--lr", 1e-3, *TINY]


def resumable(files):
    return [str(files["txt"]) if a == "{txt}" else a for a in RESUMABLE]


def test_killed_run_resumes_to_the_uninterrupted_result(files, tmp_path):
    """SIGKILL once the first checkpoint is complete, then --resume: the same adapter and metrics as one
    uninterrupted run. LoRA dropout draws random numbers, so the RNG state must be restored as well."""
    from safetensors.torch import load_file

    reference = tmp_path / "reference"
    assert run(*resumable(files), "--output", reference).returncode == 0
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, SCRIPT, *map(str, resumable(files)), "--output", str(killed)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = killed / "checkpoints" / "checkpoint-3" / "trainer_state.json"
    deadline = time.time() + 180
    while not first.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (killed / "metrics.json").exists()
    out = run(*resumable(files), "--output", killed, "--resume")
    assert out.returncode == 0, out.stderr[-3000:]
    m, ref = metrics(killed), metrics(reference)
    assert m["resumed_from"].startswith("checkpoint-") and ref["resumed_from"] is None
    assert m["after"]["loss"] == pytest.approx(ref["after"]["loss"], abs=1e-4)
    assert m["last_logged_loss"] == pytest.approx(ref["last_logged_loss"], abs=1e-4)
    a, b = load_file(killed / "adapter_model.safetensors"), load_file(reference / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    losses = lambda f: [r["loss"] for r in json.loads((f / "log_history.json").read_text()) if "loss" in r]  # noqa: E731
    assert losses(killed) == pytest.approx(losses(reference), abs=1e-4)


def test_resume_refuses_other_settings(files, tmp_path, capsys):
    from finetune_lm import main

    args = [str(a) for a in resumable(files)]
    args[args.index("--steps") + 1] = "3"
    assert run(*args, "--output", tmp_path).returncode == 0
    args[args.index("--lr") + 1] = "5e-4"
    assert main([*args, "--output", str(tmp_path), "--resume"]) == 2
    assert "other settings than the checkpointed run: lr 0.001 -> 0.0005" in capsys.readouterr().err


# ------------------------------------------------------------------------------ accelerate

def test_two_processes_under_accelerate_launch(files, tmp_path):
    """`accelerate launch --cpu --num_processes 2` silently runs ONE process (DistributedType.NO), so it would
    test nothing. `--multi_gpu --num_processes 2` with the script's --cpu (TrainingArguments.use_cpu) starts two
    real gloo processes: each trains on its shard, gradients are averaged, and only rank 0 writes the output."""
    env = dict(os.environ, OMP_NUM_THREADS="1")  # 2 processes on 2 cores
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29517",
           SCRIPT, "--cpu", "--data", str(files["txt"]), "--steps", "3", "--output", str(tmp_path), *TINY]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    m = metrics(tmp_path)
    assert m["world_size"] == 2 and m["steps"] == 3 and m["after"]["loss"] != m["before"]["loss"]
    assert out.stdout.count("Saved to") == 1  # rank 0 only
