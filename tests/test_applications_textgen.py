"""applications/textgen.py: the diversity and repetition measures, the strategies, the log-prob scorer, the CLI."""

import json
import sys
from functools import partial

import pytest
import torch

from tests.conftest import ROOT, run_script

sys.path.insert(0, str(ROOT / "applications"))
import textgen as tg  # noqa: E402

SCRIPT = ROOT / "applications" / "textgen.py"


def test_words_lowercases_and_drops_punctuation():
    assert tg.words("The cat's hat, the CAT!") == ["the", "cat's", "hat", "the", "cat"]
    assert tg.words("...") == []


def test_distinct_n_by_hand():
    a = "the cat sat on the mat".split()
    assert tg.distinct_n([a], 1) == pytest.approx(5 / 6)  # "the" twice
    assert tg.distinct_n([a], 2) == 1.0
    assert tg.distinct_n([a, a], 2) == pytest.approx(0.5)  # two identical samples: every bigram twice
    assert tg.distinct_n([["x"]], 2) == 0.0  # no bigram at all


def test_repeated_ngram_share_by_hand():
    assert tg.repeated_ngram_share("a b c d e f".split(), 4) == 0.0
    # 4-grams of "a b c d a b c d": abcd bcda cdab dabc abcd -> the last one repeats the first
    assert tg.repeated_ngram_share("a b c d a b c d".split(), 4) == pytest.approx(1 / 5)
    assert tg.repeated_ngram_share(["la"] * 10, 4) == pytest.approx(6 / 7)
    assert tg.repeated_ngram_share(["a", "b"], 4) == 0.0


def test_longest_repeated_span_by_hand():
    assert tg.longest_repeated_span("a b c".split()) == 0
    assert tg.longest_repeated_span("x a b c y a b c z".split()) == 3
    assert tg.longest_repeated_span(["la"] * 5) == 4  # overlapping occurrences count
    assert tg.longest_repeated_span([]) == 0


def test_summarize_counts_loops_and_across_sample_diversity():
    loop = tg.Story(0, "I am here. " * 10, 40, -0.1)
    fresh = tg.Story(0, "A quiet fox ran over the hill and into the old forest at dawn.", 15, -2.0)
    same = tg.summarize([loop, loop])
    varied = tg.summarize([fresh, tg.Story(0, "Rain fell on the red roofs while the town slept.", 12, -2.5)])
    assert same["loops"] == 2 and varied["loops"] == 0
    assert same["repeated 4-grams"] > 0.5 > varied["repeated 4-grams"]
    assert varied["distinct-2 across"] > same["distinct-2 across"]
    assert same["log-prob/token"] == pytest.approx(-0.1)


def test_pure_temperature_strategies_switch_off_the_default_top_k():
    # GenerationConfig's default top_k=50 would otherwise apply to every sampled strategy
    for name in ("temp-0.7", "temp-1.0", "temp-1.3", "top-p-0.9", "min-p-0.1"):
        assert tg.generation_config(name).top_k == 0, name
    assert tg.generation_config("beam-4").num_beams == 4
    assert not tg.generation_config("greedy").do_sample


@pytest.fixture(scope="module")
def tiny():
    from common import load_model, load_tokenizer
    torch.manual_seed(0)
    return load_model("tiny-llama").eval(), load_tokenizer("tiny-llama")


def test_mean_logprobs_match_the_model_loss(tiny):
    model, _ = tiny
    prompt, completion = [5, 6, 7], [8, 9, 10, 11]
    ids = torch.tensor([prompt + completion])
    labels = ids.clone()
    labels[0, :len(prompt)] = -100  # loss only on the completion
    loss = model(input_ids=ids, labels=labels).loss.item()
    short = [8, 9]
    got = tg.mean_logprobs(model, prompt, [completion, short])  # padded batch: the short row must not change
    assert got[0] == pytest.approx(-loss, abs=1e-4)
    assert got[1] == pytest.approx(tg.mean_logprobs(model, prompt, [short])[0], abs=1e-4)


def test_write_stories_greedy_repeats_and_sampling_is_seeded(tiny):
    model, tokenizer = tiny
    openings = ["A door appeared.", "The piano played."]
    greedy = tg.write_stories(model, tokenizer, openings, "greedy", samples=3, new_tokens=6)
    assert len(greedy) == 6 and len({s.text for s in greedy if s.opening == 0}) == 1
    first = tg.write_stories(model, tokenizer, openings, "temp-1.3", samples=3, new_tokens=6, seed=1)
    again = tg.write_stories(model, tokenizer, openings, "temp-1.3", samples=3, new_tokens=6, seed=1)
    assert [s.text for s in first] == [s.text for s in again]
    assert len({s.text for s in first}) > 2  # a random tiny model at T=1.3 does not repeat itself
    assert all(s.new_tokens <= 6 and s.mean_logprob < 0 for s in first)


run = partial(run_script, SCRIPT, timeout=300)  # generous: the CPU may be shared


def test_cli_writes_the_table_and_stories(tmp_path):
    out = run("--model", "tiny-llama", "--strategies", "greedy,temp-1.0", "--samples", "2", "--new-tokens", "5",
              "--show", "1", "--dtype", "float32", "--json", tmp_path / "r.json", "Once upon a time.")
    assert out.returncode == 0, out.stderr
    data = json.loads((tmp_path / "r.json").read_text())
    assert set(data["table"]) == {"greedy", "temp-1.0"}
    assert len(data["stories"]["greedy"]) == 2 and "distinct-2 across" in data["table"]["temp-1.0"]
    assert "greedy" in out.stdout


@pytest.mark.parametrize("args, message", [
    (["--strategies", "nucleus"], "unknown strategy nucleus"),
    (["--samples", "0"], "at least 1"),
    (["--model", "./no-such-model-folder"], "No model folder"),
])
def test_cli_rejects_bad_input_in_one_line(args, message):
    out = run(*args)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr
