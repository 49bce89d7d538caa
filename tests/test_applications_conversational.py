"""applications/conversational.py and data/conversational_qa.jsonl: data checks, the rewrite prompt, queries,
recall, and a conversation run end to end from the terminal."""

import json
import subprocess
import sys
from functools import partial

import pytest

from tests.conftest import ROOT, run_script

sys.path.insert(0, str(ROOT / "applications"))
import conversational as cv  # noqa: E402
import rag  # noqa: E402

SCRIPT = ROOT / "applications" / "conversational.py"
DOCS = {
    "volcanoes.txt": "Mount Etna is an active volcano on the east coast of Sicily. Lava flows from its craters have "
                     "reached the town of Catania several times, most destructively in 1669.",
    "baking.txt": "A sourdough starter is a mix of flour and water fermented by wild yeast and lactic acid bacteria. "
                  "Feed it every day and keep it at room temperature.",
}


run = partial(run_script, SCRIPT, timeout=120)


def test_data_file_turns_are_complete_and_evidence_is_verbatim():
    docs = rag.load_corpus("python_docs")
    conversations = cv.load_conversations(cv.DATA, docs)  # raises on a missing field or a wrong evidence
    assert len(conversations) == 30 and len({c["id"] for c in conversations}) == 30
    for c in conversations:
        assert 2 <= len(c["turns"]) <= 3
        first, *later = c["turns"]
        assert first["rewrite"] == first["question"]  # the first question stands alone
        for t in later:
            assert t["rewrite"] != t["question"], "a follow-up must need its history"
        for t in c["turns"]:
            assert t["evidence"] in docs[t["topic"]]
            assert cv.contains(t["evidence"], t["answer"]), f"answer {t['answer']!r} not in its evidence"
    assert len(cv.follow_ups(conversations)) == 37


def test_bad_files_are_refused_with_the_line(tmp_path):
    good = {"question": "q?", "rewrite": "q?", "answer": "a", "topic": "volcanoes.txt", "evidence": "Sicily"}
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"turns": [good, {**good, "answer": ""}]}) + "\n")
    with pytest.raises(cv.ConversationError, match="line 1, turn 2: missing or empty answer"):
        cv.load_conversations(path)
    path.write_text(json.dumps({"turns": [{**good, "evidence": "Vesuvius"}]}) + "\n")
    with pytest.raises(cv.ConversationError, match="not a substring of topic 'volcanoes.txt'"):
        cv.load_conversations(path, DOCS)
    assert cv.load_conversations(path)[0]["turns"][0]["evidence"] == "Vesuvius"  # no docs: no evidence check


def test_rewrite_prompt_has_instruction_examples_then_the_conversation():
    history = [("What does del do to a name?", "It removes the binding.")]
    messages = cv.rewrite_messages(history, "And if it is unbound?")
    assert [m["role"] for m in messages] == ["system"] + ["user", "assistant"] * len(cv.SHOTS) + ["user"]
    assert messages[2]["content"] == cv.SHOTS[0][2]  # each example's answer is its standalone rewrite
    last = messages[-1]["content"]
    assert last.index("User: What does del do to a name?") < last.index("Assistant: It removes the binding.") \
        < last.index("User: And if it is unbound?")
    assert last.endswith("Standalone question:")
    assert len(cv.rewrite_messages(history, "And if it is unbound?", shots=[])) == 2  # zero-shot


def test_clean_rewrite_and_queries():
    assert cv.clean_rewrite("\n Standalone question: \"What does del raise?\"\nMore text", "q") == "What does del raise?"
    assert cv.clean_rewrite("   \n", "And if it is unbound?") == "And if it is unbound?"
    turn = cv.Turn("c1", 2, [{"question": "A?"}, {"question": "B?"}], "C?", rewrite="Full C?")
    assert cv.query(turn, "follow-up alone") == "C?"
    assert cv.query(turn, "history + follow-up") == "A? B? C?"
    assert cv.query(turn, "model rewrite", "Model C?") == "Model C?"
    assert cv.query(turn, "gold rewrite") == "Full C?"
    with pytest.raises(ValueError):
        cv.query(turn, "model rewrite")


def test_recall_rises_when_the_follow_up_is_rewritten():
    # The follow-up alone matches the baking text ("temperature"); its rewrite names Etna: BM25 finds the evidence.
    chunks = rag.chunk_documents(DOCS, 80, 20)
    bm25 = rag.BM25([c.text for c in chunks])
    span = cv.evidence_span(DOCS, "volcanoes.txt", "reached the town of Catania")
    gold = [rag.gold_chunks(chunks, *span)]
    assert gold[0]
    ranked = {q: [int(i) for i in (-bm25.scores(q)).argsort(kind="stable")]
              for q in ("And at what temperature was that?", "When did lava from Mount Etna reach the town of Catania?")}
    recall = {q: rag.recall_at_k([r], gold, (1,))[1] for q, r in ranked.items()}
    assert recall == {"And at what temperature was that?": 0.0,
                      "When did lava from Mount Etna reach the town of Catania?": 1.0}


def test_contains_is_whole_word_and_normalised():
    assert cv.contains('It raises a "KeyError".', "KeyError")
    assert not cv.contains("objects", "object")
    assert cv.contains("The result is -1.", "-1") and not cv.contains("It is 1.", "-1")


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("docs")
    for name, text in DOCS.items():
        (folder / name).write_text(text)
    out = tmp_path_factory.mktemp("index")
    args = ["index", "--folder", folder, "--out", out, "--chunk-size", 120, "--overlap", 20]
    result = subprocess.run([sys.executable, str(ROOT / "applications" / "rag.py"), *map(str, args)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return out


def test_ask_command_runs_a_conversation_turn_by_turn(index_dir):
    # A random tiny model keeps the test fast: the pipeline is tested, not the quality of its rewrites.
    result = run("ask", index_dir, "Which town has been hit by lava from Etna?", "When was the worst time?",
                 "--model", "tiny-llama", "--k", 1, "--max-new-tokens", 4)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Turn 1: Which town" in out and "Turn 2: When was the worst time?" in out
    assert out.count("answer:") == 2 and out.count("[1] ") == 2 and "[2]" not in out
    assert "[1] volcanoes.txt" in out.split("Turn 2")[0]


def test_ask_without_rewrite_or_generation_needs_no_chat_model(index_dir):
    result = run("ask", index_dir, "What feeds a sourdough starter?", "How often?", "--no-rewrite", "--no-generate",
                 "--model", "no-such/model", "--k", 1)
    assert result.returncode == 0, result.stderr
    assert "standalone:" not in result.stdout and "answer:" not in result.stdout
    assert result.stdout.count("[1] ") == 2 and "[1] baking.txt" in result.stdout.split("Turn 2")[0]


def test_check_and_clear_errors(tmp_path):
    result = run("check")
    assert result.returncode == 0, result.stderr
    assert "30 conversations, 67 turns (37 follow-ups)" in result.stdout
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"turns": [{"question": "q"}]}\n')
    for args, message in [(("check", bad), "line 1, turn 1: missing or empty rewrite"),
                          (("check", tmp_path / "none.jsonl"), "no such file"),
                          (("ask", tmp_path, "q?", "--no-generate", "--no-rewrite"), "no index in"),
                          (("ask", tmp_path), "at least one non-empty question")]:
        result = run(*args)
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
