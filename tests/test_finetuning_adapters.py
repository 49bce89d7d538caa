"""fine-tuning/bottleneck_adapters.py: Houlsby bottleneck adapters for LLaMA-style decoders."""

import sys

import pytest
import torch

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "fine-tuning"))
import bottleneck_adapters as ba  # noqa: E402


def tiny_llama():
    from common import load_model
    torch.manual_seed(0)
    return load_model("tiny-llama").eval()


IDS = torch.randint(0, 1000, (2, 12), generator=torch.Generator().manual_seed(0))


@torch.no_grad()
def logits(model):
    return model(input_ids=IDS).logits


def test_zero_init_gives_the_base_model_exactly():
    model = tiny_llama()
    before = logits(model)
    adapters = ba.add_adapters(model, bottleneck=16)
    assert len(adapters) == 2 * model.config.num_hidden_layers
    assert torch.equal(logits(model), before)


def test_only_adapters_train():
    model = tiny_llama()
    adapters = ba.add_adapters(model, bottleneck=16)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    adapter_params = {id(p) for a in adapters for p in a.parameters()}
    assert trainable == adapter_params
    hidden = model.config.hidden_size
    assert sum(p.numel() for a in adapters for p in a.parameters()) == len(adapters) * (2 * hidden * 16 + hidden + 16)


def test_one_step_changes_the_output_and_the_state_dict_round_trips():
    model = tiny_llama()
    base = logits(model)
    adapters = ba.add_adapters(model, bottleneck=16)
    optimizer = torch.optim.AdamW([p for a in adapters for p in a.parameters()], lr=1e-2)
    model.train()
    model(input_ids=IDS, labels=IDS).loss.backward()
    optimizer.step()
    model.eval()
    trained = logits(model)
    assert not torch.allclose(trained, base)

    saved = ba.adapter_state_dict(model)
    assert saved and all(".adapter." in k for k in saved)
    assert sum(v.numel() for v in saved.values()) < sum(p.numel() for p in model.parameters()) / 10
    fresh = tiny_llama()  # same seed: same base weights
    ba.add_adapters(fresh, bottleneck=16)
    assert torch.allclose(logits(fresh), base)
    ba.load_adapter_state_dict(fresh, saved)
    assert torch.equal(logits(fresh), trained)


def test_loading_into_a_model_without_adapters_fails_clearly():
    with pytest.raises(ValueError, match="add_adapters"):
        ba.load_adapter_state_dict(tiny_llama(), {"x.adapter.down.weight": torch.zeros(1)})


def test_unsupported_architecture_fails_clearly():
    from common import load_model
    bert = load_model("tiny-bert", kind="encoder")
    with pytest.raises(ValueError, match="no decoder layers.*BertModel"):
        ba.add_adapters(bert)
    assert all(p.requires_grad for p in bert.parameters())  # untouched
