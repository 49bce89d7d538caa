"""pretrained/llama_scratch.py reproduces transformers' LlamaForCausalLM: logits and greedy tokens."""

import sys
from pathlib import Path

import pytest
import torch

from common import SMOLLM2, load_model, load_tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "pretrained"))
from llama_scratch import Llama, generate  # noqa: E402

pytestmark = pytest.mark.script
PROMPTS = ["The capital of France is", "def add(a, b):\n    return", "To be, or not to be"]


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: faster for models this small on a shared CPU; restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def compare(hf, tokenizer) -> Llama:
    """Same logits as transformers on a right-padded batch (real tokens only); returns our model."""
    ours = Llama.from_hf(hf)
    tokenizer.padding_side = "right"
    batch = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    real = batch["attention_mask"].bool()
    with torch.no_grad():
        expected = hf(**batch).logits[real]
        got = ours(batch["input_ids"], batch["attention_mask"])[real]
    torch.testing.assert_close(got, expected)  # fp32 default tolerances (eager attention)
    return ours


def test_matches_smollm2():
    hf = load_model(SMOLLM2, attn_implementation="eager").eval()
    tokenizer = load_tokenizer(SMOLLM2)
    ours = compare(hf, tokenizer)
    ids = tokenizer(PROMPTS[0], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        expected = hf.generate(ids, max_new_tokens=6, do_sample=False, pad_token_id=tokenizer.eos_token_id)
    assert torch.equal(generate(ours, ids, max_new_tokens=6), expected)


@pytest.mark.parametrize("tied", [True, False])
def test_matches_random_tiny_llama(tied):
    torch.manual_seed(0)
    hf = load_model("tiny-llama", attn_implementation="eager", tie_word_embeddings=tied).eval()
    with torch.no_grad():  # random norm weights too, so that a skipped RMSNorm weight would show
        for name, p in hf.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    compare(hf, load_tokenizer("tiny-llama"))


def test_sdpa_attention_agrees_within_float_noise():
    hf = load_model("tiny-llama").eval()  # default attention kernel: a different summation order
    tokenizer = load_tokenizer("tiny-llama")
    ids = tokenizer(PROMPTS[1], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(Llama.from_hf(hf)(ids), hf(ids).logits, atol=1e-4, rtol=1e-4)
