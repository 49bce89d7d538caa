"""applications/rag.py: index a folder, ask with sources, recall@k, chunking, clear errors."""

import json
import sys
from functools import partial

import pytest

from tests.conftest import ROOT, run_script

sys.path.insert(0, str(ROOT / "applications"))
import rag  # noqa: E402

SCRIPT = ROOT / "applications" / "rag.py"
DOCS = {
    "volcanoes.txt": "Mount Etna is an active volcano on the east coast of Sicily. Lava flows from its craters have "
                     "reached the town of Catania several times, most destructively in 1669.",
    "baking.md": "# Sourdough\nA sourdough starter is a mix of flour and water fermented by wild yeast and lactic "
                 "acid bacteria. Feed it every day and keep it at room temperature.",
    "notes/chess.txt": "In chess, castling moves the king two squares towards a rook, and the rook jumps over the "
                       "king. It is not allowed when the king is in check.",
}


run = partial(run_script, SCRIPT, timeout=120)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("docs")
    for name, text in DOCS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (root / "ignored.csv").write_text("not,a,document\n")
    return root


@pytest.fixture(scope="module")
def index_dir(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("index")
    result = run("index", "--folder", folder, "--out", out, "--chunk-size", 120, "--overlap", 20)
    assert result.returncode == 0, result.stderr
    assert "indexed 3 documents" in result.stdout
    return out


def test_index_folder_saves_chunks_with_offsets(index_dir, folder):
    meta = json.loads((index_dir / "meta.json").read_text())
    assert meta["embedder"] == "minilm-l6" and meta["dim"] == 384 and meta["chunk_size"] == 120
    chunks = [json.loads(line) for line in (index_dir / "chunks.jsonl").read_text().splitlines()]
    assert {c["source"] for c in chunks} == set(DOCS)  # the .csv was skipped, the sub-folder was read
    assert len(chunks) > len(DOCS)  # 120-character chunks cut the documents
    for c in chunks:
        assert (folder / c["source"]).read_text()[c["start"]:c["end"]] == c["text"]
        assert len(c["text"]) <= 120


@pytest.mark.parametrize("question, source", [
    ("Which town has been hit by lava from Etna?", "volcanoes.txt"),
    ("What feeds a sourdough starter and makes it ferment?", "baking.md"),
    ("Can you castle while your king is in check?", "notes/chess.txt"),
])
def test_ask_puts_the_right_file_first(index_dir, question, source):
    index, embedder = rag.Index.load(index_dir), rag.Embedder()
    for method in rag.METHODS:
        _, sources = rag.ask(index, embedder, question, k=2, method=method)
        assert sources[0].source == source, method


def test_ask_command_answers_with_numbered_sources(index_dir):
    # A random tiny model keeps the test fast: the pipeline is tested, not the answer's quality.
    result = run("ask", index_dir, "Which town has been hit by lava from Etna?", "--k", 2, "--model", "tiny-llama",
                 "--max-new-tokens", 4)
    assert result.returncode == 0, result.stderr
    assert "Answer:" in result.stdout
    sources = result.stdout.split("Sources:")[1]
    assert "[1] volcanoes.txt" in sources and "[2]" in sources and "[3]" not in sources


def test_recall_at_k_on_a_hand_made_case():
    retrieved = [[4, 1, 7], [2, 3, 9], [5, 6, 8], [0, 1, 2]]
    gold = [{1}, {9, 3}, {0}, {0}]  # hit at rank 2, hit at rank 2 (two gold chunks), miss, hit at rank 1
    assert rag.recall_at_k(retrieved, gold, (1, 2, 3)) == {1: 0.25, 2: 0.75, 3: 0.75}
    with pytest.raises(ValueError):
        rag.recall_at_k(retrieved, gold[:2])


def test_gold_chunks_must_hold_the_whole_answer_span():
    chunks = [rag.Chunk("a", 0, 10, ""), rag.Chunk("a", 8, 20, ""), rag.Chunk("b", 0, 20, "")]
    assert rag.gold_chunks(chunks, "a", 9, 10) == {0, 1}
    assert rag.gold_chunks(chunks, "a", 9, 12) == {1}  # chunk 0 ends inside the span
    assert rag.gold_chunks(chunks, "a", 5, 12) == set()  # cut by every chunk boundary


def test_chunks_cover_the_text_without_cutting_words():
    text = " ".join(f"word{i}" for i in range(400)) + "\n\n" + "tail " * 50
    spans = rag.chunk_text(text, size=200, overlap=40)
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    for (s1, e1), (s2, _) in zip(spans, spans[1:], strict=False):
        assert e1 - s1 <= 200 and s1 < s2 <= e1  # no gap, always progress
        assert text[s2 - 1].isspace() and text[e1].isspace()  # cuts fall on spaces
    assert sum(e - s for s, e in spans) > len(text)  # overlap repeats some text
    with pytest.raises(rag.RagError):
        rag.chunk_text(text, size=100, overlap=100)


def test_bm25_ranks_the_text_with_the_rare_word_first():
    bm25 = rag.BM25(["the cat sat on the mat", "the dog ate the bone", "the the the the"])
    scores = bm25.scores("Which dog?")
    assert scores.argmax() == 1 and scores[2] == 0


@pytest.mark.parametrize("setup, message", [
    (lambda d: None, "no folder at"),
    (lambda d: d.mkdir(), "no .txt or .md files"),
    (lambda d: (d.mkdir(), (d / "a.txt").write_bytes(b"caf\xe9 latin-1")), "not UTF-8 text"),
    (lambda d: (d.mkdir(), (d / "a.md").write_text("  \n")), "is empty"),
], ids=["missing", "no-documents", "not-utf8", "blank"])
def test_bad_folder_gives_one_line_error(tmp_path, setup, message):
    folder = tmp_path / "docs"
    setup(folder)
    result = run("index", "--folder", folder, "--out", tmp_path / "index")
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "index").exists()


def test_ask_refuses_a_missing_index_or_another_embedder(index_dir, tmp_path):
    result = run("ask", tmp_path, "anything", "--no-generate")
    assert result.returncode == 2 and "no index in" in result.stderr and "Traceback" not in result.stderr
    result = run("ask", index_dir, "anything", "--no-generate", "--embedder", "tiny-bert")
    assert result.returncode == 2 and "built with 'minilm-l6'" in result.stderr and "Traceback" not in result.stderr
