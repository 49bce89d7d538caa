"""applications/multihop.py: decomposition parsing, bridge templates, the hop chain, evidence recall, scoring."""

import sys
from functools import partial

import pytest

from tests.conftest import ROOT, run_script

sys.path.insert(0, str(ROOT / "applications"))
import multihop as mh  # noqa: E402
from rag import Chunk  # noqa: E402

SCRIPT = ROOT / "applications" / "multihop.py"
CHUNKS = [Chunk("del", 0, 40, "If the name is unbound, a NameError exception will be raised."),
          Chunk("naming", 0, 40, "UnboundLocalError is a subclass of NameError."),
          Chunk("pass", 0, 30, "pass is a null operation.")]


def test_parse_decomposition_reads_two_numbered_lines_and_falls_back():
    subs, ok = mh.parse_decomposition("1. Which exception does del raise?\n2) Which subclass of #1 is raised?", "Q?")
    assert ok and subs == ["Which exception does del raise?", "Which subclass of #1 is raised?"]
    subs, ok = mh.parse_decomposition("I think the answer is NameError.", "Q?")
    assert not ok and subs == ["Q?", "Q?"]
    subs, ok = mh.parse_decomposition("1. Same?\n2. Same?", "Q?")
    assert not ok  # two identical lines are no decomposition


@pytest.mark.parametrize("answer, question, expected", [
    ("NameError", "Which subclass of NameError is raised?", "Which subclass of #1 is raised?"),
    ("a generator function", "What does return in a generator function raise?", "What does return in #1 raise?"),
    ("__exit__()", "What are the arguments of __exit__() with no exception?", "What are the arguments of #1 with no exception?"),
    ("yes", "Does continue run the finally clause?", None),
    ("5", "What is ~x for x = 55?", None),  # whole words only
])
def test_bridge_template(answer, question, expected):
    assert mh.bridge_template(answer, question) == expected


def test_chain_fills_the_first_answer_into_the_second_hop_with_a_fake_generator():
    calls = []

    def search(queries, k):
        calls.append(("search", list(queries), k))
        return [[0, 2] if "del" in q else [1, 2] for q in queries]

    def generate(conversations):
        calls.append(("generate", len(conversations)))
        out = []
        for conv in conversations:
            user = conv[-1]["content"]
            if user.startswith("Facts:"):
                out.append("Answer: UnboundLocalError.\nmore text")
            elif "[1] (del)" in user:
                out.append("NameError.")
            else:
                out.append("UnboundLocalError" if "subclass of NameError" in user else "unknown")
        return out

    traces = mh.run_chains([["Which exception does del raise?", "Which subclass of #1 is raised?"]], ["Full?"],
                           search, generate, CHUNKS, k=2)
    t = traces[0]
    assert t.asked == ["Which exception does del raise?", "Which subclass of NameError is raised?"]
    assert t.hop_answers == ["NameError", "UnboundLocalError"] and t.final == "UnboundLocalError"
    assert t.retrieved == [[0, 2], [1, 2]]
    assert [c[0] for c in calls] == ["search", "generate", "search", "generate", "generate"]
    assert all(c[2] == 2 for c in calls if c[0] == "search")


def test_evidence_recall_pools_hops_and_counts_both():
    gold = [[{0}, {1}], [{0}, {5}]]
    assert mh.evidence_recall([[0, 1, 2], [0, 3]], gold) == {"hops found": 0.75, "both found": 0.5}
    with pytest.raises(ValueError):
        mh.evidence_recall([[0]], gold)


def test_evidence_spans_locate_the_evidence():
    docs = {"del": "x. If the name is unbound, boom.", "naming": "abc"}
    row = {"id": "t", "hops": [{"topic": "del", "evidence": "If the name"}, {"topic": "naming", "evidence": "b"}]}
    assert mh.evidence_spans(docs, row) == [("del", 3, 14), ("naming", 1, 2)]
    with pytest.raises(ValueError, match="not found"):
        mh.evidence_spans(docs, {"hops": [{"topic": "naming", "evidence": "zzz"}]})


@pytest.mark.parametrize("prediction, gold, ok", [
    ("It raises `UnboundLocalError`.", "UnboundLocalError", True),
    ("__call__()", "__call__", True),
    ("The else suite", "the else suite", True),
    ("-60", "-6", False),
    ("Yes, both.", "yes", True),
    ("No. But yes in Python 2.", "yes", False),
    ("NameError", "UnboundLocalError", False),
])
def test_is_correct(prediction, gold, ok):
    assert mh.is_correct(prediction, gold) is ok


def test_short_answer_keeps_the_first_line():
    assert mh.short_answer("Answer: NameError.\nBecause...") == "NameError"
    assert mh.short_answer("\n  a generator function\n") == "a generator function"
    assert mh.short_answer("The answer to the question is yes.") == "yes"


run = partial(run_script, SCRIPT, timeout=240)


def test_cli_answers_hop_by_hop_over_a_folder(tmp_path):
    for c in CHUNKS:
        (tmp_path / f"{c.source}.txt").write_text(c.text)
    out = run("--folder", tmp_path, "--question", "Deleting an unbound name raises an exception. Which subclass of "
              "it is raised for a local variable read before assignment?", "--k", 1, "--max-new-tokens", 16)
    assert out.returncode == 0, out.stderr
    assert "Hop 1:" in out.stdout and "Hop 2:" in out.stdout and "Answer:" in out.stdout


def test_cli_rejects_bad_input_in_one_line(tmp_path):
    out = run("--folder", tmp_path / "missing", "--question", "Why?")
    assert out.returncode == 2 and "no folder" in out.stderr and "Traceback" not in out.stderr
    out = run("--question", "Why?", "--k", 0)
    assert out.returncode == 2 and "--k must be at least 1" in out.stderr


def test_two_dataset_questions_end_to_end():
    import rag

    from common import load_dataset, load_model, load_tokenizer

    rows = list(load_dataset("multihop_qa")["test"].select(range(2)))
    docs = rag.load_corpus("python_docs")
    docs = {h["topic"]: docs[h["topic"]] for r in rows for h in r["hops"]}
    embedder = rag.Embedder("minilm-l6")
    index = rag.build_index(docs, embedder, 400, 100)
    gold = [[rag.gold_chunks(index.chunks, *s) for s in mh.evidence_spans(docs, r)] for r in rows]
    tokenizer, model = load_tokenizer("smollm2-135m-instruct"), load_model("smollm2-135m-instruct").eval()
    subs = [[r["hops"][0]["question"], mh.bridge_template(r["hops"][0]["answer"], r["hops"][1]["question"])]
            for r in rows]
    assert all(mh.SLOT in s[1] for s in subs)  # both are bridges
    traces = mh.run_chains(subs, [r["question"] for r in rows],
                           lambda q, k: rag.retrieve(index, embedder, q, k, "hybrid"),
                           lambda c: rag.generate(model, tokenizer, c, max_new_tokens=8), index.chunks, k=2)
    for t, s in zip(traces, subs, strict=True):
        assert len(t.retrieved) == 2 and all(len(r) == 2 for r in t.retrieved)
        assert mh.SLOT not in t.asked[1] and t.asked[1] == mh.fill(s[1], t.hop_answers[0])
    recall = mh.evidence_recall([t.retrieved[0] + t.retrieved[1] for t in traces], gold)
    assert recall["hops found"] >= 0.5  # 4 topics, 2 chunks per hop: most evidence is found
