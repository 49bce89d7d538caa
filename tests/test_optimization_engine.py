"""optimization/engine.py: continuous batching over a paged KV cache gives exactly HF's greedy outputs."""

import shutil
import sys

import pytest
import torch

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "optimization"))
from engine import Engine  # noqa: E402

PROMPTS = ["The capital of France is", "def fibonacci(n):", "Once upon a time, in a land far away,",
           "Water boils at", "1, 2, 3, 4,", "The best way to learn a language is"]


@pytest.fixture(scope="module")
def tiny():
    from common import load_model, load_tokenizer
    torch.manual_seed(0)
    model = load_model("tiny-llama").eval()
    tok = load_tokenizer("tiny-llama")
    return model, [tok(p).input_ids for p in PROMPTS]


def hf_greedy(model, prompt, n):
    out = model.generate(torch.tensor([prompt]), max_new_tokens=n, do_sample=False, eos_token_id=None,
                         pad_token_id=0)
    return out[0, len(prompt):].tolist()


HAS_CC = bool(shutil.which("cc") or shutil.which("gcc"))


@pytest.mark.parametrize("kernel", [None, False], ids=["c-kernel", "pytorch-attention"])
@pytest.mark.parametrize("kv_tokens", [4096, 48])  # 48 slots cannot hold 3 requests: preemption happens
def test_greedy_equals_hf_generate_with_admission_and_preemption(tiny, kv_tokens, kernel):
    model, prompts = tiny
    lengths = [5, 17, 9, 12, 3, 20]  # mixed lengths: requests finish at different steps and others join
    engine = Engine(model, max_batch=3, block_size=4, kv_cache_tokens=kv_tokens, eos_token_ids=(),
                    attention_kernel=kernel)
    assert (engine.kernel is not None) == (kernel is None and HAS_CC), engine.kernel_status
    requests = [engine.add(p, max_new_tokens=n) for p, n in zip(prompts, lengths, strict=True)]
    engine.run()
    for request, n in zip(requests, lengths, strict=True):
        assert request.output == hf_greedy(model, request.prompt, n)
        assert request.finish_reason == "length"
    assert len(engine.cache.free) == engine.cache.num_blocks  # every block came back
    assert (engine.preemptions > 0) == (kv_tokens < 100)
    assert engine.steps < sum(lengths)  # requests shared forward passes


def test_stop_tokens_cancel_and_seeded_sampling(tiny):
    model, prompts = tiny
    engine = Engine(model, max_batch=4, block_size=4, eos_token_ids=())
    first = hf_greedy(model, prompts[0], 6)
    stopped = engine.add(prompts[0], max_new_tokens=20, stop=(first[3],))
    cancelled = engine.add(prompts[1], max_new_tokens=50)
    engine.step()
    engine.cancel(cancelled)
    engine.run()
    assert stopped.output == first[:first.index(first[3]) + 1] and stopped.finish_reason == "stop"
    assert cancelled.finish_reason == "cancelled" and len(engine.cache.free) == engine.cache.num_blocks
    a, b, c = (engine.generate([prompts[2]], max_new_tokens=8, temperature=1.0, top_p=0.9, seed=s)[0]
               for s in (1, 1, 2))
    assert a == b and a != c


def test_bad_requests_are_refused(tiny):
    model, prompts = tiny
    engine = Engine(model, kv_cache_tokens=32, block_size=4)
    with pytest.raises(ValueError, match="at least one token"):
        engine.add([])
    with pytest.raises(ValueError, match="does not fit"):
        engine.add(list(range(100)))


def test_real_smollm2_weights_match_hf(smollm2):
    model, tok = smollm2
    prompts = [tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True,
                                       return_dict=True)["input_ids"]
               for q in ("What is the capital of France?", "Name three primary colours.")]
    engine = Engine(model, max_batch=2, eos_token_ids=())
    assert (engine.kernel is not None) == HAS_CC, engine.kernel_status  # SmolLM2's shape: 3 query heads per kv head
    assert engine.generate(prompts, max_new_tokens=16) == [hf_greedy(model, p, 16) for p in prompts]


def test_prepacked_bf16_weights_give_identical_outputs(tiny):
    model, prompts = tiny
    bf16 = load_bf16(model)
    plain = Engine(bf16, max_batch=3, block_size=4, eos_token_ids=(), prepack=False)
    packed = Engine(bf16, max_batch=3, block_size=4, eos_token_ids=())
    if not packed.packed:
        pytest.skip("this PyTorch build has no oneDNN weight prepacking (or it rounds differently)")
    # per layer: q/k/v fused, gate/up fused, o_proj, down_proj; and the LM head
    assert len(packed.packed) == 4 * bf16.config.num_hidden_layers + 1
    assert plain.generate(prompts[:4], max_new_tokens=12) == packed.generate(prompts[:4], max_new_tokens=12)
    assert Engine(model, prepack=None).packed == {}  # fp32 stays on the plain path


def test_the_engine_keeps_freed_memory_on_linux(tiny):
    import platform
    engine = Engine(tiny[0], kv_cache_tokens=32)
    assert engine.memory_held == (sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc")


def load_bf16(model):
    import copy
    return copy.deepcopy(model).to(torch.bfloat16)
