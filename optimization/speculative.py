"""Speculative (assisted) decoding helpers: an early-exit draft cut from the target, and an acceptance counter.

Assisted decoding (transformers `generate(assistant_model=...)` or `generate(prompt_lookup_num_tokens=...)`)
lets a cheap *draft* propose a few tokens; the target checks them all in ONE forward pass and keeps the
longest prefix it agrees with, plus one token of its own. With greedy decoding the output is the target's own
greedy output; the speed-up depends on how many drafted tokens are accepted and on what the draft costs.

- `truncated_draft(model, layers)` builds a draft from the target itself: its first `layers` decoder layers, its
  final norm and its output head (an *early-exit* draft). It shares the target's weights (no extra memory), or,
  with `copy_layers=True`, gets its own copy of the layers and norm so it can be trained (`distill`) while the
  embeddings and head stay shared and frozen. Any LLaMA-style transformers model (`model.model.layers`).
- `fixed_draft_length(draft, tokens)` makes the draft propose exactly `tokens` tokens per round (HF's default
  stops drafting when the draft's confidence drops under an adaptive threshold).
- `count_acceptance(target)` is a context manager that counts, for every `generate` call on `target` inside it,
  the tokens proposed and accepted in each round (it wraps the candidate generator HF builds).
- `fit_exit_map(draft, target, batches)` puts a linear map between the draft's last layer and the head, fitted in
  closed form (ridge least squares, seconds on a CPU) so that the draft's hidden state imitates the target's final
  one: a cheap "tuned lens" that raises acceptance without any gradient step.
- `distill(draft, target, batches, steps)` trains the draft's own parameters (the map, and the layers when they
  were copied) to match the target's next-token distribution (KL divergence).

Python API (import it from optimization/, as 04_decoding_speed.ipynb does):
  draft = truncated_draft(model, layers=6)                     # shares every weight with `model`
  fit_exit_map(draft, model, batches_of_token_ids)              # optional: a fitted linear map before the head
  fixed_draft_length(draft, 4)
  with count_acceptance(model) as stats:
      out = model.generate(ids, assistant_model=draft, do_sample=False, max_new_tokens=64)
  stats.rate, stats.tokens_per_round                            # accepted / proposed; tokens per target pass
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


def truncated_draft(model: nn.Module, layers: int, copy_layers: bool = False) -> nn.Module:
    """An early-exit draft: the first `layers` decoder layers of `model`, then its final norm and head.

    Embeddings, rotary embedding and output head are the target's own modules (shared). The decoder layers
    and the final norm are shared too, unless `copy_layers`, which deep-copies them so they can be trained.
    """
    base = model.base_model
    total = len(base.layers)
    if not 1 <= layers <= total:
        raise ValueError(f"layers must be between 1 and {total} (the model's depth), got {layers}")
    config = copy.deepcopy(model.config)
    config.num_hidden_layers = layers
    if getattr(config, "layer_types", None):
        config.layer_types = config.layer_types[:layers]
    with torch.device("meta"):  # build the skeleton without allocating weights, then plug the real modules in
        draft = type(model)(config)
    for name, child in base.named_children():
        if name == "layers":
            kept = list(child)[:layers]
            child = nn.ModuleList(copy.deepcopy(kept) if copy_layers else kept)
        elif name == "norm" and copy_layers:
            child = copy.deepcopy(child)
        setattr(draft.base_model, name, child)
    for name, child in model.named_children():
        if child is not base:
            setattr(draft, name, child)
    meta = [n for n, t in [*draft.named_parameters(), *draft.named_buffers()] if t.is_meta]
    if meta:
        raise ValueError(f"{type(model).__name__} has modules this function does not know how to share: {meta[:3]}")
    draft.generation_config = copy.deepcopy(model.generation_config)
    return draft.eval()


def fixed_draft_length(draft: nn.Module, tokens: int) -> None:
    """Make `draft` propose exactly `tokens` tokens per round (no adaptive length, no confidence cut-off)."""
    draft.generation_config.num_assistant_tokens = tokens
    draft.generation_config.num_assistant_tokens_schedule = "constant"
    draft.generation_config.assistant_confidence_threshold = 0.0


@dataclass
class Acceptance:
    """Drafted and accepted tokens, one entry per verification round of the target."""

    proposed: list[int] = field(default_factory=list)
    accepted: list[int] = field(default_factory=list)

    @property
    def rounds(self) -> int:
        return len(self.proposed)

    @property
    def rate(self) -> float:
        """Accepted / proposed draft tokens (nan when nothing was proposed)."""
        total = sum(self.proposed)
        return sum(self.accepted) / total if total else float("nan")

    @property
    def tokens_per_round(self) -> float:
        """New tokens per target forward pass: the accepted drafts plus the target's own token."""
        return (sum(self.accepted) + self.rounds) / self.rounds if self.rounds else float("nan")


@contextmanager
def count_acceptance(target: nn.Module) -> Iterator[Acceptance]:
    """Count proposed and accepted draft tokens in every assisted `target.generate(...)` inside the block."""
    stats = Acceptance()
    build = target._get_candidate_generator  # transformers builds one candidate generator per generate call

    def counting_build(*args, **kwargs):
        generator = build(*args, **kwargs)
        update = generator.update_candidate_strategy

        def counting_update(input_ids, scores, num_matches):
            # `scores` holds the target's logits for every drafted position plus one (its own next token)
            stats.proposed.append(scores.shape[1] - 1)
            stats.accepted.append(int(num_matches))
            return update(input_ids, scores, num_matches)

        generator.update_candidate_strategy = counting_update
        return generator

    target._get_candidate_generator = counting_build
    try:
        yield stats
    finally:
        del target._get_candidate_generator  # back to the class's method


def fit_exit_map(draft: nn.Module, target: nn.Module, batches: Iterable[torch.Tensor],
                 ridge: float = 1.0, check_tokens: int = 1024) -> dict[str, float]:
    """Insert a linear map after the draft's final norm, fitted so the draft's hidden state predicts the target's.

    The map is solved in closed form (least squares with a ridge penalty, in float64) from the draft's and the
    target's final hidden states on `batches` (token-id tensors of shape (batch, length)). The target does not
    change. Returns how often the draft's top token equals the target's on (at most `check_tokens` of) the
    fitting tokens, before and after: a quick check, not a held-out measurement.
    """
    xs, ys = [], []
    with torch.inference_mode():
        for ids in batches:
            xs.append(draft.base_model(input_ids=ids).last_hidden_state.flatten(0, 1).double())
            ys.append(target.base_model(input_ids=ids).last_hidden_state.flatten(0, 1).double())
    if not xs:
        raise ValueError("batches is empty")
    x, y = torch.cat(xs), torch.cat(ys)
    x1 = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)  # a column of ones fits the bias
    solution = torch.linalg.solve(x1.T @ x1 + ridge * torch.eye(x1.shape[1], dtype=x.dtype), x1.T @ y)
    linear = nn.Linear(x.shape[1], y.shape[1], dtype=draft.dtype, device=draft.device)
    with torch.no_grad():
        linear.weight.copy_(solution[:-1].T)
        linear.bias.copy_(solution[-1])
    draft.base_model.norm = nn.Sequential(draft.base_model.norm, linear)
    head = target.get_output_embeddings()
    with torch.inference_mode():
        x, y = x[:check_tokens].to(draft.dtype), y[:check_tokens].to(draft.dtype)
        wanted = head(y).argmax(-1)
        return {"before": (head(x).argmax(-1) == wanted).float().mean().item(),
                "after": (head(linear(x)).argmax(-1) == wanted).float().mean().item()}


def distill(draft: nn.Module, target: nn.Module, batches: Iterable[torch.Tensor], steps: int,
            lr: float = 1e-4, temperature: float = 1.0) -> list[float]:
    """Train the draft's own parameters so its next-token distribution matches the target's (KL divergence).

    The draft's own parameters are those it does not share with the target: the layers and norm it copied
    (`copy_layers=True`) and the map of `fit_exit_map`. Shared ones (embeddings, head, shared layers) are frozen
    for the duration, so the target never changes. `batches` yields token-id tensors
    of shape (batch, length); they are cycled until `steps` steps are done. Returns the loss of every step.
    """
    shared = {id(p) for p in target.parameters()}
    own = [p for p in draft.parameters() if id(p) not in shared]
    if not own:
        raise ValueError("the draft shares all its weights with the target: build it with copy_layers=True "
                         "or give it a map with fit_exit_map")
    frozen = [p for p in target.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    batches = list(batches)
    if not batches:
        raise ValueError("batches is empty")
    optimizer = torch.optim.AdamW(own, lr=lr, weight_decay=0.0)
    losses: list[float] = []
    draft.train()
    try:
        for step in range(steps):
            ids = batches[step % len(batches)]
            with torch.no_grad():
                teacher = F.log_softmax(target(input_ids=ids).logits.float() / temperature, -1)
            student = F.log_softmax(draft(input_ids=ids).logits.float() / temperature, -1)
            loss = F.kl_div(student.flatten(0, 1), teacher.flatten(0, 1), log_target=True,
                            reduction="batchmean") * temperature**2
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    finally:
        for p in frozen:
            p.requires_grad_(True)
        draft.eval()
    return losses
