"""Pretraining objectives: causal LM, masked LM, ELECTRA replaced-token detection, T5 span corruption.

Every objective has the same signature, so a training loop can call any of them:

    loss = objective(model, batch, tokenizer, seeds)

`batch` is a LongTensor [B, T] of token ids (one example per row, as made by
`pretrain.make_examples`), `seeds` one integer per row. All randomness of an objective (which
tokens are masked, which spans are dropped, what the ELECTRA generator samples) comes from
`torch.Generator`s seeded with those integers, never from the global RNG. So the same seeds give the
same corrupted batch: BERT's static masking passes a seed per *example* (the same mask every time
that example comes back), RoBERTa's dynamic masking a seed per *step and row* (a new mask each
time), and a resumed run sees exactly the batches an uninterrupted one would have seen.

The losses are computed here from the logits with `F.cross_entropy` (not the model's own `loss`), so
you can see what each objective predicts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import pairwise

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

IGNORE = -100  # label value that cross_entropy skips


def mix_seed(*parts: int | None) -> int:
    """One well-mixed 31-bit seed from several integers (None counts as its own value)."""
    words = [2**32 - 1 if p is None else int(p) % 2**32 for p in parts]
    return int(np.random.SeedSequence(words).generate_state(1)[0]) & 0x7FFFFFFF


def row_generator(seed: int, salt: int = 0) -> torch.Generator:
    """A CPU torch.Generator for one row; `salt` gives independent streams from the same seed."""
    return torch.Generator().manual_seed(mix_seed(seed, salt))


def special_mask(batch: torch.Tensor, tokenizer) -> torch.Tensor:
    """True where a token is special ([CLS], [SEP], <pad>, ...): never masked, never predicted."""
    special = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=batch.dtype)
    return torch.isin(batch, special)


# ---------------------------------------------------------------------------------------------
# Causal language modelling (GPT-2, LLaMA): predict token t+1 from tokens 0..t.

def causal_lm_loss(model: nn.Module, batch: torch.Tensor, tokenizer=None,
                   seeds: Sequence[int] | None = None) -> torch.Tensor:
    """Next-token cross-entropy. The model sees the whole row; position t's logits score token t+1."""
    batch = batch.to(model.device)
    logits = model(input_ids=batch).logits
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), batch[:, 1:].flatten())


# ---------------------------------------------------------------------------------------------
# Masked language modelling (BERT, RoBERTa): hide 15 % of tokens, predict them from both sides.

def mask_tokens(batch: torch.Tensor, tokenizer, seeds: Sequence[int], prob: float = 0.15,
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's corruption: choose `prob` of the non-special tokens; of those 80 % become [MASK],
    10 % a random token, 10 % stay. Returns (inputs, labels); labels are -100 except at chosen places."""
    inputs, labels = batch.clone(), torch.full_like(batch, IGNORE)
    special = special_mask(batch, tokenizer)
    vocab = len(tokenizer)
    for row, seed in enumerate(seeds):
        g = row_generator(seed)
        chosen = (torch.rand(batch.shape[1], generator=g) < prob) & ~special[row]
        if not chosen.any():  # a short row: still predict one token
            chosen[(~special[row]).nonzero()[0]] = True
        action = torch.rand(batch.shape[1], generator=g)
        random_ids = torch.randint(vocab, (batch.shape[1],), generator=g)
        labels[row, chosen] = batch[row, chosen]
        inputs[row, chosen & (action < 0.8)] = tokenizer.mask_token_id
        swap = chosen & (action >= 0.8) & (action < 0.9)
        inputs[row, swap] = random_ids[swap]
    return inputs, labels


def mlm_loss(model: nn.Module, batch: torch.Tensor, tokenizer, seeds: Sequence[int]) -> torch.Tensor:
    """Masked-LM cross-entropy on the chosen tokens only (static or dynamic masking: see the seeds)."""
    inputs, labels = mask_tokens(batch, tokenizer, seeds)
    logits = model(input_ids=inputs.to(model.device)).logits
    return F.cross_entropy(logits.flatten(0, 1).float(), labels.to(model.device).flatten(), ignore_index=IGNORE)


# ---------------------------------------------------------------------------------------------
# ELECTRA: a small MLM generator fills the masks; the discriminator spots which tokens were replaced.

class ElectraPair(nn.Module):
    """ELECTRA's generator (a small ElectraForMaskedLM) and discriminator (ElectraForPreTraining).

    The two share their embeddings (token, position, type), as in the paper. `save_pretrained`
    saves the discriminator, the model you keep and fine-tune; the generator goes to `generator/`.
    """

    def __init__(self, generator: nn.Module, discriminator: nn.Module):
        super().__init__()
        self.generator, self.discriminator = generator, discriminator
        generator.electra.embeddings = discriminator.electra.embeddings
        generator.generator_lm_head.weight = discriminator.electra.embeddings.word_embeddings.weight

    @property
    def config(self):
        return self.discriminator.config

    @property
    def device(self) -> torch.device:
        return self.discriminator.device

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())  # shared tensors counted once

    def save_pretrained(self, path, **kwargs) -> None:
        self.discriminator.save_pretrained(path, **kwargs)
        self.generator.save_pretrained(f"{path}/generator", **kwargs)


def electra_loss(pair: ElectraPair, batch: torch.Tensor, tokenizer, seeds: Sequence[int],
                 disc_weight: float = 50.0) -> torch.Tensor:
    """Generator MLM loss + `disc_weight` x discriminator loss (binary: was this token replaced?).

    The generator's samples replace the masked tokens (sampling is not differentiated through);
    a sample equal to the original token counts as *not* replaced, as in the paper."""
    device = pair.device
    inputs, labels = mask_tokens(batch, tokenizer, seeds)
    gen_logits = pair.generator(input_ids=inputs.to(device)).logits
    gen_loss = F.cross_entropy(gen_logits.flatten(0, 1).float(), labels.to(device).flatten(),
                               ignore_index=IGNORE)
    corrupted = batch.clone()
    with torch.no_grad():
        for row, seed in enumerate(seeds):  # softmax only where a token was masked
            where = labels[row] != IGNORE
            probs = gen_logits[row, where.to(device)].float().softmax(-1).cpu()
            corrupted[row, where] = torch.multinomial(probs, 1, generator=row_generator(seed, 1))[:, 0]
    replaced = (corrupted != batch).float().to(device)
    disc_logits = pair.discriminator(input_ids=corrupted.to(device)).logits
    disc_loss = F.binary_cross_entropy_with_logits(disc_logits.float(), replaced)
    return gen_loss + disc_weight * disc_loss


# ---------------------------------------------------------------------------------------------
# T5 span corruption: drop ~15 % of tokens in spans (mean length 3), each span replaced by one
# sentinel <extra_id_i> in the input; the target lists each sentinel followed by the dropped span.

def _random_segments(total: int, parts: int, g: torch.Generator) -> list[int]:
    """Split `total` items into `parts` non-empty segments of random length."""
    cuts = (torch.randperm(total - 1, generator=g)[: parts - 1] + 1).sort().values.tolist()
    bounds = [0, *cuts, total]
    return [b - a for a, b in pairwise(bounds)]


def sentinel_ids(tokenizer, count: int) -> list[int]:
    """Ids of <extra_id_0> ... <extra_id_{count-1}> (pretrain.prepare_tokenizer adds them if missing)."""
    ids = tokenizer.convert_tokens_to_ids([f"<extra_id_{i}>" for i in range(count)])
    if tokenizer.unk_token_id is not None and tokenizer.unk_token_id in ids:
        raise ValueError("the tokenizer has no <extra_id_N> sentinels; call pretrain.prepare_tokenizer('t5', tok)")
    return ids


def span_corrupt(batch: torch.Tensor, tokenizer, seeds: Sequence[int], noise: float = 0.15,
                 mean_span: float = 3.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """T5's corruption of each row. Returns padded (input_ids, attention_mask, labels)."""
    sources, targets = [], []
    for row, seed in zip(batch.tolist(), seeds, strict=True):
        g = row_generator(seed)
        n_noise = min(max(1, round(len(row) * noise)), len(row) - 1)
        n_spans = max(1, min(round(n_noise / mean_span), len(row) - n_noise))
        noise_lens = _random_segments(n_noise, n_spans, g)
        keep_lens = _random_segments(len(row) - n_noise, n_spans, g)
        sentinels = sentinel_ids(tokenizer, n_spans)
        src, tgt, pos = [], [], 0
        for keep, drop, sentinel in zip(keep_lens, noise_lens, sentinels, strict=True):
            src += row[pos: pos + keep] + [sentinel]
            tgt += [sentinel] + row[pos + keep: pos + keep + drop]
            pos += keep + drop
        sources.append(src + [tokenizer.eos_token_id])
        targets.append(tgt + [tokenizer.eos_token_id])
    return _pad(sources, tokenizer.pad_token_id), _pad([[1] * len(s) for s in sources], 0), _pad(targets, IGNORE)


def _pad(rows: list[list[int]], value: int) -> torch.Tensor:
    out = torch.full((len(rows), max(map(len, rows))), value, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row)
    return out


def span_corruption_loss(model: nn.Module, batch: torch.Tensor, tokenizer, seeds: Sequence[int]) -> torch.Tensor:
    """Cross-entropy of the decoder on the target (sentinels + dropped spans + </s>)."""
    inputs, attention, labels = (t.to(model.device) for t in span_corrupt(batch, tokenizer, seeds))
    logits = model(input_ids=inputs, attention_mask=attention, labels=labels).logits
    return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE)


Objective = Callable[[nn.Module, torch.Tensor, object, Sequence[int]], torch.Tensor]

# Which objective each architecture is pretrained with.
OBJECTIVES: dict[str, Objective] = {
    "gpt2": causal_lm_loss, "llama": causal_lm_loss,
    "bert": mlm_loss, "roberta": mlm_loss,
    "electra": electra_loss, "t5": span_corruption_loss,
}
