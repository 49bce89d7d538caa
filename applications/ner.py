"""Named entity recognition: fine-tune an encoder to tag entities in BIO, then extract entities from raw text.

`train` fine-tunes any encoder (all-MiniLM-L6-v2 by default) for token classification on a named set (wnut_ner:
tweets, 10 entity types) or on your own JSONL or CoNLL file, scores it with seqeval entity F1 on a held-out split
next to two baselines (tag everything O; look up the training set's entity strings), and saves the model to a folder. `predict` loads that folder and prints one JSON line
per input text with its entities: type, text, start/end character offsets and a score. The data loading, the
sub-word label alignment and the Trainer come from fine-tuning/finetune_classifier.py.

Examples:
  python applications/ner.py train --out build/ner-wnut                       # MiniLM on WNUT tweets, a few minutes
  python applications/ner.py train --data my_tags.jsonl --out build/ner-mine  # {"tokens": [...], "tags": [...]}
  python applications/ner.py train --data corpus.conll --epochs 5 --out build/ner-conll   # "word TAG" lines
  python applications/ner.py train --model bert-base-cased --out build/ner-bert   # any encoder (Hub id on a GPU)
  python applications/ner.py predict build/ner-wnut tweets.txt                 # one text a line -> JSONL
  echo "Obama flew to Paris with Google staff" | python applications/ner.py predict build/ner-wnut

Files: JSONL has one object a line with "tokens" and "tags" lists of the same length; CoNLL has one "word TAG"
line per word (the tag in the last column), a blank line between sentences. Tags must be BIO: O, B-TYPE, I-TYPE.
A file is split 70/10/20 into train/validation/test (seeded).

Python API (applications/10_ner.ipynb uses it):
  load_ner_data(data) -> (DatasetDict tokens/tags, tag names)   entity_spans(tags) / tags_from_spans(spans, n)
  train(data, model, ...) -> (model, tokenizer, metrics)       predict_tags(model, tokenizer, token lists)
  entity_scores(gold, pred) -> per-type and overall P/R/F1      LookupTagger(tokens, tags).tag(tokens)
  extract(model, tokenizer, texts) -> entities with offsets     split_words(text) -> [(word, start, end)]
  prompting: pick_shots(tokens, tags, n), ner_messages(tokens, types, shots), parse_entities(answer, types),
             match_entities(tokens, entities), generate(model, tokenizer, chats), prompt_tags(...)
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import transformers
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT / "fine-tuning"))  # a folder with a hyphen is no package: import the script itself
from finetune_classifier import (  # noqa: E402
    InputError,
    build_model,
    build_trainer,
    evaluate_test,
    load_classification_data,
    mean_train_loss,
    split_rows,
    tokenize_splits,
)

import common  # noqa: E402
from common import DATASETS, MINILM, ModelNotAvailable, load_model, load_tokenizer  # noqa: E402

BIO_TAG = re.compile(r"O|[BI]-\S+")
JSONL_TYPES = (".jsonl",)
CONLL_TYPES = (".conll", ".txt", ".bio", ".iob", ".tsv")
# A tweet-friendly word splitter for raw text: URLs, @users and #tags stay whole, punctuation is split off.
WORD = re.compile(r"https?://\S+|[@#]\w+|\w+(?:['’.&-]\w+)*|[^\w\s]")


class NerError(InputError):
    """Bad input (file, tags, folder): reported as one line, exit code 2."""


# --- data -----------------------------------------------------------------------------------------------------

def _check_row(tokens, tags, where: str) -> None:
    if not isinstance(tokens, list) or not isinstance(tags, list):
        raise NerError(f"{where}: 'tokens' and 'tags' must be lists")
    if len(tokens) != len(tags):
        raise NerError(f"{where}: {len(tokens)} tokens but {len(tags)} tags (one tag per token)")
    for tag in tags:
        if not isinstance(tag, str) or not BIO_TAG.fullmatch(tag):
            raise NerError(f"{where}: tag {tag!r} is not BIO (use O, B-TYPE or I-TYPE)")


def read_jsonl(path: Path) -> list[dict]:
    """Rows {"tokens": [...], "tags": [...]} of a JSONL file, checked line by line."""
    rows = []
    for number, row in common.read_jsonl(path, NerError):
        if "tokens" not in row or "tags" not in row:
            raise NerError(f"{path.name} line {number}: expected an object with 'tokens' and 'tags'")
        _check_row(row["tokens"], row["tags"], f"{path.name} line {number}")
        rows.append({"tokens": [str(t) for t in row["tokens"]], "tags": row["tags"]})
    return rows


def read_conll(path: Path) -> list[dict]:
    """Sentences of a CoNLL file: one "word ... TAG" line per word, blank lines between sentences."""
    rows, tokens, tags = [], [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines() + [""], 1):
        parts = line.split()
        if not parts or parts[0] == "-DOCSTART-":
            if tokens:
                rows.append({"tokens": tokens, "tags": tags})
            tokens, tags = [], []
            continue
        if len(parts) < 2:
            raise NerError(f"{path.name} line {number}: expected 'word TAG', got {line.strip()!r}")
        _check_row([parts[0]], [parts[-1]], f"{path.name} line {number}")
        tokens.append(parts[0])
        tags.append(parts[-1])
    return rows


def tag_names(tags: list[str]) -> list[str]:
    """O first, then B-/I- of every type in the data (a type seen only as I- still gets its B-)."""
    types = sorted({t[2:] for t in tags if t != "O"})
    return ["O"] + [f"{p}-{t}" for t in types for p in "BI"]


def load_ner_data(data: str = "wnut_ner", seed: int = 0) -> tuple:
    """A named set or a JSONL/CoNLL file as train/validation/test with columns tokens and tags (label ids)."""
    import datasets

    path = Path(data).expanduser()
    if not path.is_file():
        if data in DATASETS:
            return load_classification_data(data, "token", seed=seed)
        if path.suffix:
            raise NerError(f"data file '{data}' not found")
        raise NerError(f"'{data}' is neither a file nor a named data set (e.g. wnut_ner)")
    suffix = path.suffix.lower()
    if suffix not in JSONL_TYPES + CONLL_TYPES:
        raise NerError(f"unsupported file type '{suffix or path.name}' (use .jsonl or a CoNLL file: "
                       f"{', '.join(CONLL_TYPES)})")
    try:
        rows = read_jsonl(path) if suffix in JSONL_TYPES else read_conll(path)
    except UnicodeDecodeError:
        raise NerError(f"{path.name} is not UTF-8 text") from None
    names = tag_names([t for r in rows for t in r["tags"]])
    if len(rows) < 10 or len(names) < 3:
        raise NerError(f"{path.name} has {len(rows)} sentences and {len(names) // 2} entity types; at least 10 "
                       "sentences with one entity type are needed")
    features = datasets.Features(tokens=datasets.Sequence(datasets.Value("string")),
                                 tags=datasets.Sequence(datasets.ClassLabel(names=names)))
    ds = datasets.Dataset.from_dict({"tokens": [r["tokens"] for r in rows],
                                     "tags": [[names.index(t) for t in r["tags"]] for r in rows]}, features)
    return split_rows(ds, None, seed), names


# --- entities and scores ----------------------------------------------------------------------------------------

def entity_spans(tags: list[str]) -> list[tuple[str, int, int]]:
    """(type, first word, end word exclusive) of each entity, decoded like conlleval/seqeval: B- starts one,
    I- continues one of its type, and an I- after O or another type starts a new one."""
    spans, current = [], None
    for i, tag in enumerate(list(tags) + ["O"]):
        kind = tag[2:] if tag != "O" else None
        if current and (tag == "O" or tag.startswith("B-") or kind != current[0]):
            spans.append((current[0], current[1], i))
            current = None
        if kind and current is None:
            current = (kind, i)
    return spans


def tags_from_spans(spans: list[tuple[str, int, int]], n: int) -> list[str]:
    """BIO tags of n words holding the given (type, start, end) entities."""
    tags = ["O"] * n
    for kind, start, end in spans:
        tags[start:end] = [f"B-{kind}"] + [f"I-{kind}"] * (end - start - 1)
    return tags


def entity_scores(gold: list[list[str]], pred: list[list[str]]) -> dict[str, dict]:
    """seqeval precision/recall/F1 per entity type and overall (micro), with the gold count as support."""
    from seqeval.metrics import classification_report

    report = classification_report(gold, pred, output_dict=True, zero_division=0)
    return {k.replace("micro avg", "overall"): {m: float(report[k][m]) for m in ("precision", "recall", "f1-score",
                                                                                  "support")}
            for k in report if k not in ("macro avg", "weighted avg")}


class LookupTagger:
    """Baseline: remember every entity string of the training set with its most frequent type, then tag the
    longest matches (lower-cased) in new text. It knows nothing that it has not seen."""

    def __init__(self, token_lists: list[list[str]], tag_lists: list[list[str]]):
        votes: dict[tuple[str, ...], Counter] = {}
        for tokens, tags in zip(token_lists, tag_lists, strict=True):
            for kind, start, end in entity_spans(tags):
                votes.setdefault(tuple(t.lower() for t in tokens[start:end]), Counter())[kind] += 1
        self.table = {words: c.most_common(1)[0][0] for words, c in votes.items()}
        self.longest = max(map(len, self.table), default=1)

    def tag(self, tokens: list[str]) -> list[str]:
        lower, spans, i = [t.lower() for t in tokens], [], 0
        while i < len(tokens):
            for n in range(min(self.longest, len(tokens) - i), 0, -1):
                if tuple(lower[i:i + n]) in self.table:
                    spans.append((self.table[tuple(lower[i:i + n])], i, i + n))
                    i += n
                    break
            else:
                i += 1
        return tags_from_spans(spans, len(tokens))


# --- fine-tuning --------------------------------------------------------------------------------------------------

def train(data: str = "wnut_ner", model: str = MINILM, out: str | None = None, max_steps: int = -1,
          epochs: float = 2.0, batch_size: int = 16, lr: float = 3e-4, max_length: int = 64, seed: int = 0,
          progress: bool = True) -> tuple:
    """Fine-tune `model` for token classification; test-split metrics; save to `out` when given.

    Returns (model, tokenizer, metrics); metrics holds seqeval entity F1 of the model, of the majority tag (O)
    and of a LookupTagger built from the training split."""
    splits, names = load_ner_data(data, seed)
    tokenizer = load_tokenizer(model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenized = tokenize_splits(splits, tokenizer, "token", max_length)
    network = build_model(model, "token", names, tokenizer=tokenizer, seed=seed)
    with tempfile.TemporaryDirectory() as scratch:  # the Trainer wants a folder even when it saves nothing
        trainer = build_trainer(network, tokenizer, tokenized, "token", names, out or scratch, max_steps, epochs,
                                batch_size, lr, seed=seed, progress=progress)
        if not progress:  # no bar, and no loss dicts printed every 10 steps either (notebooks, logs)
            trainer.remove_callback(transformers.trainer_callback.PrinterCallback)
        trainer.train()
        metrics = {"model": model, "data": data, "steps": trainer.state.global_step,
                   "train_loss": mean_train_loss(trainer.state.log_history),
                   **evaluate_test(trainer, tokenized, "token", names), "labels": names}
    metrics["lookup_entity_f1"] = lookup_f1(splits, names)
    network = trainer.model.eval()
    if out:
        network.save_pretrained(out)
        tokenizer.save_pretrained(out)
        Path(out, "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    return network, tokenizer, metrics


def lookup_f1(splits, names: list[str]) -> float:
    """Test entity F1 of the LookupTagger baseline built from the training split."""
    def as_tags(rows):
        return [[names[i] for i in ids] for ids in rows["tags"]]
    lookup = LookupTagger(splits["train"]["tokens"], as_tags(splits["train"]))
    predicted = [lookup.tag(tokens) for tokens in splits["test"]["tokens"]]
    return entity_scores(as_tags(splits["test"]), predicted)["overall"]["f1-score"]


@torch.inference_mode()
def predict_tags(model, tokenizer, token_lists: list[list[str]], batch_size: int = 32, max_length: int = 128,
                 progress: bool = False) -> tuple[list[list[str]], list[list[float]]]:
    """Word-level BIO tags and their probabilities, read at each word's first sub-token (as trained).
    Words cut off by max_length get O with probability 1."""
    names = model.config.id2label
    all_tags, all_probs = [], []
    for b in tqdm(range(0, len(token_lists), batch_size), desc="tagging", unit="batch", disable=not progress):
        batch = token_lists[b:b + batch_size]
        enc = tokenizer(batch, is_split_into_words=True, truncation=True, max_length=max_length, padding=True,
                        return_tensors="pt")
        probs = model(**enc.to(model.device)).logits.softmax(-1).cpu()
        for row, words in enumerate(batch):
            tags, scores, seen = ["O"] * len(words), [1.0] * len(words), set()
            for position, word in enumerate(enc.word_ids(row)):
                if word is not None and word not in seen:
                    seen.add(word)
                    p, label = probs[row, position].max(-1)
                    tags[word], scores[word] = names[int(label)], float(p)
            all_tags.append(tags)
            all_probs.append(scores)
    return all_tags, all_probs


def split_words(text: str) -> list[tuple[str, int, int]]:
    """Words of raw text with their character offsets (URLs, @users, #tags kept whole)."""
    return [(m.group(), m.start(), m.end()) for m in WORD.finditer(text)]


def extract(model, tokenizer, texts: list[str], batch_size: int = 32, progress: bool = False) -> list[list[dict]]:
    """Entities of each raw text: type, text, start/end character offsets, score (mean probability of its tags)."""
    words = [split_words(t) for t in texts]
    tags, probs = predict_tags(model, tokenizer, [[w for w, _, _ in ws] for ws in words], batch_size,
                               progress=progress)
    results = []
    for text, ws, t, p in zip(texts, words, tags, probs, strict=True):
        results.append([{"type": kind, "text": text[ws[s][1]:ws[e - 1][2]], "start": ws[s][1], "end": ws[e - 1][2],
                         "score": round(float(np.mean(p[s:e])), 4)} for kind, s, e in entity_spans(t)])
    return results


# --- prompting a chat model -----------------------------------------------------------------------------------

ALIASES = {"location": "geo-loc", "place": "geo-loc", "city": "geo-loc", "country": "geo-loc", "loc": "geo-loc",
           "organization": "company", "organisation": "company", "org": "company", "brand": "company",
           "people": "person", "name": "person", "per": "person", "artist": "musicartist", "band": "musicartist",
           "musician": "musicartist", "singer": "musicartist", "team": "sportsteam", "show": "tvshow",
           "tv show": "tvshow", "film": "movie", "building": "facility", "venue": "facility"}


def pick_shots(token_lists: list[list[str]], tag_lists: list[list[str]], n: int = 3,
               max_words: int = 20) -> list[tuple[list[str], list[str]]]:
    """n short solved examples for a prompt: one without entities (so 'none' is a seen answer), then tweets that
    each bring entity types not shown yet (a small model copies the examples' pattern, so vary it)."""
    short = [(t, g) for t, g in zip(token_lists, tag_lists, strict=True) if 4 <= len(t) <= max_words]
    shots = [next(((t, g) for t, g in short if not entity_spans(g)), short[0])][:n]
    shown: set[str] = set()
    while len(shots) < n:
        best = max((ex for ex in short if ex not in shots),
                   key=lambda ex: len({k for k, _, _ in entity_spans(ex[1])} - shown), default=None)
        if best is None:
            break
        shots.append(best)
        shown |= {k for k, _, _ in entity_spans(best[1])}
    return shots


def ner_messages(tokens: list[str], types: list[str], examples: list[tuple[list[str], list[str]]] = ()) -> list[dict]:
    """A chat asking for one 'type: text' line per entity (or 'none'), with solved examples as earlier turns."""
    system = (f"You find named entities in tweets. Entity types: {', '.join(types)}. Answer with one line per "
              "entity in the form 'type: text', copying the text exactly from the tweet. If there is none, "
              "answer 'none'.")
    messages = [{"role": "system", "content": system}]
    for ex_tokens, ex_tags in examples:
        answer = "\n".join(f"{k}: {' '.join(ex_tokens[s:e])}" for k, s, e in entity_spans(ex_tags)) or "none"
        messages += [{"role": "user", "content": " ".join(ex_tokens)}, {"role": "assistant", "content": answer}]
    return messages + [{"role": "user", "content": " ".join(tokens)}]


def parse_entities(answer: str, types: list[str]) -> tuple[list[tuple[str, str]], bool]:
    """(type, text) pairs from a 'type: text' answer, forgiving bullets, quotes, case and common type
    synonyms. The bool says whether the answer was readable at all ('none' is readable and empty)."""
    known = {t.lower(): t for t in types} | {a: t for a, t in ALIASES.items() if t in types}
    found, readable = [], answer.strip().lower().strip(".!") in ("none", "")
    for line in answer.splitlines():
        m = re.match(r"^[\s\-*•\d.)]*([A-Za-z][\w -]*?)\s*[:=]\s*(.+)$", line)
        if not m:
            continue
        kind = known.get(m[1].strip().lower())
        text = m[2].strip().strip("\"'`.,;")
        if kind:
            readable = True
            if text and text.lower() != "none":
                found.append((kind, text))
    return found, readable


def match_entities(tokens: list[str], entities: list[tuple[str, str]]) -> tuple[list[tuple[str, int, int]], int]:
    """Map (type, text) to word spans: the first not-yet-used place where the text's words occur in order
    (case-insensitive). Returns the spans and how many entities were not found in the text."""
    lower, used, spans, missing = [t.lower() for t in tokens], set(), [], 0
    for kind, text in entities:
        words = [w.lower() for w, _, _ in split_words(text)]
        starts = [i for i in range(len(lower) - len(words) + 1)
                  if words and lower[i:i + len(words)] == words and not used & set(range(i, i + len(words)))]
        if not starts:
            missing += 1
            continue
        spans.append((kind, starts[0], starts[0] + len(words)))
        used |= set(range(starts[0], starts[0] + len(words)))
    return spans, missing


@torch.inference_mode()
def generate(model, tokenizer, conversations: list[list[dict]], max_new_tokens: int = 32, batch_size: int = 16,
             progress: bool = False) -> list[str]:
    """Greedy answers for many chats, batched by prompt length (left padding)."""
    tokenizer.padding_side = "left"
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    prompts = [tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in conversations]
    order, answers = np.argsort([-len(p) for p in prompts], kind="stable"), [""] * len(prompts)
    for b in tqdm(range(0, len(prompts), batch_size), desc="prompting", unit="batch", disable=not progress):
        idx = order[b:b + batch_size]
        enc = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
        out = model.generate(**enc.to(model.device), max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad)
        for i, text in zip(idx, tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True),
                           strict=True):
            answers[i] = text.strip()
    return answers


def prompt_tags(model, tokenizer, token_lists: list[list[str]], types: list[str], examples=(),
                max_new_tokens: int = 32, batch_size: int = 16, progress: bool = False) -> tuple[list[list[str]], dict]:
    """Prompt a chat model for the entities of each text; BIO tags per word, the raw answers and counts of
    unreadable answers and of entities that are not in the text."""
    answers = generate(model, tokenizer, [ner_messages(t, types, examples) for t in token_lists], max_new_tokens,
                       batch_size, progress)
    tags, unreadable, missing = [], 0, 0
    for tokens, answer in zip(token_lists, answers, strict=True):
        entities, readable = parse_entities(answer, types)
        spans, lost = match_entities(tokens, entities)
        tags.append(tags_from_spans(spans, len(tokens)))
        unreadable += not readable
        missing += lost
    return tags, {"answers": answers, "unreadable": unreadable, "not_in_text": missing}


# --- command line ---------------------------------------------------------------------------------------------

def load_tagger(folder: str):
    """A model folder written by `ner.py train` (or any token-classification model name)."""
    path = Path(folder).expanduser()
    if not path.exists() and (folder.startswith((".", "/", "~")) or "/" not in folder or path.parent.exists()):
        raise NerError(f"model folder '{folder}' not found (write one with: ner.py train --out {folder})")
    if path.is_dir() and not (path / "config.json").exists():
        raise NerError(f"'{folder}' holds no model (no config.json); train one with: ner.py train --out {folder}")
    model = load_model(folder, kind="token-cls", dtype=torch.float32).eval()
    if set(model.config.id2label.values()) <= {f"LABEL_{i}" for i in range(model.config.num_labels)}:
        raise NerError(f"'{folder}' has no tag names in its config; it is not a trained tagger")
    return model, load_tokenizer(folder)


def read_texts(source: str | None) -> list[str]:
    """Non-empty lines of a .txt file, or of standard input when source is None or '-'."""
    if source in (None, "-"):
        lines = sys.stdin.read().splitlines()
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise NerError(f"text file '{source}' not found")
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            raise NerError(f"{path.name} is not UTF-8 text") from None
    texts = [line.strip() for line in lines if line.strip()]
    if not texts:
        raise NerError("no text to tag (give a .txt file with one text a line, or pipe text to stdin)")
    return texts


def _train_command(args) -> None:
    if args.max_steps == 0 or args.epochs <= 0 or args.batch_size < 1 or args.max_length < 2:
        raise NerError("--max-steps, --epochs, --batch-size and --max-length must be positive")
    _, _, metrics = train(args.data, args.model, args.out, args.max_steps, args.epochs, args.batch_size, args.lr,
                          args.max_length, args.seed, progress=True)
    print(f"test entity F1 {metrics['entity_f1']:.3f} (precision {metrics['entity_precision']:.3f}, recall "
          f"{metrics['entity_recall']:.3f}; baselines: lookup {metrics['lookup_entity_f1']:.3f}, all O "
          f"{metrics['majority_entity_f1']:.3f}) after "
          f"{metrics['steps']} steps -> {args.out}")


def _predict_command(args) -> None:
    model, tokenizer = load_tagger(args.model)
    texts = read_texts(args.texts)
    for text, entities in zip(texts, extract(model, tokenizer, texts, args.batch_size, progress=True), strict=True):
        print(json.dumps({"text": text, "entities": entities}, ensure_ascii=False), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="fine-tune an encoder to tag entities and save it")
    p.add_argument("--data", default="wnut_ner", help="a named set (wnut_ner) or a .jsonl / CoNLL file")
    p.add_argument("--model", default=MINILM, help=f"encoder: short name, local folder or Hub id (default {MINILM})")
    p.add_argument("--out", required=True, help="folder for the model, tokenizer and metrics.json")
    p.add_argument("--epochs", type=float, default=2.0, help="passes over the training split (default 2)")
    p.add_argument("--max-steps", type=int, default=-1, help="optimizer steps; overrides --epochs when > 0")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-4, help="peak learning rate (default 3e-4)")
    p.add_argument("--max-length", type=int, default=64, help="sub-word tokens per text; longer ones are cut")
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("predict", help="print the entities of each text as JSON lines")
    p.add_argument("model", help="a folder written by `ner.py train`")
    p.add_argument("texts", nargs="?", help="a .txt file with one text a line (default: standard input)")
    p.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    try:
        _train_command(args) if args.command == "train" else _predict_command(args)
    except (InputError, ModelNotAvailable) as err:
        parser.exit(2, f"ner.py: error: {' '.join(str(err).split())}\n")


if __name__ == "__main__":
    main()
