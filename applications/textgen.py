"""Compare decoding strategies on story openings: diversity (distinct-n), repetition and log-probability.

Each strategy (greedy, beam search, temperature, top-k, top-p, min-p, repetition penalty, no-repeat n-grams)
writes N continuations of every opening with fixed seeds; the table gives, per strategy, distinct-1/2 within a
sample and across the samples of one opening, the share of repeated 4-grams, the longest repeated word span, the
mean log-probability of the text under the model (float32, unfiltered), and how many samples looped or went off
the rails (very improbable text).

Examples:
  python applications/textgen.py                                         # 3 built-in openings, all strategies
  python applications/textgen.py "The lighthouse keeper found a door in the rock."
  python applications/textgen.py --strategies greedy,top-p-0.9,temp-1.3 --samples 4 --new-tokens 60
  python applications/textgen.py --show 2 --json build/decoding.json     # print 2 stories per strategy
  python applications/textgen.py --model HuggingFaceTB/SmolLM2-360M-Instruct   # a Hub id (online) or folder

Python API (the lesson applications/01_decoding_creative.ipynb uses it):
  STRATEGIES, generation_config(name_or_kwargs), write_stories(model, tokenizer, openings, strategy, ...)
  words(text), distinct_n(sequences, n), repeated_ngram_share(seq, n), longest_repeated_span(seq),
  summarize(stories) -> dict of the measures above
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import GenerationConfig

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import SMOLLM2, ModelNotAvailable, load_model, load_tokenizer, seed_everything  # noqa: E402

# top_k=0 matters: GenerationConfig fills an unset top_k with 50, so "pure" temperature sampling
# would silently be top-k 50 sampling too.
STRATEGIES: dict[str, dict] = {
    "greedy": dict(do_sample=False),
    "beam-4": dict(do_sample=False, num_beams=4),
    "temp-0.7": dict(do_sample=True, temperature=0.7, top_k=0),
    "temp-1.0": dict(do_sample=True, temperature=1.0, top_k=0),
    "temp-1.3": dict(do_sample=True, temperature=1.3, top_k=0),
    "top-k-50": dict(do_sample=True, top_k=50),
    "top-p-0.9": dict(do_sample=True, top_p=0.9, top_k=0),
    "min-p-0.1": dict(do_sample=True, min_p=0.1, top_k=0),
    "greedy+rep-1.3": dict(do_sample=False, repetition_penalty=1.3),
    "greedy+no-repeat-3": dict(do_sample=False, no_repeat_ngram_size=3),
}
DETERMINISTIC = "deterministic strategies give the same story every time: one run, repeated N times"
OPENINGS = [
    "The lighthouse keeper found a door in the rock that had not been there yesterday.",
    "Every night at midnight, the old piano in the empty school played the same song.",
    "The robot had been built to sort letters, but today it wrote one of its own.",
    "When the river ran backwards for the first time, only my grandmother was not surprised.",
    "The map we bought at the flea market showed a street that our town did not have.",
    "On the last day of summer, a letter arrived addressed to the girl I used to be.",
    "The dragon at the edge of the village had not eaten anyone in a hundred years, and it was bored.",
    "Nobody on the space station remembered who had planted the apple tree in the cargo bay.",
]
SYSTEM = "You are a creative writer. Continue the story the user starts, in vivid prose."
DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32}
LOOP_SHARE = 0.2  # a sample whose repeated-4-gram share is above this is counted as a loop
OFF_RAILS_LOGPROB = -4.0  # a sample whose mean log-prob/token is below this is counted as off the rails


@dataclass
class Story:
    """One generated continuation of opening number `opening`."""

    opening: int
    text: str
    new_tokens: int
    mean_logprob: float  # per token, under the unfiltered model (temperature 1), float32


def generation_config(strategy: str | dict, new_tokens: int = 80, pad_token_id: int | None = None) -> GenerationConfig:
    """A GenerationConfig for a named strategy (see STRATEGIES) or a dict of GenerationConfig fields."""
    fields = STRATEGIES[strategy] if isinstance(strategy, str) else strategy
    return GenerationConfig(max_new_tokens=new_tokens, pad_token_id=pad_token_id, **fields)


def chat_prompts(tokenizer, openings: list[str]) -> list[str]:
    """Chat-formatted prompts that ask the model to continue each opening."""
    return [tokenizer.apply_chat_template([{"role": "system", "content": SYSTEM}, {"role": "user", "content": o}],
                                          tokenize=False, add_generation_prompt=True) for o in openings]


@torch.no_grad()
def mean_logprobs(model, prompt_ids: list[int], completions: list[list[int]]) -> list[float]:
    """Mean log-probability per token of each completion after the prompt, under the model as it is (T=1)."""
    width = max(len(c) for c in completions)
    ids = torch.tensor([prompt_ids + c + [0] * (width - len(c)) for c in completions])
    mask = torch.tensor([[1] * (len(prompt_ids) + len(c)) + [0] * (width - len(c)) for c in completions])
    logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits.float()
    logp = torch.log_softmax(logits[:, len(prompt_ids) - 1:-1], dim=-1)  # position t predicts token t+1
    picked = logp.gather(-1, ids[:, len(prompt_ids):, None].to(logp.device))[..., 0].cpu()
    return [picked[i, :len(c)].mean().item() for i, c in enumerate(completions)]


@torch.no_grad()
def write_stories(model, tokenizer, openings: list[str], strategy: str | dict, samples: int = 4,
                  new_tokens: int = 80, seed: int = 0, scorer=None) -> list[Story]:
    """`samples` continuations of every opening with one strategy, in one batched `generate` call.

    `scorer` (default: `model`) computes the log-probabilities, e.g. a float32 copy of a bf16 `model`.
    """
    config = generation_config(strategy, new_tokens, tokenizer.pad_token_id or tokenizer.eos_token_id)
    runs = samples if config.do_sample else 1  # see DETERMINISTIC
    tokenizer.padding_side = "left"  # new tokens must follow each prompt directly
    batch = tokenizer(chat_prompts(tokenizer, openings), return_tensors="pt", padding=True).to(model.device)
    seed_everything(seed)
    config.num_return_sequences = runs
    out = model.generate(**batch, generation_config=config)
    new = out[:, batch["input_ids"].shape[1]:].tolist()
    stories = []
    for i in range(len(openings)):
        prompt = batch["input_ids"][i][batch["attention_mask"][i].bool()].tolist()  # without the left padding
        group = [_until_eos(new[i * runs + j], config.eos_token_id or tokenizer.eos_token_id) for j in range(runs)]
        for ids, lp in zip(group, mean_logprobs(scorer or model, prompt, group), strict=True):
            text = tokenizer.decode(ids, skip_special_tokens=True).strip()
            stories += [Story(i, text, len(ids), lp)] * (samples // runs)
    return stories


def _until_eos(ids: list[int], eos: int | list[int]) -> list[int]:
    """Cut a generated row after its first end-of-sequence token (the rest is padding)."""
    eos = {eos} if isinstance(eos, int) else set(eos)
    for k, t in enumerate(ids):
        if t in eos:
            return ids[:k + 1]
    return ids or [next(iter(eos))]


def words(text: str) -> list[str]:
    """Lower-cased words (apostrophes kept inside words); punctuation is dropped."""
    return re.findall(r"\w+(?:'\w+)*", text.lower())


def ngrams(seq: list[str], n: int) -> list[tuple]:
    return [tuple(seq[i:i + n]) for i in range(len(seq) - n + 1)]


def distinct_n(sequences: list[list[str]], n: int) -> float:
    """Distinct n-grams / all n-grams, pooled over the sequences (1.0 = no n-gram used twice)."""
    grams = [g for seq in sequences for g in ngrams(seq, n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def repeated_ngram_share(seq: list[str], n: int = 4) -> float:
    """Share of the n-grams of one sequence that already occurred earlier in it (0 = no repetition)."""
    grams, seen, repeated = ngrams(seq, n), set(), 0
    for g in grams:
        repeated += g in seen
        seen.add(g)
    return repeated / len(grams) if grams else 0.0


def longest_repeated_span(seq: list[str]) -> int:
    """Length of the longest run of words that occurs at least twice in the sequence (occurrences may overlap)."""
    best = 0
    for n in range(1, len(seq)):
        grams = ngrams(seq, n)
        if len(set(grams)) == len(grams):
            break  # no n-gram repeats, so no longer one can
        best = n
    return best


def summarize(stories: list[Story]) -> dict:
    """The measures of one strategy over all its stories (means over samples, across-sample per opening)."""
    toks = [words(s.text) for s in stories]
    by_opening: dict[int, list[list[str]]] = {}
    for s, w in zip(stories, toks, strict=True):
        by_opening.setdefault(s.opening, []).append(w)
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    return {
        "distinct-1": mean([distinct_n([w], 1) for w in toks]),
        "distinct-2": mean([distinct_n([w], 2) for w in toks]),
        "distinct-2 across": mean([distinct_n(group, 2) for group in by_opening.values()]),
        "repeated 4-grams": mean([repeated_ngram_share(w, 4) for w in toks]),
        "longest repeat": mean([longest_repeated_span(w) for w in toks]),
        "log-prob/token": mean([s.mean_logprob for s in stories]),
        "loops": sum(repeated_ngram_share(w, 4) > LOOP_SHARE for w in toks),
        "off the rails": sum(s.mean_logprob < OFF_RAILS_LOGPROB for s in stories),
        "words": mean([len(w) for w in toks]),
    }


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("openings", nargs="*", help="story openings (default: the first 3 of OPENINGS)")
    parser.add_argument("--model", default=SMOLLM2, help=f"short name, local folder or Hub id (default {SMOLLM2})")
    parser.add_argument("--strategies", default=",".join(STRATEGIES), help="comma-separated names from: "
                        + ", ".join(STRATEGIES))
    parser.add_argument("--samples", type=int, default=4, help="stories per opening and strategy (default 4)")
    parser.add_argument("--new-tokens", type=int, default=80, help="tokens per story at most (default 80)")
    parser.add_argument("--dtype", choices=DTYPES, default="bfloat16",
                        help="weights for generation (default bfloat16); log-probs are always scored in float32")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--show", type=int, default=0, help="print this many stories per strategy")
    parser.add_argument("--json", type=Path, help="also write the table and the stories to this JSON file")
    args = parser.parse_args(argv)
    args.strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    unknown = [s for s in args.strategies if s not in STRATEGIES]
    if unknown or not args.strategies:
        parser.error(f"unknown strategy {', '.join(unknown) or '(none given)'}; choose from {', '.join(STRATEGIES)}")
    if args.samples < 1 or args.new_tokens < 1:
        parser.error("--samples and --new-tokens must be at least 1")
    if any(not o.strip() for o in args.openings):
        parser.error("an opening is empty")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        tokenizer = load_tokenizer(args.model)
        scorer = load_model(args.model, dtype=torch.float32).eval()
        model = scorer if args.dtype == "float32" else load_model(args.model, dtype=DTYPES[args.dtype]).eval()
    except (ModelNotAvailable, OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not tokenizer.chat_template:
        print(f"error: {args.model} has no chat template; use an instruction-tuned (chat) model", file=sys.stderr)
        return 2
    openings = args.openings or OPENINGS[:3]
    table, stories = {}, {}
    for name in args.strategies:
        stories[name] = write_stories(model, tokenizer, openings, name, args.samples, args.new_tokens,
                                      args.seed, scorer)
        table[name] = summarize(stories[name])
        print(f"{name:>19}  " + "  ".join(f"{k} {v:.3g}" for k, v in table[name].items()), flush=True)
        for s in stories[name][:args.show]:
            print(f"    [{s.opening}] {s.text}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"table": table, "stories": {k: [asdict(s) for s in v]
                                                                     for k, v in stories.items()}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
