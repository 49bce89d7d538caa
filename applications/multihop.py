"""Multi-hop question answering: split a question into two sub-questions, retrieve and answer one hop at a time.

A question such as "del of an unbound name raises some exception; which subclass of it is raised for a local read
before assignment?" needs two facts from two places. One retrieval with the whole question tends to find one of
them. A chain asks the first sub-question (retrieve k chunks, answer), writes the second sub-question with that
answer in place of `#1`, retrieves and answers it, then answers the full question from the two facts. The
sub-questions come from a chat model prompted with worked examples (or from gold annotations, in the lesson).
Retrieval and the index are applications/rag.py's.

Examples:
  python applications/multihop.py --question "Deleting an unbound name with del raises a certain exception. Which subclass of that exception is raised when a function reads a local variable before it has been assigned?"
  python applications/multihop.py --index build/rag-python --question "What does 2 ** 3 ** 2 evaluate to?"  # index from `rag.py index`
  python applications/multihop.py --folder my_notes/ --question "..." --k 2 --retriever bm25
  python applications/multihop.py --question "..." --no-decompose  # one retrieval with the whole question

Python API (applications/08_multihop_qa.ipynb uses it):
  decompose_messages(question) / parse_decomposition(text) -> [q1, q2]     bridge_template(hop1_answer, hop2_question)
  answer_messages(question, chunks) / final_messages(question, facts)      short_answer(text) / fill(template, answer)
  run_chains(subquestions, questions, search, generate, k) -> [Trace]     evidence_spans / evidence_recall
  normalise(text) / is_correct(prediction, gold)
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rag  # noqa: E402
from rag import Chunk, RagError  # noqa: E402

from common import MINILM, SMOLLM2, ModelNotAvailable, load_model, load_tokenizer  # noqa: E402

SLOT = "#1"  # where the first hop's answer goes in the second sub-question (as in "Break It Down", Wolfson 2020)
ANSWER_SYSTEM = ("Answer the question. Use the numbered sources if there are any. Reply with the answer only: a "
                 "word, a name, a number or a short phrase, not a sentence.")
FINAL_SYSTEM = ("Answer the question using the facts. Reply with the answer only: a word, a name, a number or a "
                "short phrase, not a sentence.")
DECOMPOSE_SYSTEM = (f"Split the question into two simpler sub-questions, one per line, numbered 1. and 2. If the "
                    f"second needs the answer of the first, write {SLOT} for that answer.")
# Worked examples written for this script (facts not in data/multihop_qa.jsonl): one bridge, one comparison.
SHOTS = [
    ("The built-in len() calls a special method of its argument. What type of value must that method return?",
     f"1. Which special method does len() call?\n2. What type of value must {SLOT} return?"),
    ("Are both tuples and strings immutable sequences?",
     "1. Are tuples immutable sequences?\n2. Are strings immutable sequences?"),
    ("The with statement calls a method when the block is entered. What does that method's return value become?",
     f"1. Which method does the with statement call when the block is entered?\n2. What does the return value of "
     f"{SLOT} become?"),
]


@dataclass
class Trace:
    """Everything one chain did for one question: sub-questions, retrieved chunk ids, hop answers, final answer."""

    question: str
    subquestions: list[str]  # as written (the second may hold #1)
    asked: list[str] = field(default_factory=list)  # as retrieved and answered (#1 filled in)
    retrieved: list[list[int]] = field(default_factory=list)  # chunk ids per hop
    hop_answers: list[str] = field(default_factory=list)
    final: str = ""


# --- prompts ------------------------------------------------------------------------------------------------

def decompose_messages(question: str) -> list[dict]:
    """Few-shot chat messages that ask for two numbered sub-questions."""
    messages = [{"role": "system", "content": DECOMPOSE_SYSTEM}]
    for q, a in SHOTS:
        messages += [{"role": "user", "content": f"Question: {q}"}, {"role": "assistant", "content": a}]
    return messages + [{"role": "user", "content": f"Question: {question}"}]


def parse_decomposition(text: str, question: str) -> tuple[list[str], bool]:
    """The two sub-questions of a model's reply ("1. ...", "2. ..."); when it did not write two, the missing ones
    fall back to the full question. Returns (sub-questions, parsed)."""
    found = {}
    for line in text.splitlines():
        m = re.match(r"\s*(?:sub-?question\s*)?([12])\s*[.):]\s*(.+)", line, flags=re.IGNORECASE)
        if m and m.group(1) not in found and m.group(2).strip():
            found[m.group(1)] = m.group(2).strip()
    parsed = len(found) == 2 and found["1"] != found["2"]
    return [found.get("1", question), found.get("2", question)], parsed


def answer_messages(question: str, chunks: list[Chunk] | None) -> list[dict]:
    """A short-answer prompt, with numbered sources or (chunks=None) closed book."""
    if not chunks:
        return [{"role": "system", "content": ANSWER_SYSTEM}, {"role": "user", "content": f"Question: {question}"}]
    sources = "\n\n".join(f"[{n}] ({c.source}) {' '.join(c.text.split())}" for n, c in enumerate(chunks, 1))
    return [{"role": "system", "content": ANSWER_SYSTEM},
            {"role": "user", "content": f"Sources:\n{sources}\n\nQuestion: {question}"}]


def final_messages(question: str, facts: list[tuple[str, str]]) -> list[dict]:
    """The last step of a chain: the full question and the (sub-question, answer) facts found on the way."""
    lines = "\n".join(f"- {q} {a}" for q, a in facts)
    return [{"role": "system", "content": FINAL_SYSTEM},
            {"role": "user", "content": f"Facts:\n{lines}\n\nQuestion: {question}"}]


def short_answer(text: str) -> str:
    """First line of a reply, without a leading "Answer:" and a trailing full stop: what goes into #1."""
    line = next((s.strip() for s in text.splitlines() if s.strip()), "")
    line = re.sub(r"^(?:the\s+)?answer(?:\s+to\s+(?:the|this)\s+question)?\s*(?:is)?\s*[:\-]?\s*", "", line,
                  flags=re.IGNORECASE)
    return line.rstrip(".").strip()


def bridge_template(hop1_answer: str, hop2_question: str) -> str | None:
    """The second sub-question with the first hop's (gold) answer replaced by #1, or None when it does not occur
    there (a comparison question, or a bridge worded differently). A leading article and trailing () are
    ignored: gold "a generator function" matches "... in a generator function ...", "__exit__()" matches
    "__exit__"."""
    core = re.sub(r"^(a|an|the)\s+", "", hop1_answer.strip(), flags=re.IGNORECASE).removesuffix("()")
    if len(core) < 2:
        return None
    pattern = r"(?<!\w)(?:(?:a|an|the)\s+)?" + re.escape(core) + r"(?:\(\))?(?!\w)"
    template, n = re.subn(pattern, SLOT, hop2_question, count=1, flags=re.IGNORECASE)
    return template if n else None


def fill(template: str, answer: str) -> str:
    """Put a hop answer in place of #1 (an empty answer leaves the words "the answer" there)."""
    return template.replace(SLOT, answer.strip() or "the answer")


# --- the chain ----------------------------------------------------------------------------------------------

Search = Callable[[list[str], int], list[list[int]]]  # queries, k -> chunk ids per query
Generate = Callable[[list[list[dict]]], list[str]]  # conversations -> replies


def run_chains(subquestions: list[list[str]], questions: list[str], search: Search, generate: Generate,
               chunks: list[Chunk], k: int) -> list[Trace]:
    """Two hops for every question, batched across questions: retrieve k chunks for sub-question 1 and answer it;
    put that answer into sub-question 2 (#1), retrieve k and answer; then answer the full question from the two
    (sub-question, answer) facts."""
    traces = [Trace(q, list(s)) for q, s in zip(questions, subquestions, strict=True)]
    for hop in range(2):
        asked = [fill(t.subquestions[hop], t.hop_answers[-1]) if hop else t.subquestions[0] for t in traces]
        ids = search(asked, k)
        replies = generate([answer_messages(q, [chunks[i] for i in r]) for q, r in zip(asked, ids, strict=True)])
        for t, q, r, reply in zip(traces, asked, ids, replies, strict=True):
            t.asked.append(q)
            t.retrieved.append(list(r))
            t.hop_answers.append(short_answer(reply))
    finals = generate([final_messages(t.question, list(zip(t.asked, t.hop_answers, strict=True))) for t in traces])
    for t, reply in zip(traces, finals, strict=True):
        t.final = short_answer(reply)
    return traces


# --- evaluation -----------------------------------------------------------------------------------------------

def evidence_spans(docs: dict[str, str], row: dict) -> list[tuple[str, int, int]]:
    """(topic, start, end) of each hop's evidence in its topic's text."""
    spans = []
    for hop in row["hops"]:
        start = docs[hop["topic"]].find(hop["evidence"])
        if start < 0:
            raise ValueError(f"evidence of {row.get('id', '?')} not found in topic '{hop['topic']}'")
        spans.append((hop["topic"], start, start + len(hop["evidence"])))
    return spans


def evidence_recall(retrieved: list[list[int]], gold: list[list[set[int]]]) -> dict[str, float]:
    """For chunk ids retrieved per question (all hops pooled) and the gold chunk ids of each hop's evidence:
    the share of hops whose evidence was found, and the share of questions with every hop's evidence found."""
    if len(retrieved) != len(gold) or not gold:
        raise ValueError("need one retrieved list per question, and at least one question")
    found = [[bool(set(r) & g) for g in hops] for r, hops in zip(retrieved, gold, strict=True)]
    return {"hops found": sum(map(sum, found)) / sum(map(len, found)),
            "both found": sum(all(f) for f in found) / len(found)}


def normalise(text: str) -> str:
    """Lower case, no quotes/backticks/asterisks, no trailing () on names, no articles, single spaces."""
    text = re.sub(r"[\"'`*]", "", text.lower())
    text = re.sub(r"(\w)\(\)", r"\1", text)
    return " ".join(w for w in re.findall(r"[\w.\-~+#]+|[^\w\s]", text) if w not in ("a", "an", "the"))


def is_correct(prediction: str, gold: str) -> bool:
    """yes/no gold: the prediction starts with that word. Otherwise the normalised gold occurs in the normalised
    prediction as whole words ("UnboundLocalError" in "It raises UnboundLocalError.", "-6" not in "-60")."""
    p, g = normalise(prediction), normalise(gold)
    if g in ("yes", "no"):
        return p.split(" ", 1)[0].strip(".,!") == g
    return re.search(r"(?<![\w\-~])" + re.escape(g) + r"(?![\w])", p) is not None


# --- command line ---------------------------------------------------------------------------------------------

def _load_index(args) -> tuple[rag.Index, rag.Embedder | None]:
    if args.index:
        index = rag.Index.load(args.index)
        return index, rag.Embedder(index.embedder) if args.retriever != "bm25" else None
    docs = rag.read_folder(args.folder) if args.folder else rag.load_corpus(args.corpus)
    embedder = rag.Embedder(args.embedder)
    print(f"indexing {len(docs)} documents (once per run; save an index with rag.py index and pass --index)...")
    return rag.build_index(docs, embedder, args.chunk_size, args.overlap), embedder


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--question", required=True, help="the question to answer")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--index", help="a folder written by `rag.py index`")
    source.add_argument("--folder", help="a folder of .txt / .md files to index on the fly")
    source.add_argument("--corpus", default="python_docs", help="a named data set to index on the fly (default)")
    parser.add_argument("--k", type=int, default=3, help="chunks retrieved per hop (default 3)")
    parser.add_argument("--retriever", choices=rag.METHODS, default="hybrid", help="hybrid (default), dense or bm25")
    parser.add_argument("--chunk-size", type=int, default=400, help="characters per chunk when indexing (400)")
    parser.add_argument("--overlap", type=int, default=100, help="overlap when indexing (default 100)")
    parser.add_argument("--model", default=SMOLLM2, help="chat model: short name, local folder or Hub id")
    parser.add_argument("--embedder", default=MINILM, help="sentence encoder when indexing on the fly")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="bfloat16")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--no-decompose", action="store_true", help="one retrieval of 2k chunks with the question")
    args = parser.parse_args(argv)
    try:
        if not args.question.strip():
            raise RagError("the question is empty")
        if args.k < 1:
            raise RagError("--k must be at least 1")
        rag.chunk_text("", args.chunk_size, args.overlap)  # checks the settings before any model loads
        index, embedder = _load_index(args)
        tokenizer = load_tokenizer(args.model)
        model = load_model(args.model, dtype=getattr(torch, args.dtype)).eval()
    except (RagError, ModelNotAvailable) as err:
        parser.exit(2, f"multihop.py: error: {' '.join(str(err).split())}\n")

    def search(queries: list[str], k: int) -> list[list[int]]:
        return rag.retrieve(index, embedder, queries, k, args.retriever)

    def generate(conversations: list[list[dict]]) -> list[str]:
        return rag.generate(model, tokenizer, conversations, args.max_new_tokens)

    if args.no_decompose:
        ids = search([args.question], 2 * args.k)[0]
        print(f"Answer: {short_answer(generate([answer_messages(args.question, [index.chunks[i] for i in ids])])[0])}")
        print("Sources: " + ", ".join(index.chunks[i].source for i in ids))
        return
    subquestions, parsed = parse_decomposition(generate([decompose_messages(args.question)])[0], args.question)
    trace = run_chains([subquestions], [args.question], search, generate, index.chunks, args.k)[0]
    if not parsed:
        print("(the model did not write two sub-questions; the full question stands in for the missing ones)")
    for hop in range(2):
        print(f"Hop {hop + 1}: {trace.asked[hop]}\n  answer: {trace.hop_answers[hop]}\n  sources: "
              + ", ".join(index.chunks[i].source for i in trace.retrieved[hop]))
    print(f"Answer: {trace.final}")


if __name__ == "__main__":
    main()
