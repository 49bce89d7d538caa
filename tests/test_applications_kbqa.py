"""applications/kbqa.py: table extraction, the read-only guard, the gold questions, a tiny end-to-end run."""

import json
import sqlite3
import subprocess
import sys

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "applications"))
import kbqa  # noqa: E402

SCRIPT = str(ROOT / "applications" / "kbqa.py")
MODULE = '''"""A small module."""
import os


def copy(src, dst, /, size=16 * 1024, *more, follow=True, mode=0o777, **options) -> int:
    """Copy src to dst.

    More text.
    """
    return 0


async def fetch(url):
    pass


def copy(other):  # a second definition of the same name: the first one wins
    pass


class Box:
    def method(self, x=1):  # methods are not module-level functions
        pass
'''


def run(*args, timeout=600):  # generous: the CPU may be shared
    return subprocess.run([sys.executable, SCRIPT, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def small_db(tmp_path_factory):
    folder = tmp_path_factory.mktemp("src")
    (folder / "pkg").mkdir()
    (folder / "pkg" / "__init__.py").write_text(MODULE)
    (folder / "pkg" / "util.py").write_text("def helper(a, b=None):\n    return a\n")
    db = folder / "kb.sqlite"
    out = run("build", "--source", str(folder), "--out", str(db))
    assert out.returncode == 0, out.stderr
    return db


def test_extraction_of_one_module():
    functions, parameters = kbqa.extract_functions("pkg", MODULE)
    assert [f["function"] for f in functions] == ["copy", "fetch"]
    copy = functions[0]
    assert copy["n_params"] == 7 and copy["returns"] == "int" and copy["doc"] == "Copy src to dst."
    params = [(p["name"], p["kind"], p["default_value"]) for p in parameters if p["function"] == "copy"]
    assert params == [("src", "positional-only", None), ("dst", "positional-only", None),
                      ("size", "positional-or-keyword", "16 * 1024"), ("more", "var-positional", None),
                      ("follow", "keyword-only", "True"), ("mode", "keyword-only", "0o777"),  # as written, not 511
                      ("options", "var-keyword", None)]
    assert [p["position"] for p in parameters if p["function"] == "copy"] == list(range(7))


def test_build_names_packages_and_queries_run(small_db):
    out = run("sql", str(small_db), "SELECT module, function, n_params FROM functions ORDER BY module, function")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[1:] == ["pkg\tcopy\t7", "pkg\tfetch\t1", "pkg.util\thelper\t2"]


@pytest.mark.parametrize("sql", ["DROP TABLE functions", "UPDATE functions SET n_params = 0",
                                 "DELETE FROM parameters", "INSERT INTO functions VALUES ('a','b',0,NULL,NULL,1)",
                                 "ATTACH DATABASE 'other.sqlite' AS other", "PRAGMA writable_schema = ON"])
def test_read_only_guard_refuses_writes(small_db, sql):
    conn = kbqa.connect_readonly(small_db)
    result = kbqa.run_query(conn, sql)
    assert result.value is None and "not authorized" in result.error
    conn.close()
    with sqlite3.connect(small_db) as plain:  # the table is intact
        assert plain.execute("SELECT count(*) FROM functions").fetchone()[0] == 3


def test_guard_also_holds_without_the_authorizer_and_stops_runaway_queries(small_db):
    conn = kbqa.connect_readonly(small_db, max_steps=10_000)
    conn.set_authorizer(None)  # mode=ro alone still refuses to write
    assert "readonly" in kbqa.run_query(conn, "DELETE FROM functions").error
    cross = "SELECT count(*) FROM parameters a, parameters b, parameters c, parameters d, parameters e"
    assert kbqa.run_query(conn, cross).error == "OperationalError: interrupted"
    assert kbqa.run_query(conn, "SELECT count(*) FROM functions").value == "3"  # the budget resets per query


def test_cli_refuses_a_write_and_bad_input(small_db, tmp_path):
    out = run("sql", str(small_db), "DROP TABLE functions")
    assert out.returncode == 2 and "not authorized" in out.stderr and "Traceback" not in out.stderr
    out = run("ask", str(tmp_path / "missing.sqlite"), "Which module defines the function copy?")
    assert out.returncode == 2 and "kbqa.py build" in out.stderr
    out = run("build", "--source", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.sqlite"))
    assert out.returncode == 2 and "no folder" in out.stderr


def test_lookup_to_sql_and_parsers():
    assert kbqa.parse_lookup('Sure: {"function": "a.b", "field": "count"} done') == {"function": "a.b", "field": "count"}
    assert kbqa.parse_lookup("no json here") is None
    assert kbqa.parse_sql("```sql\nSELECT 1;\n```") == "SELECT 1"
    with pytest.raises(kbqa.KbError):
        kbqa.lookup_to_sql({"function": "b", "field": "count"})  # count needs module.name
    with pytest.raises(kbqa.KbError):
        kbqa.lookup_to_sql({"function": "a.b", "field": "drop"})


def test_gold_answers_match_the_stdlib_table(tmp_path):
    counts = kbqa.build_table(kbqa.stdlib_sources(), tmp_path / "stdlib.sqlite")
    assert counts["functions"] > 2000 and counts["unparsable"] == 0
    conn = kbqa.connect_readonly(tmp_path / "stdlib.sqlite")
    questions = kbqa.load_questions()
    assert len(questions) == 40 and len({q["id"] for q in questions}) == 40
    for q in questions:
        rows = conn.execute(q["sql"]).fetchall()
        assert len(rows) == 1 and str(rows[0][0]) == q["answer"], q["id"]  # one answer, the gold one
        lookup = {"function": q["function"] if q["type"] == "module" else f"{q['module']}.{q['function']}",
                  "field": q["type"], "parameter": q["parameter"]}
        assert kbqa.same_value(kbqa.run_query(conn, *kbqa.lookup_to_sql(lookup)).value, q["answer"]), q["id"]


def test_end_to_end_with_a_tiny_model(small_db, tmp_path):
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"question": "How many parameters does pkg.copy take?", "answer": "7"}) + "\n")
    out = run("eval", str(small_db), "--questions", str(questions), "--model", "tiny-llama", "--max-new-tokens", "4")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["questions"] == 1 and result["queries_ran"] == 0 and result["accuracy"] == 0.0  # random model
    out = run("ask", str(small_db), "Which module defines the function helper?", "--model", "tiny-llama",
              "--mode", "sql", "--max-new-tokens", "4")
    assert out.returncode == 0 and "Model wrote:" in out.stdout and "No answer:" in out.stdout
