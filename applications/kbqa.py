"""Knowledge-based QA: answer questions from a table of functions extracted from Python source, via generated queries.

`build` parses Python source with `ast` (the standard library by default, or any folder of .py files) and writes
a SQLite table of every module-level function: its module, name, number of parameters, return annotation and
first docstring line, and a second table of its parameters (position, name, kind, default as written). `ask`
has a chat model turn a question into a query, runs it read-only and prints the answer. Two query styles:
`lookup` (the model writes a small JSON object {function, field, parameter} and code turns it into SQL with
placeholders) and `sql` (the model writes the SQL itself, few-shot, from the schema). Every query runs on a
connection opened with `mode=ro`, an authorizer that allows only reading, and a step budget, so a generated
DROP, UPDATE, ATTACH or runaway join is refused, not executed. `eval` scores a mode on data/kb_questions.jsonl.

Examples:
  python applications/kbqa.py build --out build/kbqa/stdlib.sqlite         # the standard library: ~2,900 functions
  python applications/kbqa.py ask build/kbqa/stdlib.sqlite "What is the default value of the parameter width of textwrap.wrap?"
  python applications/kbqa.py ask build/kbqa/stdlib.sqlite "Which module defines the function nlargest?" --mode sql
  python applications/kbqa.py sql build/kbqa/stdlib.sqlite "SELECT module, function, n_params FROM functions ORDER BY n_params DESC LIMIT 5"
  python applications/kbqa.py eval build/kbqa/stdlib.sqlite --mode lookup --limit 10
  python applications/kbqa.py build --source my_package/ --out build/kbqa/mine.sqlite   # your own code
  python applications/kbqa.py ask build/kbqa/mine.sqlite "How many parameters does mymod.load take?" \\
      --model HuggingFaceTB/SmolLM2-360M-Instruct

Python API (applications/06_knowledge_qa.ipynb uses it):
  extract_functions(module, source) -> (functions, parameters)   stdlib_sources() / read_source_folder(folder)
  build_table(sources, path) -> counts                          connect_readonly(path) / run_query(conn, sql, params)
  SCHEMA, sql_messages(q) / lookup_messages(q) / closed_book_messages(q)
  parse_sql(text) / parse_lookup(text) / lookup_to_sql(lookup)  answer(model, tokenizer, conn, questions, mode)
  load_questions(path), same_value(value, gold), contains(text, gold)
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "applications"))
from common import SMOLLM2, ModelNotAvailable, load_dataset, load_model, load_tokenizer, read_jsonl  # noqa: E402

QUESTIONS = ROOT / "data" / "kb_questions.jsonl"
MODES = ("lookup", "sql")
FIELDS = ("default", "count", "module", "first")  # what a lookup can ask for
MAX_STEPS = 2_000_000  # SQLite virtual-machine steps per query before it is interrupted


class KbError(ValueError):
    """Bad input (source folder, database, question, settings): reported as one line, exit code 2."""


# --- the knowledge table -------------------------------------------------------------------------------------

DDL = """
CREATE TABLE functions (
  module TEXT NOT NULL, function TEXT NOT NULL, n_params INTEGER NOT NULL, returns TEXT, doc TEXT,
  line INTEGER NOT NULL, PRIMARY KEY (module, function));
CREATE TABLE parameters (
  module TEXT NOT NULL, function TEXT NOT NULL, position INTEGER NOT NULL, name TEXT NOT NULL,
  kind TEXT NOT NULL, default_value TEXT, PRIMARY KEY (module, function, position));
"""


def _segment(lines: list[str], node: ast.AST) -> str:
    """The node's text as written (`0o777`, not 511); col offsets are UTF-8 byte offsets, per line."""
    if node.lineno != node.end_lineno:
        return ast.unparse(node)  # a default over several lines: rare, the normalised form is fine
    line = lines[node.lineno - 1].encode("utf-8")
    return line[node.col_offset:node.end_col_offset].decode("utf-8")


def extract_functions(module: str, source: str) -> tuple[list[dict], list[dict]]:
    """Rows for every function defined at the top level of one module (a name defined twice: the first one).

    A parameter's kind is positional-only, positional-or-keyword, var-positional (*args), keyword-only or
    var-keyword (**kwargs); n_params counts them all. Raises SyntaxError for source that does not parse."""
    tree = ast.parse(source)
    lines = source.splitlines()
    functions, parameters, seen = [], [], set()
    for node in tree.body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or node.name in seen:
            continue
        seen.add(node.name)
        a = node.args
        positional = a.posonlyargs + a.args
        defaults = [None] * (len(positional) - len(a.defaults)) + a.defaults  # defaults fill the last ones
        params = [(p, "positional-only" if i < len(a.posonlyargs) else "positional-or-keyword", d)
                  for i, (p, d) in enumerate(zip(positional, defaults, strict=True))]
        if a.vararg:
            params.append((a.vararg, "var-positional", None))
        params += [(p, "keyword-only", d) for p, d in zip(a.kwonlyargs, a.kw_defaults, strict=True)]
        if a.kwarg:
            params.append((a.kwarg, "var-keyword", None))
        doc = ast.get_docstring(node)
        functions.append({"module": module, "function": node.name, "n_params": len(params),
                          "returns": ast.unparse(node.returns) if node.returns else None,
                          "doc": doc.strip().splitlines()[0] if doc and doc.strip() else None, "line": node.lineno})
        parameters += [{"module": module, "function": node.name, "position": i, "name": p.arg, "kind": kind,
                        "default_value": _segment(lines, d) if d is not None else None}
                       for i, (p, kind, d) in enumerate(params)]
    return functions, parameters


def stdlib_sources() -> dict[str, str]:
    """The standard library's source, every split of common's `python_code` set: {module: text}."""
    ds = load_dataset("python_code")
    # A package's __init__.py is the package itself: json.__init__ -> json (as `import json` sees it).
    return {m.removesuffix(".__init__"): t for split in ds.values()
            for m, t in zip(split["module"], split["text"], strict=True)}


def read_source_folder(folder: str | Path) -> dict[str, str]:
    """Every .py file under `folder`, keyed by its dotted module name relative to the folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise KbError(f"no folder at '{folder}'")
    files = sorted(folder.rglob("*.py"))
    if not files:
        raise KbError(f"no .py files in '{folder}'")
    out = {}
    for f in files:
        parts = f.relative_to(folder).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts) or folder.name
        out[name] = f.read_text(encoding="utf-8", errors="replace")
    return out


def build_table(sources: dict[str, str], path: str | Path) -> dict[str, int]:
    """Parse every module, write both tables to a new SQLite file at `path`; return counts."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    functions, parameters, skipped = [], [], 0
    for module, source in sources.items():
        try:
            f, p = extract_functions(module, source)
        except (SyntaxError, ValueError):  # ValueError: null bytes in the source
            skipped += 1
            continue
        functions += f
        parameters += p
    with sqlite3.connect(path) as conn:
        conn.executescript(DDL)
        conn.executemany("INSERT INTO functions VALUES (:module, :function, :n_params, :returns, :doc, :line)",
                         functions)
        conn.executemany("INSERT INTO parameters VALUES (:module, :function, :position, :name, :kind, "
                         ":default_value)", parameters)
    conn.close()
    return {"modules": len(sources) - skipped, "unparsable": skipped, "functions": len(functions),
            "parameters": len(parameters)}


# --- read-only queries ---------------------------------------------------------------------------------------

_ALLOWED = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}


def _authorize(action: int, *_args) -> int:
    # Called by SQLite for every action while a statement is compiled: only reading is allowed, so
    # INSERT, UPDATE, DELETE, DROP, CREATE, ATTACH and PRAGMA fail with "not authorized" before they run.
    return sqlite3.SQLITE_OK if action in _ALLOWED else sqlite3.SQLITE_DENY


class ReadOnlyConnection(sqlite3.Connection):
    """A connection with a per-query step budget (see connect_readonly)."""

    max_steps = MAX_STEPS
    steps = 0

    def _budget(self) -> int:
        # Runs every 1,000 virtual-machine steps; a non-zero return interrupts the query.
        self.steps += 1000
        return int(self.steps > self.max_steps)

    def reset_budget(self) -> None:
        self.steps = 0


def connect_readonly(path: str | Path, max_steps: int = MAX_STEPS) -> ReadOnlyConnection:
    """Open the table read-only three ways: the file in `mode=ro`, a SELECT-only authorizer, a step budget."""
    path = Path(path)
    if not path.is_file():
        raise KbError(f"no database at '{path}': build one with `kbqa.py build --out {path}`")
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, factory=ReadOnlyConnection)
    conn.set_authorizer(_authorize)
    conn.max_steps = max_steps
    conn.set_progress_handler(conn._budget, 1000)
    return conn


@dataclass
class QueryResult:
    """The first column of the first row (the answer), how many rows came back, or why the query failed."""

    value: str | None
    rows: int
    error: str | None


def run_query(conn: sqlite3.Connection, sql: str, params: tuple | dict = ()) -> QueryResult:
    """Run one statement; every failure (syntax, unknown column, refused write, budget) becomes `error`."""
    if isinstance(conn, ReadOnlyConnection):
        conn.reset_budget()
    try:
        rows = conn.execute(sql, params).fetchmany(1000)
    except (sqlite3.Error, sqlite3.Warning, ValueError) as err:  # Warning: more than one statement
        return QueryResult(None, 0, f"{type(err).__name__}: {err}")
    if not rows:
        return QueryResult(None, 0, "no row")
    return QueryResult(None if rows[0][0] is None else str(rows[0][0]), len(rows), None)


# --- questions and prompts -----------------------------------------------------------------------------------

SCHEMA = """Table functions(module, function, n_params, returns, doc): one row per function of a Python module.
Table parameters(module, function, position, name, kind, default_value): one row per parameter; position 0 is
the first; default_value is the default as written in the source, NULL if none."""

# Few-shot examples: two per kind of question, on functions that are not in data/kb_questions.jsonl.
# A lookup names its field first (the model picks one of four words before it copies names), then the names in the
# order the question gives them ("the parameter width of pprint.pformat").
SHOTS = [
    ("What is the default value of the parameter width of pprint.pformat?",
     "SELECT default_value FROM parameters WHERE module = 'pprint' AND function = 'pformat' AND name = 'width'",
     {"field": "default", "parameter": "width", "function": "pprint.pformat"}),
    ("How many parameters does colorsys.hls_to_rgb take?",
     "SELECT n_params FROM functions WHERE module = 'colorsys' AND function = 'hls_to_rgb'",
     {"field": "count", "function": "colorsys.hls_to_rgb"}),
    ("Which module defines the function getfqdn?",
     "SELECT module FROM functions WHERE function = 'getfqdn'",
     {"field": "module", "function": "getfqdn"}),
    ("What is the name of the first parameter of pprint.saferepr?",
     "SELECT name FROM parameters WHERE module = 'pprint' AND function = 'saferepr' AND position = 0",
     {"field": "first", "function": "pprint.saferepr"}),
    ("What is the default value of the parameter dir of tempfile.mkstemp?",
     "SELECT default_value FROM parameters WHERE module = 'tempfile' AND function = 'mkstemp' AND name = 'dir'",
     {"field": "default", "parameter": "dir", "function": "tempfile.mkstemp"}),
    ("How many parameters does calendar.isleap take?",
     "SELECT n_params FROM functions WHERE module = 'calendar' AND function = 'isleap'",
     {"field": "count", "function": "calendar.isleap"}),
    ("Which module defines the function guess_type?",
     "SELECT module FROM functions WHERE function = 'guess_type'",
     {"field": "module", "function": "guess_type"}),
    ("What is the name of the first parameter of calendar.isleap?",
     "SELECT name FROM parameters WHERE module = 'calendar' AND function = 'isleap' AND position = 0",
     {"field": "first", "function": "calendar.isleap"}),
]
SQL_SYSTEM = f"You write one SQLite query that answers the question. Reply with the query only.\n{SCHEMA}"
LOOKUP_SYSTEM = ("You turn a question about a Python function into a JSON lookup. Reply with the JSON only. Keys: "
                 "field (one of: default, count, module, first), parameter (only for default), function "
                 "(module.name as in the question, or the bare name when the module is asked).")
CLOSED_BOOK = "Answer the question about the Python standard library with the value only."


def _few_shot(system: str, question: str, reply) -> list[dict]:
    messages = [{"role": "system", "content": system}]
    for q, sql, lookup in SHOTS:
        messages += [{"role": "user", "content": q}, {"role": "assistant", "content": reply(sql, lookup)}]
    return messages + [{"role": "user", "content": question}]


def sql_messages(question: str) -> list[dict]:
    """Chat messages: schema, eight question -> SQL examples, then the question."""
    return _few_shot(SQL_SYSTEM, question, lambda sql, _: sql)


def lookup_messages(question: str) -> list[dict]:
    """Chat messages: the lookup format, eight question -> JSON examples, then the question."""
    return _few_shot(LOOKUP_SYSTEM, question, lambda _, lookup: json.dumps(lookup))


def closed_book_messages(question: str) -> list[dict]:
    return [{"role": "system", "content": CLOSED_BOOK}, {"role": "user", "content": question}]


def parse_sql(text: str) -> str:
    """The query in a reply: code fences dropped, up to the first semicolon or blank line."""
    text = re.sub(r"```(?:sql|sqlite)?", "", text, flags=re.IGNORECASE).strip()
    return text.split(";")[0].split("\n\n")[0].strip()


def parse_lookup(text: str) -> dict | None:
    """The first JSON object in a reply, or None."""
    match = re.search(r"\{.*?\}", text, flags=re.DOTALL)
    try:
        obj = json.loads(match.group(0)) if match else None
    except json.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


def lookup_to_sql(lookup: dict) -> tuple[str, tuple]:
    """The SQL for a lookup, with placeholders: code writes the query, the model only fills values.
    Raises KbError for a lookup that does not fit the format."""
    field, name = lookup.get("field"), lookup.get("function")
    if field not in FIELDS:
        raise KbError(f"unknown field {field!r}")
    if not isinstance(name, str) or not name:
        raise KbError("no function name")
    if field == "module":
        return "SELECT module FROM functions WHERE function = ?", (name.rsplit(".", 1)[-1],)
    if "." not in name:
        raise KbError(f"function {name!r} has no module")
    module, function = name.rsplit(".", 1)
    if field == "count":
        return "SELECT n_params FROM functions WHERE module = ? AND function = ?", (module, function)
    if field == "first":
        return ("SELECT name FROM parameters WHERE module = ? AND function = ? AND position = 0",
                (module, function))
    parameter = lookup.get("parameter")
    if not isinstance(parameter, str) or not parameter:
        raise KbError("no parameter name")
    return ("SELECT default_value FROM parameters WHERE module = ? AND function = ? AND name = ?",
            (module, function, parameter))


def load_questions(path: str | Path = QUESTIONS) -> list[dict]:
    """Rows of a question file: id, type, question, answer (gold), sql (the gold query)."""
    return [row for _, row in read_jsonl(path, KbError)]


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[\"'`]", "", str(text).lower()).split())


def same_value(value: str | None, gold: str) -> bool:
    """A query's answer equals the gold one (case and quotes ignored: 'utf-8' == "utf-8")."""
    return value is not None and _norm(value) == _norm(gold)


def contains(text: str, gold: str) -> bool:
    """Free text contains the gold answer as whole words (case and quotes ignored): lenient to wordy answers."""
    return re.search(r"(?<![\w.])" + re.escape(_norm(gold)) + r"(?![\w])", _norm(text)) is not None


# --- answering -----------------------------------------------------------------------------------------------

def answer(model, tokenizer, conn: sqlite3.Connection, questions: list[str], mode: str = "lookup",
           max_new_tokens: int = 64, batch_size: int = 8) -> list[dict]:
    """For each question: the model's reply, the query it leads to, the value or the error."""
    if mode not in MODES:
        raise KbError(f"unknown mode '{mode}': choose {', '.join(MODES)}")
    # rag.generate: batched greedy chat generation (imported here: `build` and `sql` need no model)
    from rag import generate

    build = lookup_messages if mode == "lookup" else sql_messages
    replies = generate(model, tokenizer, [build(q) for q in questions], max_new_tokens, batch_size)
    out = []
    for reply in replies:
        if mode == "sql":
            sql, params = parse_sql(reply), ()
        else:
            lookup = parse_lookup(reply)
            try:
                sql, params = lookup_to_sql(lookup) if lookup is not None else ("", ())
            except KbError as err:
                out.append({"reply": reply, "sql": "", "value": None, "error": f"bad lookup: {err}"})
                continue
            if lookup is None:
                out.append({"reply": reply, "sql": "", "value": None, "error": "bad lookup: no JSON object"})
                continue
        result = run_query(conn, sql, params)
        shown = sql if not params else f"{sql}  {list(params)}"
        out.append({"reply": reply, "sql": shown, "value": result.value, "error": result.error})
    return out


# --- command line --------------------------------------------------------------------------------------------

def _load(args):
    tokenizer = load_tokenizer(args.model)
    return load_model(args.model, dtype=getattr(torch, args.dtype)).eval(), tokenizer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("build", help="extract the function table from Python source into SQLite")
    p.add_argument("--source", help="a folder of .py files (default: the standard library)")
    p.add_argument("--out", required=True, help="SQLite file to write (replaced if it exists)")
    for name, text in (("ask", "answer one question"), ("eval", "score a mode on a question file")):
        p = sub.add_parser(name, help=text)
        p.add_argument("db", help="a SQLite file written by `kbqa.py build`")
        if name == "ask":
            p.add_argument("question")
        else:
            p.add_argument("--questions", default=str(QUESTIONS.relative_to(ROOT)), help="JSON Lines with "
                           "question and answer (default: data/kb_questions.jsonl)")
            p.add_argument("--limit", type=int, help="only the first N questions")
        p.add_argument("--mode", choices=MODES, default="lookup", help="lookup (default) or sql")
        p.add_argument("--model", default=SMOLLM2, help="chat model: short name, local folder or Hub id")
        p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
        p.add_argument("--max-new-tokens", type=int, default=64)
    p = sub.add_parser("sql", help="run one read-only query and print the rows")
    p.add_argument("db")
    p.add_argument("query")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            sources = read_source_folder(args.source) if args.source else stdlib_sources()
            counts = build_table(sources, args.out)
            print(", ".join(f"{v:,} {k}" for k, v in counts.items()) + f" -> {args.out}")
        elif args.command == "sql":
            conn = connect_readonly(args.db)
            try:
                cur = conn.execute(args.query)
            except (sqlite3.Error, sqlite3.Warning) as err:
                raise KbError(f"query refused or failed: {err}") from err
            print("\t".join(d[0] for d in cur.description))
            for row in cur.fetchmany(50):
                print("\t".join(str(v) for v in row))
        elif args.command == "ask":
            if not args.question.strip():
                raise KbError("the question is empty")
            conn = connect_readonly(args.db)
            model, tokenizer = _load(args)
            r = answer(model, tokenizer, conn, [args.question], args.mode, args.max_new_tokens)[0]
            print(f"Model wrote: {r['reply']}\nQuery: {r['sql'] or '-'}")
            print(f"Answer: {r['value']}" if r["error"] is None else f"No answer: {r['error']}")
        else:
            if args.limit is not None and args.limit < 1:
                raise KbError("--limit must be at least 1")
            rows = load_questions(args.questions)[:args.limit]
            conn = connect_readonly(args.db)
            model, tokenizer = _load(args)
            results = answer(model, tokenizer, conn, [r["question"] for r in rows], args.mode, args.max_new_tokens)
            ran = sum(r["error"] is None for r in results)
            right = sum(same_value(r["value"], q["answer"]) for r, q in zip(results, rows, strict=True))
            print(json.dumps({"mode": args.mode, "questions": len(rows), "queries_ran": ran, "correct": right,
                              "accuracy": round(right / len(rows), 3)}))
    except (KbError, ModelNotAvailable) as err:
        parser.exit(2, f"kbqa.py: error: {' '.join(str(err).split())}\n")


if __name__ == "__main__":
    main()
