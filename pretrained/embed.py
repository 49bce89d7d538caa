"""Sentence embeddings and their cosine similarities, from any encoder model.

Examples:
  python pretrained/embed.py "A cat sits on the mat." "A kitten rests on a rug." "Stocks fell today."
  python pretrained/embed.py --file sentences.txt            # one sentence per line
  python pretrained/embed.py --model sentence-transformers/all-mpnet-base-v2 "a" "b"   # Hub id, online

The default model is the embedded all-MiniLM-L6-v2. Embeddings are the mean of the token vectors
(padding excluded), normalised to length 1, which is how MiniLM was trained to be used.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from common import MINILM, ModelNotAvailable, load_model, load_tokenizer


def embed(texts: list[str], model, tokenizer, batch_size: int = 32) -> torch.Tensor:
    """Mean-pooled, L2-normalised sentence embeddings: shape (len(texts), hidden_size)."""
    chunks = []
    for i in range(0, len(texts), batch_size):
        batch = tokenizer(texts[i:i + batch_size], padding=True, truncation=True, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**batch.to(model.device)).last_hidden_state  # (batch, tokens, hidden)
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        chunks.append(F.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1))
    return torch.cat(chunks)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("texts", nargs="*", help="two or more sentences")
    parser.add_argument("--file", type=Path, help="a text file, one sentence per line")
    parser.add_argument("--model", default=MINILM, help=f"encoder: short name, folder or Hub id (default {MINILM})")
    args = parser.parse_args(argv)
    texts = list(args.texts)
    if args.file:
        if not args.file.is_file():
            parser.error(f"no such file: {args.file}")
        texts += [line.strip() for line in args.file.read_text().splitlines() if line.strip()]
    if len(texts) < 2:
        parser.error("give at least two sentences (arguments or --file)")
    try:
        tokenizer, model = load_tokenizer(args.model), load_model(args.model, kind="encoder").eval()
    except ModelNotAvailable as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    vectors = embed(texts, model, tokenizer)
    sims = vectors @ vectors.T
    width = max(len(t[:40]) for t in texts)
    print(f"{len(texts)} sentences -> {tuple(vectors.shape)} embeddings from {args.model}; cosine similarity:")
    for i, text in enumerate(texts):
        print(f"  {text[:40]:<{width}}  " + "  ".join(f"{s:5.2f}" for s in sims[i].tolist()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
