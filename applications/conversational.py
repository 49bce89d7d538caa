"""Conversational QA: rewrite each follow-up question into a standalone one with the chat history, then retrieve.

A follow-up such as "And if no exception is active?" means nothing to a retriever on its own. Before retrieval,
a chat model reads the conversation so far and rewrites the follow-up as a standalone question ("What does a
bare raise do if no exception is active?"), prompted with a few worked examples; the standalone question then
goes through the usual RAG pipeline of rag.py (retrieve k chunks, answer citing them). `ask` runs one
conversation turn by turn and prints, per turn, the rewrite, the sources and the answer; `check` validates a
conversation file such as data/conversational_qa.jsonl (every evidence string must occur in its topic).

Examples:
  python applications/rag.py index --corpus python_docs --out build/rag-python          # once (rag.py)
  python applications/conversational.py ask build/rag-python "What does a bare raise do?" "And if no exception is active?"
  python applications/conversational.py ask build/rag-python "Is list.sort() stable?" "What does it return?" --no-generate
  python applications/conversational.py ask build/rag-python "What does del do to a name?" "And if it is unbound?" --no-rewrite
  python applications/conversational.py ask build/rag-python --interactive   # type turns, an empty line ends
  python applications/conversational.py check data/conversational_qa.jsonl

Python API (applications/07_conversational_qa.ipynb uses it):
  load_conversations(path) -> [conversation]     follow_ups(conversations) -> [Turn] (with their history)
  evidence_span(docs, topic, evidence) -> (topic, start, end)
  QUERIES: how a turn becomes a retrieval query: follow-up alone, history + follow-up, rewrite, gold rewrite
  rewrite_messages(history, question, shots) -> chat messages       clean_rewrite(text, fallback) -> str
  rewrite(model, tokenizer, turns, ...) -> [str]                     contains(answer, gold) -> bool
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rag  # noqa: E402
from rag import ROOT, RagError  # noqa: E402

from common import SMOLLM2, ModelNotAvailable, load_model, load_tokenizer, read_jsonl  # noqa: E402

DATA = ROOT / "data" / "conversational_qa.jsonl"
FIELDS = ("question", "rewrite", "answer", "topic", "evidence")
QUERIES = ("follow-up alone", "history + follow-up", "model rewrite", "gold rewrite")
SYSTEM = ("Rewrite the last question of the conversation as a standalone question that can be understood without "
          "the conversation: replace pronouns and vague words (it, that, its, this one, what about) by the things "
          "they refer to. Keep it short. Do not answer it. Reply with the rewritten question only.")
# Worked examples on other Python topics than the evaluation set: (history as (question, answer) pairs,
# follow-up, standalone rewrite).
SHOTS = [
    ([("What does the pass statement do?", "Nothing: it is a null operation.")],
     "Where is it useful?", "Where is the pass statement useful?"),
    ([("What does str.upper() return?", "A copy of the string with all cased characters converted to uppercase.")],
     "And what about lower?", "What does str.lower() return?"),
    ([("Which exception does next() raise when an iterator is exhausted?", "StopIteration."),
      ("Can a generator catch it?", "Yes, like any other exception.")],
     "What happens if one raises it inside its body?",
     "What happens if a generator raises StopIteration inside its body?"),
]


class ConversationError(RagError):
    """A bad conversation file or turn: reported as one line, exit code 2."""


@dataclass
class Turn:
    """One question of a conversation, with the turns before it (dicts with FIELDS)."""

    conversation: str
    position: int  # 0 for the first question of the conversation
    history: list[dict]
    question: str
    rewrite: str = ""
    answer: str = ""
    topic: str = ""
    evidence: str = ""


def load_conversations(path: str | Path = DATA, docs: dict[str, str] | None = None) -> list[dict]:
    """Conversations from a JSON-lines file ({"id", "turns": [{question, rewrite, answer, topic, evidence}]}).
    With `docs` ({topic: text}), also checks that every evidence string occurs in its topic's text."""
    path = Path(path)
    rows = []
    for n, row in read_jsonl(path, ConversationError):
        turns = row.get("turns")
        if not isinstance(turns, list) or not turns:
            raise ConversationError(f"{path.name} line {n}: needs a non-empty 'turns' list")
        for t, turn in enumerate(turns, 1):
            missing = [f for f in FIELDS if not isinstance(turn.get(f), str) or not turn[f].strip()]
            if missing:
                raise ConversationError(f"{path.name} line {n}, turn {t}: missing or empty {', '.join(missing)}")
            if docs is not None:
                evidence_span(docs, turn["topic"], turn["evidence"], where=f"{path.name} line {n}, turn {t}")
        rows.append({"id": row.get("id", f"conv-{n:03d}"), "turns": turns})
    return rows


def evidence_span(docs: dict[str, str], topic: str, evidence: str, where: str = "") -> tuple[str, int, int]:
    """(topic, start, end) of the evidence string in its topic's text: what retrieval has to find."""
    prefix = f"{where}: " if where else ""
    if topic not in docs:
        raise ConversationError(f"{prefix}topic '{topic}' is not in the corpus")
    start = docs[topic].find(evidence)
    if start < 0:
        raise ConversationError(f"{prefix}evidence is not a substring of topic '{topic}': {evidence[:60]!r}")
    return topic, start, start + len(evidence)


def follow_ups(conversations: list[dict], include_first: bool = False) -> list[Turn]:
    """Every turn after the first of each conversation (or every turn), with the turns before it."""
    return [Turn(c["id"], i, c["turns"][:i], **t) for c in conversations for i, t in enumerate(c["turns"])
            if i > 0 or include_first]


def query(turn: Turn, kind: str, model_rewrite: str | None = None) -> str:
    """The text sent to the retriever for a turn, for one of QUERIES."""
    if kind == "follow-up alone":
        return turn.question
    if kind == "history + follow-up":  # what a system without rewriting can do: search with everything said
        return " ".join([*(h["question"] for h in turn.history), turn.question])
    if kind == "model rewrite":
        if model_rewrite is None:
            raise ValueError("the model rewrite is needed for this query kind")
        return model_rewrite
    if kind == "gold rewrite":
        return turn.rewrite
    raise ValueError(f"unknown query kind '{kind}': choose {', '.join(QUERIES)}")


def _conversation(history: list[tuple[str, str]], question: str) -> str:
    lines = [f"User: {q}\nAssistant: {a}" for q, a in history]
    return "\n".join([*lines, f"User: {question}"])


def rewrite_messages(history: list[tuple[str, str]], question: str,
                     shots: list[tuple[list[tuple[str, str]], str, str]] = SHOTS) -> list[dict]:
    """Chat messages asking for a standalone rewrite of `question`: the instruction, each worked example as a
    user/assistant pair, then the conversation (previous questions and answers) ending with `question`."""
    messages = [{"role": "system", "content": SYSTEM}]
    for shot_history, shot_question, shot_rewrite in shots:
        messages += [{"role": "user", "content": f"Conversation:\n{_conversation(shot_history, shot_question)}\n\n"
                                                 "Standalone question:"},
                     {"role": "assistant", "content": shot_rewrite}]
    messages.append({"role": "user", "content": f"Conversation:\n{_conversation(history, question)}\n\n"
                                                "Standalone question:"})
    return messages


def clean_rewrite(text: str, fallback: str) -> str:
    """The first non-empty line of a model's reply, without a 'Standalone question:' label or quotes; the
    original question if nothing is left (so a broken rewrite never leaves the retriever with an empty query)."""
    for line in text.splitlines():
        line = re.sub(r"^\s*(standalone question|question|rewritten question)\s*:\s*", "", line, flags=re.I)
        line = line.strip().strip("\"'`").strip()
        if line:
            return line
    return fallback


def rewrite(model, tokenizer, turns: list[Turn], max_new_tokens: int = 40, batch_size: int = 8,
            shots=SHOTS) -> list[str]:
    """The model's standalone rewrite of each turn (greedy); history answers are the gold ones of the file."""
    conversations = [rewrite_messages([(h["question"], h["answer"]) for h in t.history], t.question, shots)
                     for t in turns]
    replies = rag.generate(model, tokenizer, conversations, max_new_tokens, batch_size)
    return [clean_rewrite(r, t.question) for r, t in zip(replies, turns, strict=True)]


def norm(text: str) -> str:
    """Lower case, no quotes or markup stars, no articles (as applications/05_rag.ipynb scores answers)."""
    text = re.sub(r"[\"'`*]", "", text.lower())
    return " ".join(w for w in text.split() if w not in ("a", "an", "the"))


def contains(answer: str, gold: str) -> bool:
    """Whether the normalised gold answer occurs in the normalised answer as whole words."""
    return re.search(r"(?<!\w)" + re.escape(norm(gold)) + r"(?!\w)", norm(answer)) is not None


# --- command line ---------------------------------------------------------------------------------------------

def _ask_command(args) -> None:
    turns = list(args.turns)
    if args.interactive:
        print("Type a question per line; an empty line ends the conversation.")
        for line in sys.stdin:
            if not line.strip():
                break
            turns.append(line.strip())
    if not turns or not all(t.strip() for t in turns):
        raise ConversationError("give at least one non-empty question (or --interactive)")
    if args.k < 1:
        raise ConversationError("--k must be at least 1")
    index = rag.Index.load(args.index)
    embedder = rag.Embedder(index.embedder) if args.retriever != "bm25" else None
    model = tokenizer = None
    if not (args.no_rewrite and args.no_generate):
        tokenizer = load_tokenizer(args.model)
        model = load_model(args.model, dtype=getattr(torch, args.dtype)).eval()
    history: list[tuple[str, str]] = []
    for n, question in enumerate(turns, 1):
        standalone = question
        if history and not args.no_rewrite:
            reply = rag.generate(model, tokenizer, [rewrite_messages(history, question)], 40)[0]
            standalone = clean_rewrite(reply, question)
        answer, sources = rag.ask(index, embedder, standalone, model if not args.no_generate else None, tokenizer,
                                  args.k, args.retriever, args.max_new_tokens)
        print(f"Turn {n}: {question}")
        if standalone != question:
            print(f"  standalone: {standalone}")
        for i, c in enumerate(sources, 1):
            print(f"  [{i}] {c.source}: {' '.join(c.text.split())[:100]}...")
        if answer is not None:
            print(f"  answer: {' '.join(answer.split())}")
        history.append((question, answer or ""))


def _check_command(args) -> None:
    docs = rag.load_corpus(args.corpus)
    conversations = load_conversations(args.file, docs)
    turns = follow_ups(conversations, include_first=True)
    print(f"{len(conversations)} conversations, {len(turns)} turns ({len(turns) - len(conversations)} follow-ups): "
          f"every turn has {', '.join(FIELDS)}; every evidence occurs in its {args.corpus} topic")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("ask", help="run a conversation: rewrite each follow-up, retrieve, answer")
    p.add_argument("index", help="a folder written by `rag.py index`")
    p.add_argument("turns", nargs="*", help="the questions of the conversation, in order")
    p.add_argument("--interactive", action="store_true", help="read further questions from standard input")
    p.add_argument("--k", type=int, default=3, help="chunks retrieved per turn (default 3)")
    p.add_argument("--retriever", choices=rag.METHODS, default="hybrid", help="dense, bm25 or hybrid (default)")
    p.add_argument("--model", default=SMOLLM2, help="chat model for rewrites and answers: short name, folder or Hub id")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    p.add_argument("--max-new-tokens", type=int, default=64, help="answer length limit")
    p.add_argument("--no-rewrite", action="store_true", help="retrieve with each question as typed")
    p.add_argument("--no-generate", action="store_true", help="print the sources only, no answers")
    p = sub.add_parser("check", help="validate a conversation file against a corpus")
    p.add_argument("file", nargs="?", default=str(DATA), help="JSON lines (default data/conversational_qa.jsonl)")
    p.add_argument("--corpus", default="python_docs", help="named data set whose topics the evidence comes from")
    args = parser.parse_args(argv)
    try:
        _ask_command(args) if args.command == "ask" else _check_command(args)
    except (RagError, ModelNotAvailable) as err:
        parser.exit(2, f"conversational.py: error: {' '.join(str(err).split())}\n")


if __name__ == "__main__":
    main()
