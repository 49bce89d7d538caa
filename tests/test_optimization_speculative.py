"""optimization/speculative.py: an early-exit draft, an acceptance counter, distillation; assisted greedy == greedy."""

import sys

import pytest
import torch

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "optimization"))
from speculative import count_acceptance, distill, fit_exit_map, fixed_draft_length, truncated_draft  # noqa: E402

PROMPT = torch.tensor([[504, 3575, 282, 4649, 314, 30, 378, 2424, 282, 5248, 314]])
GREEDY = dict(do_sample=False, eos_token_id=None, pad_token_id=0)


@pytest.fixture(scope="module")
def tiny():
    from common import load_model
    torch.manual_seed(0)
    return load_model("tiny-llama").eval()


def greedy(model, n=24, **kwargs):
    with torch.inference_mode():
        return model.generate(PROMPT, max_new_tokens=n, **GREEDY, **kwargs)[0, PROMPT.shape[1]:].tolist()


def test_draft_shares_the_targets_modules_and_runs_its_first_layers(tiny):
    draft = truncated_draft(tiny, 2)
    assert draft.model.embed_tokens is tiny.model.embed_tokens and draft.lm_head is tiny.lm_head
    assert draft.model.norm is tiny.model.norm and list(draft.model.layers) == list(tiny.model.layers[:2])
    assert draft.config.num_hidden_layers == 2 and tiny.config.num_hidden_layers == 4
    with torch.inference_mode():
        hidden = tiny(PROMPT, output_hidden_states=True).hidden_states[2]  # after layer 2 of the target
        expected = tiny.lm_head(tiny.model.norm(hidden))
        torch.testing.assert_close(draft(PROMPT).logits, expected)
    own = truncated_draft(tiny, 2, copy_layers=True)
    assert own.model.layers[0] is not tiny.model.layers[0] and own.model.norm is not tiny.model.norm
    assert own.lm_head is tiny.lm_head
    with pytest.raises(ValueError, match="between 1 and 4"):
        truncated_draft(tiny, 5)


def test_the_model_as_its_own_draft_is_always_accepted(tiny):
    full = truncated_draft(tiny, tiny.config.num_hidden_layers)
    fixed_draft_length(full, 4)
    with count_acceptance(tiny) as stats:
        out = greedy(tiny, 25, assistant_model=full)
    assert out == greedy(tiny, 25)
    assert stats.rate == 1.0 and stats.proposed == [4] * 5 and stats.tokens_per_round == 5.0
    assert "_get_candidate_generator" not in tiny.__dict__  # the counter cleaned up after itself


@pytest.mark.parametrize("kind", ["early-exit", "prompt-lookup"])
def test_assisted_greedy_equals_plain_greedy_and_counts_rounds(tiny, kind):
    kwargs = {"prompt_lookup_num_tokens": 3} if kind == "prompt-lookup" else {"assistant_model": truncated_draft(tiny, 1)}
    with count_acceptance(tiny) as stats:
        out = greedy(tiny, 30, **kwargs)
    assert out == greedy(tiny, 30)
    assert stats.rounds > 0 and len(stats.accepted) == stats.rounds
    assert all(0 <= a <= p for a, p in zip(stats.accepted, stats.proposed, strict=True))
    assert sum(stats.accepted) + stats.rounds == 30  # every round adds its accepted drafts plus one token
    with count_acceptance(tiny) as none:
        greedy(tiny, 5)  # plain generate: no rounds to count
    assert none.rounds == 0


def test_distill_trains_only_the_drafts_copy_and_lowers_the_loss(tiny):
    draft = truncated_draft(tiny, 1, copy_layers=True)
    before = {k: v.clone() for k, v in tiny.state_dict().items()}
    torch.manual_seed(0)
    batches = [torch.randint(0, 2000, (2, 16)) for _ in range(2)]
    losses = distill(draft, tiny, batches, steps=30, lr=3e-3)
    assert len(losses) == 30 and sum(losses[-4:]) < 0.5 * sum(losses[:4])
    assert all(torch.equal(before[k], v) for k, v in tiny.state_dict().items()), "the target changed"
    assert all(p.requires_grad for p in tiny.parameters())  # unfrozen again
    with pytest.raises(ValueError, match="copy_layers"):
        distill(truncated_draft(tiny, 1), tiny, batches, steps=1)


def test_fitted_exit_map_brings_the_draft_closer_and_leaves_the_target_alone(tiny):
    draft = truncated_draft(tiny, 1)
    before = {k: v.clone() for k, v in tiny.state_dict().items()}
    torch.manual_seed(1)
    batches = [torch.randint(0, 2000, (2, 64)) for _ in range(4)]
    agreement = fit_exit_map(draft, tiny, batches)
    assert agreement["after"] > agreement["before"]
    assert all(torch.equal(before[k], v) for k, v in tiny.state_dict().items()), "the target changed"
    assert draft.model.norm[0] is tiny.model.norm  # the map comes after the target's own (shared) norm
    with torch.inference_mode():  # the draft's logits now go through the map
        hidden = tiny(PROMPT, output_hidden_states=True).hidden_states[1]
        torch.testing.assert_close(draft(PROMPT).logits, tiny.lm_head(draft.model.norm[1](tiny.model.norm(hidden))))
    assert greedy(tiny, 20, assistant_model=draft) == greedy(tiny, 20)
    losses = distill(draft, tiny, batches, steps=5, lr=1e-3)  # only the map is the draft's own: it trains
    assert len(losses) == 5 and all(torch.equal(before[k], v) for k, v in tiny.state_dict().items())
