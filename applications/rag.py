"""Retrieval-augmented generation: index a folder of documents (or a named corpus), then ask questions.

`index` splits every document into overlapping character chunks, embeds each chunk with a sentence encoder
(all-MiniLM-L6-v2 by default: mean pooling, unit length, as sentence-transformers does) and saves the vectors in
a FAISS index (exact inner product = cosine) with the chunks' text and offsets. `ask` embeds the question, takes
the k nearest chunks (dense, BM25 or a hybrid of both), puts them numbered in the prompt of a chat model and
prints its answer with the numbered sources it was given.

Examples:
  python applications/rag.py index --corpus python_docs --out build/rag-python    # the Python reference, 79 topics
  python applications/rag.py ask build/rag-python "What does a bare raise do when no exception is active?"
  python applications/rag.py ask build/rag-python "Is list.sort() stable?" --k 5 --retriever hybrid
  python applications/rag.py ask build/rag-python "What is a dunder name?" --no-generate  # sources only
  python applications/rag.py index --folder my_notes/ --out build/rag-notes --chunk-size 600 --overlap 100
  python applications/rag.py ask build/rag-notes "When is the meeting?" --model HuggingFaceTB/SmolLM2-360M-Instruct

Python API (applications/05_rag.ipynb uses it):
  chunk_text(text, size, overlap) -> [(start, end)]       read_folder(folder) / load_corpus(name) -> {source: text}
  chunk_documents(docs, size, overlap) -> [Chunk]         Embedder(name).encode(texts) -> unit vectors
  build_index(docs, embedder, size, overlap) -> Index     Index.save(folder) / Index.load(folder) / .search(vecs, k)
  BM25(texts).scores(query)                               retrieve(index, embedder, questions, k, method)
  recall_at_k(retrieved, gold, ks)                        rag_messages(question, chunks) / generate(...) / ask(...)
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import faiss
import numpy as np
import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from common import MINILM, SMOLLM2, ModelNotAvailable, load_dataset, load_model, load_tokenizer  # noqa: E402
from common.models import resolve_model  # noqa: E402

FORMAT = 1  # version of the saved index folder
METHODS = ("dense", "bm25", "hybrid")
SYSTEM = ("You answer questions about documents. Use only the numbered sources. Answer in one short sentence and "
          "cite the sources you used like [1].")
CLOSED_BOOK = "Answer the question in one short sentence."


class RagError(ValueError):
    """Bad input (folder, file, index, settings): reported as one line, exit code 2."""


@dataclass
class Chunk:
    """A piece of one document: where it comes from and its text (text == document[start:end])."""

    source: str
    start: int
    end: int
    text: str


# --- documents and chunks ------------------------------------------------------------------------------------

def read_folder(folder: str | Path, suffixes: tuple[str, ...] = (".txt", ".md")) -> dict[str, str]:
    """Every .txt/.md file under `folder` (recursively), keyed by its path relative to the folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RagError(f"no folder at '{folder}'")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
    if not files:
        raise RagError(f"no {' or '.join(suffixes)} files in '{folder}'")
    docs = {}
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise RagError(f"cannot read '{path}': not UTF-8 text (byte {err.start})") from err
        except OSError as err:
            raise RagError(f"cannot read '{path}': {err.strerror}") from err
        if text.strip():
            docs[path.relative_to(folder).as_posix()] = text
    if not docs:
        raise RagError(f"every file in '{folder}' is empty")
    return docs


def load_corpus(name: str) -> dict[str, str]:
    """A named data set of `common` with a `text` column (e.g. python_docs), first split, keyed by its title."""
    try:
        dataset = load_dataset(name)
    except ValueError as err:
        raise RagError(str(err)) from err
    split = dataset["train"] if "train" in dataset else next(iter(dataset.values()))
    if "text" not in split.column_names:
        raise RagError(f"data set '{name}' has no 'text' column (it has {', '.join(split.column_names)})")
    key = next((c for c in ("topic", "title", "module") if c in split.column_names), None)
    names = split[key] if key else [f"{name}-{i}" for i in range(len(split))]
    return dict(zip(names, split["text"], strict=True))


def chunk_text(text: str, size: int = 800, overlap: int = 100) -> list[tuple[int, int]]:
    """Character spans [start, end) of at most `size` characters; each starts about `overlap` characters before
    the previous one ended. A span ends at the last paragraph break, else line break, else space of its second
    half, and starts after a space, so words are not cut (unless a single word is longer than size / 2)."""
    if size < 1 or not 0 <= overlap < size:
        raise RagError(f"need chunk size >= 1 and 0 <= overlap < size, got size {size}, overlap {overlap}")
    spans, start, n = [], 0, len(text)
    while start < n:
        end = min(start + size, n)
        if end < n:
            for sep in ("\n\n", "\n", " "):
                cut = text.rfind(sep, start + size // 2, end)
                if cut > start:
                    end = cut
                    break
        if text[start:end].strip():
            spans.append((start, end))
        if end >= n:
            break
        nxt = max(end - overlap, start + 1)
        space = text.find(" ", nxt, end) if overlap else -1
        start = space + 1 if space != -1 else nxt
    return spans


def chunk_documents(docs: dict[str, str], size: int = 800, overlap: int = 100) -> list[Chunk]:
    """All documents cut into chunks, in document order."""
    return [Chunk(source, s, e, text[s:e]) for source, text in docs.items() for s, e in chunk_text(text, size, overlap)]


# --- embeddings and the index ----------------------------------------------------------------------------------

class Embedder:
    """A sentence encoder: any BERT-like model, mean-pooled over real tokens and normalised to unit length."""

    def __init__(self, name: str = MINILM, max_length: int | None = None, dtype: torch.dtype | None = None):
        self.name = name
        self.tokenizer = load_tokenizer(name)
        self.model = load_model(name, kind="encoder", dtype=dtype or torch.float32).eval()
        self.max_length = max_length or _max_seq_length(name)
        self.dim = self.model.config.hidden_size

    @torch.inference_mode()
    def encode(self, texts: list[str], batch_size: int = 32, progress: bool = False) -> np.ndarray:
        """(len(texts), dim) float32 unit vectors; texts longer than max_length tokens are truncated."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = np.argsort([-len(t) for t in texts], kind="stable")  # similar lengths together: less padding
        with tqdm(total=len(texts), desc="embedding", unit="chunk", disable=not progress) as bar:
            for b in range(0, len(texts), batch_size):
                idx = order[b:b + batch_size]
                enc = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                     max_length=self.max_length, return_tensors="pt")
                hidden = self.model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out[idx] = torch.nn.functional.normalize(mean.float(), dim=-1).numpy()
                bar.update(len(idx))
        return out


def _max_seq_length(name: str) -> int:
    """The length the sentence encoder was trained for (256 for MiniLM), else the tokenizer's limit (max 512)."""
    try:
        config = Path(resolve_model(name)) / "sentence_bert_config.json"
        return int(json.loads(config.read_text())["max_seq_length"])
    except (OSError, KeyError, ValueError):
        return 512


class Index:
    """Chunks and their unit vectors in a FAISS IndexFlatIP: exact search, inner product = cosine similarity."""

    def __init__(self, chunks: list[Chunk], vectors: np.ndarray | faiss.Index, embedder: str,
                 chunk_size: int, overlap: int):
        self.chunks, self.embedder, self.chunk_size, self.overlap = chunks, embedder, chunk_size, overlap
        if isinstance(vectors, faiss.Index):
            self.faiss = vectors
        else:
            self.faiss = faiss.IndexFlatIP(vectors.shape[1])
            self.faiss.add(np.ascontiguousarray(vectors, dtype=np.float32))
        self._bm25 = None

    @property
    def bm25(self) -> BM25:
        if self._bm25 is None:  # built on first use: a second or so for thousands of chunks
            self._bm25 = BM25([c.text for c in self.chunks])
        return self._bm25

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Scores and chunk ids of the k most similar chunks, one row per query vector."""
        if vectors.shape[1] != self.faiss.d:
            raise RagError(f"query vectors have {vectors.shape[1]} dimensions, the index {self.faiss.d}")
        return self.faiss.search(np.ascontiguousarray(vectors, dtype=np.float32), min(k, len(self.chunks)))

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.faiss, str(folder / "index.faiss"))
        with open(folder / "chunks.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(asdict(c), ensure_ascii=False) + "\n" for c in self.chunks)
        meta = {"format": FORMAT, "embedder": self.embedder, "dim": self.faiss.d, "chunks": len(self.chunks),
                "chunk_size": self.chunk_size, "overlap": self.overlap}
        (folder / "meta.json").write_text(json.dumps(meta, indent=1))

    @classmethod
    def load(cls, folder: str | Path) -> Index:
        folder = Path(folder)
        if not (folder / "meta.json").exists():
            raise RagError(f"no index in '{folder}': build one with `rag.py index --out {folder}`")
        try:
            meta = json.loads((folder / "meta.json").read_text())
            if meta.get("format") != FORMAT:
                raise RagError(f"index in '{folder}' has format {meta.get('format')}, this script reads {FORMAT}")
            chunks = [Chunk(**json.loads(line)) for line in open(folder / "chunks.jsonl", encoding="utf-8")]
            vectors = faiss.read_index(str(folder / "index.faiss"))
        except (OSError, ValueError, TypeError, KeyError, RuntimeError) as err:
            raise RagError(f"index in '{folder}' is damaged ({type(err).__name__}): rebuild it") from err
        if vectors.ntotal != len(chunks):
            raise RagError(f"index in '{folder}' has {vectors.ntotal} vectors for {len(chunks)} chunks: rebuild it")
        return cls(chunks, vectors, meta["embedder"], meta["chunk_size"], meta["overlap"])


def build_index(docs: dict[str, str], embedder: Embedder, chunk_size: int = 800, overlap: int = 100,
                progress: bool = False) -> Index:
    """Chunk every document, embed every chunk, index the vectors."""
    chunks = chunk_documents(docs, chunk_size, overlap)
    vectors = embedder.encode([c.text for c in chunks], progress=progress)
    return Index(chunks, vectors, embedder.name, chunk_size, overlap)


# --- retrieval ----------------------------------------------------------------------------------------------

def words(text: str) -> list[str]:
    """Lower-case word tokens (letters, digits, underscores): `__init__` stays one token."""
    return re.findall(r"\w+", text.lower())


class BM25:
    """Okapi BM25 over a fixed list of texts (k1 = 1.5, b = 0.75, idf = log(1 + (N - df + 0.5) / (df + 0.5)))."""

    def __init__(self, texts: list[str], k1: float = 1.5, b: float = 0.75):
        self.counts = [Counter(words(t)) for t in texts]
        lengths = np.array([sum(c.values()) for c in self.counts], dtype=np.float64)
        self.norm = k1 * (1 - b + b * lengths / max(lengths.mean(), 1e-9))
        self.k1 = k1
        df = Counter(w for c in self.counts for w in c)
        n = len(texts)
        self.idf = {w: math.log(1 + (n - d + 0.5) / (d + 0.5)) for w, d in df.items()}

    def scores(self, query: str) -> np.ndarray:
        """One score per text; 0 for texts sharing no word with the query."""
        out = np.zeros(len(self.counts))
        for w in set(words(query)) & self.idf.keys():
            tf = np.array([c.get(w, 0) for c in self.counts], dtype=np.float64)
            out += self.idf[w] * tf * (self.k1 + 1) / (tf + self.norm)
        return out


def retrieve(index: Index, embedder: Embedder | None, questions: list[str], k: int = 5,
             method: str = "dense", depth: int = 50) -> list[list[int]]:
    """Chunk ids, best first, for each question. hybrid = reciprocal rank fusion of dense and BM25 (each ranked
    list to `depth`; score = sum of 1 / (60 + rank)), which needs no score calibration between the two."""
    if method not in METHODS:
        raise RagError(f"unknown retriever '{method}': choose {', '.join(METHODS)}")
    dense = index.search(embedder.encode(questions), max(k, depth))[1].tolist() if method != "bm25" else None
    if method == "dense":
        return [row[:k] for row in dense]
    sparse = [np.argsort(-index.bm25.scores(q), kind="stable")[:max(k, depth)].tolist() for q in questions]
    if method == "bm25":
        return [row[:k] for row in sparse]
    fused = []
    for d, s in zip(dense, sparse, strict=True):
        score = Counter()
        for ranking in (d, s):
            for rank, i in enumerate(ranking):
                score[i] += 1 / (60 + rank + 1)
        fused.append([i for i, _ in score.most_common(k)])
    return fused


def gold_chunks(chunks: list[Chunk], source: str, start: int, end: int) -> set[int]:
    """Ids of the chunks of `source` that contain the whole character span [start, end) of that document."""
    return {i for i, c in enumerate(chunks) if c.source == source and c.start <= start and end <= c.end}


def recall_at_k(retrieved: list[list[int]], gold: list[set[int]], ks: tuple[int, ...] = (1, 3, 5)) -> dict[int, float]:
    """Share of questions with at least one gold chunk among the first k retrieved, for each k."""
    if len(retrieved) != len(gold) or not gold:
        raise ValueError("need one retrieved list per question, and at least one question")
    return {k: sum(bool(set(r[:k]) & g) for r, g in zip(retrieved, gold, strict=True)) / len(gold) for k in ks}


# --- generation -----------------------------------------------------------------------------------------------

def rag_messages(question: str, chunks: list[Chunk] | None) -> list[dict]:
    """Chat messages: the question with numbered sources [1], [2]... or, with chunks=None, closed book."""
    if chunks is None:
        return [{"role": "system", "content": CLOSED_BOOK}, {"role": "user", "content": question}]
    sources = "\n\n".join(f"[{n}] ({c.source}) {' '.join(c.text.split())}" for n, c in enumerate(chunks, 1))
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"Sources:\n{sources}\n\nQuestion: {question}"}]


@torch.inference_mode()
def generate(model, tokenizer, conversations: list[list[dict]], max_new_tokens: int = 48, batch_size: int = 8,
             progress: bool = False) -> list[str]:
    """Greedy answers for many conversations, in batches of similar length (left padding)."""
    tokenizer.padding_side = "left"
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    prompts = [tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in conversations]
    order = np.argsort([-len(p) for p in prompts], kind="stable")
    answers = [""] * len(prompts)
    for b in tqdm(range(0, len(prompts), batch_size), desc="generating", unit="batch", disable=not progress):
        idx = order[b:b + batch_size]
        enc = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
        out = model.generate(**enc.to(model.device), max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=pad)
        for i, text in zip(idx, tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True),
                           strict=True):
            answers[i] = text.strip()
    return answers


def ask(index: Index, embedder: Embedder, question: str, model=None, tokenizer=None, k: int = 3,
        method: str = "dense", max_new_tokens: int = 64) -> tuple[str | None, list[Chunk]]:
    """Retrieve k chunks for one question; with a model, also generate an answer that cites them."""
    if not question.strip():
        raise RagError("the question is empty")
    sources = [index.chunks[i] for i in retrieve(index, embedder, [question], k, method)[0]]
    if model is None:
        return None, sources
    return generate(model, tokenizer, [rag_messages(question, sources)], max_new_tokens)[0], sources


# --- command line ---------------------------------------------------------------------------------------------

def _index_command(args) -> None:
    docs = read_folder(args.folder) if args.folder else load_corpus(args.corpus)
    chunk_text("", args.chunk_size, args.overlap)  # checks the settings before the model loads
    embedder = Embedder(args.embedder)
    index = build_index(docs, embedder, args.chunk_size, args.overlap, progress=True)
    index.save(args.out)
    print(f"indexed {len(docs)} documents as {len(index.chunks)} chunks ({args.chunk_size} characters, overlap "
          f"{args.overlap}) with {args.embedder} -> {args.out}")


def _ask_command(args) -> None:
    index = Index.load(args.index)
    if args.embedder and args.embedder != index.embedder:
        raise RagError(f"the index was built with '{index.embedder}', not '{args.embedder}': vectors of two models "
                       f"cannot be compared; rebuild the index or drop --embedder")
    embedder = Embedder(index.embedder) if args.retriever != "bm25" else None
    model = tokenizer = None
    if not args.no_generate:
        tokenizer = load_tokenizer(args.model)
        model = load_model(args.model, dtype=getattr(torch, args.dtype)).eval()
    answer, sources = ask(index, embedder, args.question, model, tokenizer, args.k, args.retriever, args.max_new_tokens)
    if answer is not None:
        print(f"Answer: {answer}\n")
    print("Sources:")
    for n, c in enumerate(sources, 1):
        print(f"  [{n}] {c.source} (characters {c.start}-{c.end}): {' '.join(c.text.split())[:150]}...")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("index", help="chunk, embed and index documents into a folder")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--folder", help="a folder of .txt / .md files (searched recursively)")
    source.add_argument("--corpus", help="a named data set of common/ with a text column, e.g. python_docs")
    p.add_argument("--out", required=True, help="folder to write the index to")
    p.add_argument("--chunk-size", type=int, default=800, help="characters per chunk (default 800)")
    p.add_argument("--overlap", type=int, default=100, help="characters shared by neighbouring chunks (default 100)")
    p.add_argument("--embedder", default=MINILM, help="sentence encoder: short name, local folder or Hub id")
    p = sub.add_parser("ask", help="answer a question from an index, with numbered sources")
    p.add_argument("index", help="a folder written by `rag.py index`")
    p.add_argument("question")
    p.add_argument("--k", type=int, default=3, help="chunks given to the model (default 3)")
    p.add_argument("--retriever", choices=METHODS, default="dense", help="dense (default), bm25 or hybrid")
    p.add_argument("--model", default=SMOLLM2, help="chat model: short name, local folder or Hub id")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--embedder", help="must match the model the index was built with (default: that model)")
    p.add_argument("--no-generate", action="store_true", help="print the retrieved sources only")
    args = parser.parse_args(argv)
    try:
        if args.command == "index":
            _index_command(args)
        else:
            if args.k < 1:
                raise RagError("--k must be at least 1")
            _ask_command(args)
    except (RagError, ModelNotAvailable) as err:
        parser.exit(2, f"rag.py: error: {' '.join(str(err).split())}\n")


if __name__ == "__main__":
    main()
