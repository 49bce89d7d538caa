"""evaluation/evaluate_model.py: token losses, the sliding window, bits per byte and the CLI.

The scoring tests use tiny-llama (random weights, 256-token context): what matters is that every token is
scored once with the promised context, not that the model is good.
"""

import json
import math
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "evaluation"))
import evaluate_model as em  # noqa: E402

SCRIPT = ROOT / "evaluation" / "evaluate_model.py"


@pytest.fixture(scope="module")
def tiny():
    from common import load_model

    torch.manual_seed(0)
    return load_model("tiny-llama").eval()


@pytest.fixture(scope="module")
def ids():
    return torch.randint(100, 5000, (200,), generator=torch.Generator().manual_seed(0))


def chunked_nll(model, ids, window):
    """Plain non-overlapping chunks, written out by hand: inputs ids[i:i+w] predict ids[i+1:i+w+1]."""
    total, count = 0.0, 0
    for i in range(0, len(ids) - 1, window):
        x, y = ids[i:i + window], ids[i + 1:i + window + 1]
        with torch.no_grad():
            logits = model(input_ids=x[None, :len(y)]).logits[0]
        total += torch.nn.functional.cross_entropy(logits.float(), y, reduction="sum").item()
        count += len(y)
    return total, count


@pytest.mark.parametrize("window", [32, 50, 199])
def test_stride_equal_to_window_is_chunked_scoring(tiny, ids, window):
    nll, count = em.sliding_window_nll(tiny, ids, window, window)
    ref_nll, ref_count = chunked_nll(tiny, ids, window)
    assert count == ref_count == len(ids) - 1
    assert nll == pytest.approx(ref_nll, rel=1e-5)


@pytest.mark.parametrize(("n", "window", "stride"), [(200, 64, 64), (200, 64, 16), (200, 64, 1), (10, 64, 8),
                                                     (101, 50, 49), (2, 4, 4)])
def test_sliding_window_scores_every_token_exactly_once(n, window, stride):
    spans = em.window_spans(n, window, stride)
    targets = [t for _, first, last in spans for t in range(first, last)]
    assert targets == list(range(1, n)), "each of tokens 1..n-1 once, in order"
    for start, first, last in spans:
        assert 0 <= start < first and last - 1 - start <= window, "inputs fit the window and precede the targets"
        if start > 0:  # away from the start, every target sees at least window - stride + 1 tokens
            assert first - start >= window - stride + 1


def test_sliding_window_losses_match_one_pass_when_the_text_fits(tiny, ids):
    full = em.token_losses(tiny, ids[:120])
    for stride in (7, 60, 119):  # any stride: every token still sees all earlier tokens
        assert torch.allclose(em.sliding_window_losses(tiny, ids[:120], 128, stride), full, atol=1e-4)


def test_smaller_stride_gives_more_context_and_lower_loss_on_repeated_text(tiny):
    # A repeated 40-token block: with context reaching back one period, the model can copy (induction); even a
    # random model then scores repeats differently, so chunked and sliding results must differ.
    block = torch.randint(100, 5000, (40,), generator=torch.Generator().manual_seed(1))
    ids = block.repeat(5)
    chunked, _ = em.sliding_window_nll(tiny, ids, 48, 48)
    sliding, _ = em.sliding_window_nll(tiny, ids, 48, 4)
    assert chunked != pytest.approx(sliding, rel=1e-6)


def test_stride_larger_than_window_is_refused():
    with pytest.raises(em.DataError, match="stride"):
        em.window_spans(100, 16, 17)


def test_bits_per_byte_and_perplexity_by_hand():
    # 10 nats over 4 tokens and 5 bytes: 10 / ln 2 = 14.427 bits, / 5 bytes = 2.885 bits per byte
    assert em.bits_per_byte(10.0, 5) == pytest.approx(10 / 0.6931471805599453 / 5)
    assert em.bits_per_byte(10.0, 5) == pytest.approx(2.8853900817779268)
    assert em.perplexity(10.0, 4) == pytest.approx(math.exp(2.5))
    # the same total NLL spread over twice as many (finer) tokens: perplexity drops, bits per byte does not
    assert em.perplexity(10.0, 8) < em.perplexity(10.0, 4)


class UniformByteModel(torch.nn.Module):
    """Every next byte equally likely: 8 bits per byte and perplexity 256, whatever the text."""

    def __init__(self):
        super().__init__()
        self.config = SimpleNamespace(max_position_embeddings=64)
        self.device = torch.device("cpu")

    def forward(self, input_ids, logits_to_keep=0):
        keep = logits_to_keep or input_ids.shape[1]
        return SimpleNamespace(logits=torch.zeros(input_ids.shape[0], keep, 256))


def test_uniform_byte_model_scores_eight_bits_per_byte():
    text = "Perplexity, done right: ÿ costs two bytes."
    ids = [0] + list(text.encode("utf-8"))  # a byte-level "tokenizer" with a start token
    nll, count = em.sliding_window_nll(UniformByteModel(), ids, 16, 5)
    assert count == len(text.encode("utf-8")) > len(text)
    assert em.bits_per_byte(nll, count) == pytest.approx(8.0)
    assert em.perplexity(nll, count) == pytest.approx(256.0)


def test_token_losses_equal_the_models_own_loss(tiny, ids):
    with torch.no_grad():
        hf_loss = tiny(input_ids=ids[None, :100], labels=ids[None, :100]).loss
    assert em.token_losses(tiny, ids[:100]).mean() == pytest.approx(hf_loss.item(), rel=1e-5)


# ------------------------------------------------------------------------------------------------ CLI

def test_cli_writes_json_with_consistent_figures(tmp_path, capsys):
    text = "To be, or not to be, that is the question. Café au lait! " * 12
    (tmp_path / "notes.txt").write_text(text, encoding="utf-8")
    out = tmp_path / "result.json"
    torch.manual_seed(0)
    code = em.main(["--model", "tiny-llama", "--data", str(tmp_path / "notes.txt"), "--window", "64",
                    "--stride", "32", "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["bytes"] == len(text.encode("utf-8")) > result["chars"] == len(text)
    assert result["perplexity"] == pytest.approx(math.exp(result["nll_nats"] / result["tokens"]))
    assert result["bits_per_byte"] == pytest.approx(result["nll_nats"] / math.log(2) / result["bytes"])
    assert result["window"] == 64 and result["stride"] == 32 and result["context"] == 256
    assert "bits per byte" in capsys.readouterr().out


def test_cli_missing_column_lists_the_available_ones(tmp_path, capsys):
    rows = [{"body": "some text", "id": 1}, {"body": "more text", "id": 2}]
    (tmp_path / "posts.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    assert em.main(["--model", "tiny-llama", "--data", str(tmp_path / "posts.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "no column 'text'" in err and "body, id" in err and "--column" in err


def test_cli_window_longer_than_the_context_is_refused(capsys):
    assert em.main(["--model", "tiny-llama", "--window", "512", "--max-chars", "500"]) == 2
    assert "context of 256 tokens" in capsys.readouterr().err


def test_cli_missing_file_exits_2_without_a_traceback(tmp_path):
    missing = tmp_path / "nowhere.jsonl"
    out = subprocess.run([sys.executable, str(SCRIPT), "--data", str(missing)], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2
    assert "no such file" in out.stderr and str(missing) in out.stderr and "Traceback" not in out.stderr


def test_cli_classify_scores_each_example_once(tmp_path, capsys):
    rows = [{"text": f"review {i}", "label": "good" if i % 3 else "bad"} for i in range(6)]
    (tmp_path / "reviews.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    out = tmp_path / "cls.json"
    torch.manual_seed(0)
    assert em.main(["--model", "tiny-llama", "--task", "classify", "--data", str(tmp_path / "reviews.jsonl"),
                    "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["labels"] == ["bad", "good"] and result["examples"] == 6
    assert sum(result["predicted_counts"].values()) == 6 and result["true_counts"] == {"bad": 2, "good": 4}
    assert result["majority_class_accuracy"] == pytest.approx(4 / 6)


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_label_scores_with_the_cache_equal_one_full_pass_per_label(name):
    from common import load_model, load_tokenizer
    model, tokenizer = load_model(name).eval(), load_tokenizer(name)
    labels = ["positive", "negative", "interest rates", "money-fx currency"]  # one- and several-token labels
    cached = em.label_scores(model, tokenizer, "a fine film with a dull middle", labels)
    context = em.encode(tokenizer, em.DEFAULT_PROMPT.format(text="a fine film with a dull middle",
                                                            labels=", ".join(labels)))
    for label, score in zip(labels, cached, strict=True):
        ids = tokenizer(" " + label, add_special_tokens=False)["input_ids"]
        full = -float(em.token_losses(model, context + ids)[-len(ids):].sum())
        assert score == pytest.approx(full, abs=1e-4)
