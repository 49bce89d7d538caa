"""pretrained/generate.py and embed.py from the terminal, and the tour that runs them."""

import subprocess
import sys

from tests.conftest import ROOT


def run(*args, timeout=180, **kw):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, **kw)


def test_generate_chat_streams_the_answer():
    out = run("pretrained/generate.py", "What is the capital of France?", "--max-new-tokens", "12")
    assert out.returncode == 0, out.stderr
    assert "Paris" in out.stdout


def test_generate_completion_sampling_is_seeded():
    args = ("pretrained/generate.py", "--completion", "Once upon a time", "--max-new-tokens", "8",
            "--temperature", "0.9", "--seed", "7")
    first, second = run(*args), run(*args)
    assert first.returncode == 0 and first.stdout.strip()
    assert first.stdout == second.stdout


def test_generate_interactive_chat_keeps_history():
    out = run("pretrained/generate.py", "--max-new-tokens", "10",
              input="My name is Ada. Reply OK.\nWhat is my name?\n")
    assert out.returncode == 0, out.stderr
    assert "Ada" in out.stdout


def test_generate_bad_input_is_a_clear_error():
    out = run("pretrained/generate.py", "--model", "nobody/not-a-cached-model", "hi")
    assert out.returncode == 2 and "cannot be reached" in out.stderr and "Traceback" not in out.stderr
    out = run("pretrained/generate.py", "--temperature", "-1", "hi")
    assert out.returncode == 2 and "--temperature" in out.stderr


def test_embed_prints_similarity_matrix(tmp_path):
    lines = tmp_path / "s.txt"
    lines.write_text("A cat sits on the mat.\nA kitten rests on a rug.\nStocks fell today.\n")
    out = run("pretrained/embed.py", "--file", str(lines))
    assert out.returncode == 0, out.stderr
    rows = [line.split()[-3:] for line in out.stdout.splitlines()[1:]]
    sims = [[float(x) for x in r] for r in rows]
    assert sims[0][0] == 1.0 and sims[0][1] > sims[0][2] + 0.3


def test_embed_needs_two_sentences():
    out = run("pretrained/embed.py", "only one")
    assert out.returncode == 2 and "at least two" in out.stderr


def test_tour_runs_every_step_in_budget():
    out = run("tour.py", timeout=300)
    assert out.returncode == 0, out.stderr
    assert "Paris" in out.stdout and "Tour finished" in out.stdout
    assert "cosine similarity" in out.stdout
