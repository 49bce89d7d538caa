"""Emails and content written to a brief, every output checked by code: facts, length, tone, format, placeholders.

A brief (one JSON object per line) says what to write and what the text must satisfy:
  {"id": "cb01", "kind": "email", "audience": "a client, Ms. Laura Chen", "purpose": "move the review meeting ...",
   "facts": ["Thursday 12 June", "10:30 AM", "Room 4B"],
   "constraints": {"subject": true, "greeting": "Ms. Chen", "signoff": "Daniel Kim", "tone": "formal",
                   "min_words": 40, "max_words": 120, "banned": ["ASAP"]}}
`kind` is email, product, event or social. Every text is checked for the brief's `facts` (each must appear after
normalisation, see `normalise`) and for placeholders such as "[Your Name]"; each key of `constraints` adds one check
(CONSTRAINTS lists them). A text passes when every check passes. A chat model writes one text per brief with one
of five prompt patterns (PATTERNS): plain, structured, checklist, fewshot, and revise (the structured draft, then
up to N rewrites that list the checks that failed).

Examples:
  python applications/content.py generate                                  # structured prompts, project briefs
  python applications/content.py generate --pattern checklist --revise 1 --out build/content.jsonl
  python applications/content.py generate --briefs my_briefs.jsonl --model HuggingFaceTB/SmolLM2-360M-Instruct
  python applications/content.py check --texts texts.jsonl                 # texts from another model or an API
  python applications/content.py check --briefs my_briefs.jsonl --texts my_texts.jsonl --out checked.jsonl

`check` reads JSONL rows {"id": ..., "text": ...} whose ids are brief ids and needs no model.

Python API (applications/04_email_content.ipynb uses it):
  load_briefs(path) -> [dict]             check_brief(row, where)         normalise(text) -> str
  check(brief, text) -> {constraint: (passed, detail)}                    passed(results) -> bool
  prompt_messages(brief, pattern) -> [chat messages]                      revision_messages(brief, draft, results)
  generate_texts(model, tokenizer, conversations, max_new_tokens, batch_size) -> [str]
  write(model, tokenizer, briefs, pattern, revise, ...) -> [record]       wilson(k, n) -> (low, high)
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import unicodedata
from pathlib import Path

import torch
from tqdm import tqdm
from transformers import LogitsProcessor, LogitsProcessorList

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from common import SMOLLM2, ModelNotAvailable, load_model, load_tokenizer, read_jsonl, wilson, write_jsonl  # noqa: E402

BRIEFS = ROOT / "data" / "content_briefs.jsonl"
KINDS = {"email": "email", "product": "product description", "event": "event announcement",
         "social": "social media post"}
TONES = ("formal", "friendly")
PATTERNS = ("plain", "structured", "checklist", "fewshot", "revise")
# constraint -> the JSON type its value must have (bool is checked before int: True is an int in Python)
CONSTRAINTS = {"subject": bool, "greeting": str, "signoff": str, "tone": str, "min_words": int, "max_words": int,
               "max_chars": int, "bullets": int, "max_hashtags": int, "banned": list}
ALWAYS = ("facts", "placeholders")  # checked for every brief
SLANG = ("hey", "gonna", "wanna", "gotta", "awesome", "cool", "guys", "stuff", "lol", "btw", "folks", "yay")
STIFF = ("to whom it may concern", "dear sir or madam", "yours faithfully", "herewith", "hereby", "pursuant to")
GREETINGS = ("dear", "hi", "hello", "hey", "good morning", "good afternoon", "good evening")


class ContentError(ValueError):
    """Bad input (brief file, texts file, settings): reported as one line, exit code 2."""


# --- briefs -----------------------------------------------------------------------------------------------------

def check_brief(row, where: str) -> dict:
    """Validate one brief row; raise ContentError naming `where` and the field at fault."""
    if not isinstance(row, dict):
        raise ContentError(f"{where}: expected a JSON object, got {type(row).__name__}")
    for field in ("id", "kind", "audience", "purpose"):
        if not isinstance(row.get(field), str) or not row[field].strip():
            raise ContentError(f"{where}: field '{field}' is missing or not a non-empty string")
    if row["kind"] not in KINDS:
        raise ContentError(f"{where}: field 'kind' is '{row['kind']}', expected one of {', '.join(KINDS)}")
    facts = row.get("facts")
    if not isinstance(facts, list) or not facts or not all(isinstance(f, str) and f.strip() for f in facts):
        raise ContentError(f"{where}: field 'facts' must be a non-empty list of non-empty strings")
    constraints = row.get("constraints", {})
    if not isinstance(constraints, dict):
        raise ContentError(f"{where}: field 'constraints' must be a JSON object")
    for name, value in constraints.items():
        if name not in CONSTRAINTS:
            raise ContentError(f"{where}: unknown constraint '{name}' (known: {', '.join(CONSTRAINTS)})")
        kind = CONSTRAINTS[name]
        wrong = isinstance(value, bool) != (kind is bool) or not isinstance(value, kind)
        if wrong or (kind is int and value < 0) or (kind is str and not value.strip()):
            raise ContentError(f"{where}: constraint '{name}' must be a {'non-negative ' * (kind is int)}"
                               f"{kind.__name__}, got {json.dumps(value)}")
    if constraints.get("tone", "formal") not in TONES:
        raise ContentError(f"{where}: constraint 'tone' must be one of {', '.join(TONES)}")
    if not all(isinstance(w, str) and w.strip() for w in constraints.get("banned", [])):
        raise ContentError(f"{where}: constraint 'banned' must be a list of non-empty strings")
    if constraints.get("min_words", 0) > constraints.get("max_words", float("inf")):
        raise ContentError(f"{where}: constraint 'min_words' is larger than 'max_words'")
    return {**row, "constraints": constraints}


def load_briefs(path: str | Path = BRIEFS) -> list[dict]:
    """Read and validate a brief file (JSONL); a bad row stops with one line naming the row and the field."""
    path = Path(path)
    briefs, seen = [], set()
    for number, row in read_jsonl(path, ContentError):
        where = f"{path.name} line {number}"
        brief = check_brief(row, where)
        if brief["id"] in seen:
            raise ContentError(f"{where}: duplicate id '{brief['id']}'")
        seen.add(brief["id"])
        briefs.append(brief)
    return briefs


# --- the checks: one small pure function per constraint, each -> (passed, detail) ---------------------------------

def normalise(text: str) -> str:
    """Text for fact matching: NFKC, lower case, straight quotes, times as "h:mm am", no thousands commas, no "#"
    before digits, other commas removed, whitespace collapsed. "3 PM", "3pm" and "3:00 p.m." all become
    "3:00 pm"; "$12,500" becomes "$12500"; "order #48213" becomes "order 48213". Nothing else is equated: a fact
    must appear in this form (dates, names and numbers are matched exactly)."""
    text = unicodedata.normalize("NFKC", text).lower().replace("\u2019", "'").replace("\u2018", "'")
    text = re.sub(r"\b(\d{1,2})(?::(\d{2}))?\s*([ap])\.?\s?m\b\.?",
                  lambda m: f"{m[1]}:{m[2] or '00'} {m[3]}m", text)
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)
    text = re.sub(r"#(?=\d)", "", text).replace(",", " ")
    return re.sub(r"\s+", " ", text).strip()


def _contains(haystack: str, needle: str) -> bool:
    """Whole-word containment of normalised needle in normalised haystack."""
    needle = normalise(needle)
    return re.search(rf"(?<!\w){re.escape(needle)}(?!\w)", normalise(haystack)) is not None


def _lines(text: str) -> list[str]:
    return [ln.strip() for ln in text.strip().splitlines() if ln.strip()]


def words(text: str) -> int:
    """Number of words (runs of letters or digits, with inner apostrophes or hyphens)."""
    return len(re.findall(r"[^\W_]+(?:['\u2019-][^\W_]+)*", text))


def check_facts(text: str, facts: list[str]) -> tuple[bool, str]:
    missing = [f for f in facts if not _contains(text, f)]
    return not missing, "missing: " + "; ".join(missing) if missing else f"all {len(facts)} present"


PLACEHOLDER = re.compile(r"\[[^\]\n]{1,40}\]|\{[^}\n]{1,40}\}|<[A-Za-z][^>\n]{0,30}>|\bX{3,}\b|lorem ipsum", re.I)


def check_placeholders(text: str) -> tuple[bool, str]:
    found = PLACEHOLDER.findall(text)
    return not found, "found: " + ", ".join(found[:3]) if found else "none"


CONTRACTION = re.compile(r"\b(?:\w+n't|\w+'(?:re|ve|ll|m|d)|(?:it|that|there|here|what|let|he|she|who)'s)\b", re.I)


def check_tone(text: str, tone: str) -> tuple[bool, str]:
    """formal: no contractions, no "!", no word of SLANG; friendly: none of the stiff phrases in STIFF."""
    plain = text.replace("\u2019", "'")
    if tone == "formal":
        problems = CONTRACTION.findall(plain)[:2]
        problems += ["!"] * ("!" in plain)
        problems += [w for w in SLANG if re.search(rf"\b{w}\b", plain, re.I)]
    else:
        problems = [p for p in STIFF if p in plain.lower()]
    return not problems, f"{tone}: " + ("found " + ", ".join(problems) if problems else "ok")


def check_min_words(text: str, n: int) -> tuple[bool, str]:
    return words(text) >= n, f"{words(text)} words (min {n})"


def check_max_words(text: str, n: int) -> tuple[bool, str]:
    return words(text) <= n, f"{words(text)} words (max {n})"


def check_max_chars(text: str, n: int) -> tuple[bool, str]:
    return len(text.strip()) <= n, f"{len(text.strip())} characters (max {n})"


def check_subject(text: str, wanted: bool = True) -> tuple[bool, str]:
    """The first non-empty line is "Subject: ..." (markdown bold around the label is tolerated)."""
    first = (_lines(text) or [""])[0]
    ok = re.match(r"^[*_#\s]*subject\s*[*_]*\s*:\s*[*_]*\s*\S", first, re.I) is not None
    return ok == wanted, f"first line: {first[:50]!r}"


def check_greeting(text: str, name: str) -> tuple[bool, str]:
    """One of the first three lines (after a subject line) starts with a greeting word and names the recipient."""
    lines = [ln for ln in _lines(text) if not re.match(r"^[*_#\s]*subject\b", ln, re.I)][:3]
    for line in lines:
        if line.lower().startswith(GREETINGS) and _contains(line, name):
            return True, f"greeting: {line[:50]!r}"
    return False, f"no greeting line with '{name}' in the first lines"


def check_signoff(text: str, name: str) -> tuple[bool, str]:
    """The sender's name is on one of the last three lines."""
    tail = _lines(text)[-3:]
    ok = any(_contains(line, name) for line in tail)
    return ok, f"signed by {name}" if ok else f"'{name}' not in the last lines"


BULLET = re.compile(r"^(?:[-*\u2022]|\d{1,2}[.)])\s+\S")


def check_bullets(text: str, n: int) -> tuple[bool, str]:
    count = sum(BULLET.match(line) is not None for line in _lines(text))
    return count == n, f"{count} bullet points (want {n})"


def check_max_hashtags(text: str, n: int) -> tuple[bool, str]:
    tags = re.findall(r"#[^\W\d_]\w*", text)
    return len(tags) <= n, f"{len(tags)} hashtags (max {n})"


def check_banned(text: str, banned: list[str]) -> tuple[bool, str]:
    found = [w for w in banned if _contains(text, w)]
    return not found, "found: " + ", ".join(found) if found else "none"


CHECKS = {"subject": check_subject, "greeting": check_greeting, "signoff": check_signoff, "tone": check_tone,
          "min_words": check_min_words, "max_words": check_max_words, "max_chars": check_max_chars,
          "bullets": check_bullets, "max_hashtags": check_max_hashtags, "banned": check_banned}


def check(brief: dict, text: str) -> dict[str, tuple[bool, str]]:
    """Every check that applies to this brief: the facts, placeholders, then one per constraint."""
    results = {"facts": check_facts(text, brief["facts"]), "placeholders": check_placeholders(text)}
    for name, value in brief["constraints"].items():
        results[name] = CHECKS[name](text, value)
    return results


def passed(results: dict[str, tuple[bool, str]]) -> bool:
    """A text passes when every one of its checks passes."""
    return all(ok for ok, _ in results.values())


# --- prompts ----------------------------------------------------------------------------------------------------

def _length(c: dict) -> str:
    parts = ([f"at least {c['min_words']} words"] if "min_words" in c else []) + \
            ([f"at most {c['max_words']} words"] if "max_words" in c else []) + \
            ([f"at most {c['max_chars']} characters"] if "max_chars" in c else [])
    return ", ".join(parts) or "any"


def _format(brief: dict) -> str:
    c, parts = brief["constraints"], []
    if c.get("subject"):
        parts.append('first line "Subject: ..."')
    if "greeting" in c:
        parts.append(f"greet {c['greeting']} by name")
    if "signoff" in c:
        parts.append(f"sign off with the name {c['signoff']}")
    if "bullets" in c:
        parts.append(f"exactly {c['bullets']} bullet points starting with \"- \"")
    if "max_hashtags" in c:
        parts.append(f"at most {c['max_hashtags']} hashtags")
    return "; ".join(parts) or "plain text"


def _a(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def plain_prompt(brief: dict) -> str:
    """One sentence, facts inline, constraints left implicit (how people often ask)."""
    what = " ".join(filter(None, [brief["constraints"].get("tone"), KINDS[brief["kind"]]]))
    return f"Write {_a(what)} to {brief['audience']} to {brief['purpose']}, mentioning {', '.join(brief['facts'])}."


def structured_prompt(brief: dict) -> str:
    """The brief as labelled fields."""
    c = brief["constraints"]
    lines = [f"Write {_a(KINDS[brief['kind']])}.", f"Audience: {brief['audience']}", f"Purpose: {brief['purpose']}",
             "Facts to include (exactly as written):", *[f"- {f}" for f in brief["facts"]],
             f"Length: {_length(c)}", f"Tone: {c.get('tone', 'any')}", f"Format: {_format(brief)}"]
    if c.get("signoff"):
        lines.insert(3, f"From: {c['signoff']}")
    return "\n".join(lines)


def rules(brief: dict) -> list[str]:
    """The checks of this brief, said as rules for the model (the checklist pattern)."""
    c = brief["constraints"]
    out = ["Include every fact exactly as written above.",
           "Use real names only: no placeholders in brackets such as [Your Name] or [Company]."]
    if c.get("tone") == "formal":
        out.append('Formal tone: no contractions (write "do not", not "don\'t"), no exclamation marks, no slang.')
    elif c.get("tone") == "friendly":
        out.append('Friendly tone: warm and simple, no stiff phrases such as "To whom it may concern".')
    if _length(c) != "any":
        out.append(f"Length: {_length(c)}.")
    if _format(brief) != "plain text":
        out.append(f"Format: {_format(brief)}.")
    if c.get("banned"):
        out.append("Do not use these words: " + ", ".join(c["banned"]) + ".")
    out.append("Answer with the text only, no comments before or after it.")
    return out


def checklist_prompt(brief: dict) -> str:
    return structured_prompt(brief) + "\n\nRules (every one is checked):\n" + "\n".join(f"- {r}" for r in rules(brief))


# Worked examples for the few-shot pattern; each passes its own checks (the tests make sure). An email target
# gets the product example, every other kind gets the email example, so the model cannot copy its own kind.
EXAMPLES = [
    ({"id": "ex-email", "kind": "email", "audience": "a customer, Mr. Alan Reid", "purpose":
      "confirm that his table booking has moved to a later time", "facts": ["Saturday 3 May", "8:00 PM", "table for four"],
      "constraints": {"subject": True, "greeting": "Mr. Reid", "signoff": "Julia Moreau", "tone": "formal",
                      "min_words": 30, "max_words": 100}},
     "Subject: Your booking on Saturday 3 May\n\nDear Mr. Reid,\n\nThank you for your call. Your table for four on "
     "Saturday 3 May has been moved to 8:00 PM, as you asked. Everything else about your booking stays the same. "
     "If you need any other change, please reply to this email and we will be glad to help.\n\nKind regards,\n"
     "Julia Moreau"),
    ({"id": "ex-product", "kind": "product", "audience": "tea drinkers", "purpose": "describe a glass teapot",
      "facts": ["1 litre", "removable steel filter", "$29"],
      "constraints": {"bullets": 3, "tone": "friendly", "max_words": 70}},
     "Brew loose tea and watch the leaves unfold.\n\n- Holds 1 litre, enough for four cups\n- Removable steel "
     "filter for easy cleaning\n- Heat-resistant glass, only $29"),
]


def fewshot_messages(brief: dict) -> list[dict]:
    example, text = EXAMPLES[1] if brief["kind"] == "email" else EXAMPLES[0]
    return [{"role": "user", "content": structured_prompt(example)}, {"role": "assistant", "content": text},
            {"role": "user", "content": structured_prompt(brief)}]


def prompt_messages(brief: dict, pattern: str) -> list[dict]:
    """The chat messages of the first attempt for one pattern (revise starts from the structured prompt)."""
    if pattern not in PATTERNS:
        raise ContentError(f"unknown pattern '{pattern}': choose one of {', '.join(PATTERNS)}")
    if pattern == "fewshot":
        return fewshot_messages(brief)
    build = {"plain": plain_prompt, "checklist": checklist_prompt}.get(pattern, structured_prompt)
    return [{"role": "user", "content": build(brief)}]


def revision_messages(brief: dict, messages: list[dict], draft: str, results: dict) -> list[dict]:
    """The conversation so far plus the draft and a request to fix the checks that failed."""
    failed = [f"- {name}: {detail}" for name, (ok, detail) in results.items() if not ok]
    ask = "Your text fails these checks:\n" + "\n".join(failed) + "\n\nRewrite the whole text so that it passes " \
          "every check. Answer with the text only."
    return [*messages, {"role": "assistant", "content": draft}, {"role": "user", "content": ask}]


# --- generation -------------------------------------------------------------------------------------------------

class NoRepeatInAnswer(LogitsProcessor):
    """Forbid a token that would repeat an n-gram the answer already contains. Unlike transformers'
    `no_repeat_ngram_size`, the prompt is not counted, so the model may still copy the brief's facts."""

    def __init__(self, start: int, n: int):
        self.start, self.n = start, n

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        answer = input_ids[:, self.start:].tolist()
        for row, ids in enumerate(answer):
            if len(ids) < self.n:
                continue
            prefix = tuple(ids[len(ids) - self.n + 1:])
            banned = {ids[i + self.n - 1] for i in range(len(ids) - self.n + 1) if tuple(ids[i:i + self.n - 1]) == prefix}
            scores[row, list(banned)] = float("-inf")
        return scores


def generate_texts(model, tokenizer, conversations: list[list[dict]], max_new_tokens: int = 160,
                   batch_size: int = 8, no_repeat: int = 6, progress: bool = False) -> list[str]:
    """Greedy answer to every conversation (chat template), in batches of similar length, left padded.
    `no_repeat` > 0 forbids repeating any n-gram of that many tokens inside the answer (see NoRepeatInAnswer)."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    prompts = [tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in conversations]
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))  # similar lengths pad less
    out = [""] * len(prompts)
    for b in tqdm(range(0, len(order), batch_size), desc="generating", unit="batch", disable=not progress):
        batch = order[b:b + batch_size]
        enc = tokenizer([prompts[i] for i in batch], return_tensors="pt", padding=True, padding_side="left",
                        add_special_tokens=False)  # left: every row's answer starts at the same column
        start = enc["input_ids"].shape[1]
        extra = LogitsProcessorList([NoRepeatInAnswer(start, no_repeat)] if no_repeat > 0 else [])
        with torch.inference_mode():
            ids = model.generate(**enc.to(model.device), max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=pad, logits_processor=extra)
        texts = tokenizer.batch_decode(ids[:, start:], skip_special_tokens=True)
        for i, text in zip(batch, texts, strict=True):
            out[i] = text.strip()
    return out


def write(model, tokenizer, briefs: list[dict], pattern: str = "structured", revise: int = 0,
          max_new_tokens: int = 160, batch_size: int = 8, no_repeat: int = 6, drafts: list[str] | None = None,
          progress: bool = False) -> list[dict]:
    """One text per brief with `pattern`, checked; then up to `revise` rounds in which every failing text is
    rewritten with its failed checks listed (pattern "revise" = structured + at least one round). `drafts`
    reuses first attempts already generated with the same prompts. Each record keeps the first attempt, the
    final text, the checks, the rounds used and the generation seconds."""
    messages = [prompt_messages(b, pattern) for b in briefs]
    revise = max(revise, 1) if pattern == "revise" else revise
    start = time.perf_counter()
    texts = drafts if drafts is not None else generate_texts(model, tokenizer, messages, max_new_tokens,
                                                             batch_size, no_repeat, progress)
    first_seconds = time.perf_counter() - start
    records = [{"id": b["id"], "kind": b["kind"], "pattern": pattern, "first": t, "text": t, "rounds": 0,
                "checks": check(b, t)} for b, t in zip(briefs, texts, strict=True)]
    for _ in range(revise):
        todo = [i for i, r in enumerate(records) if not passed(r["checks"])]
        if not todo:
            break
        convs = [revision_messages(briefs[i], messages[i], records[i]["text"], records[i]["checks"]) for i in todo]
        for i, text in zip(todo, generate_texts(model, tokenizer, convs, max_new_tokens, batch_size, no_repeat,
                                                         progress),
                           strict=True):
            records[i].update(text=text, rounds=records[i]["rounds"] + 1, checks=check(briefs[i], text))
    seconds = time.perf_counter() - start
    for r in records:
        r["passed"] = passed(r["checks"])
        r["seconds_first"], r["seconds_total"] = round(first_seconds, 2), round(seconds, 2)
    return records


# --- command line -----------------------------------------------------------------------------------------------

def read_texts(path: str | Path, briefs: list[dict]) -> list[tuple[dict, str]]:
    """(brief, text) pairs from a JSONL file of {"id", "text"} rows; ids must name briefs."""
    path, by_id = Path(path), {b["id"]: b for b in briefs}
    pairs = []
    for number, row in read_jsonl(path, ContentError):
        where = f"{path.name} line {number}"
        if not isinstance(row.get("text"), str):
            raise ContentError(f"{where}: field 'text' is missing or not a string")
        if row.get("id") not in by_id:
            raise ContentError(f"{where}: id {json.dumps(row.get('id'))} is not a brief id")
        pairs.append((by_id[row["id"]], row["text"]))
    return pairs


def _summary(records: list[dict]) -> str:
    k, n = sum(r["passed"] for r in records), len(records)
    low, high = wilson(k, n)
    fails: dict[str, int] = {}
    for r in records:
        for name, (ok, _) in r["checks"].items():
            fails[name] = fails.get(name, 0) + (not ok)
    worst = ", ".join(f"{name} {v}" for name, v in sorted(fails.items(), key=lambda x: -x[1]) if v) or "none"
    return f"pass rate {k}/{n} = {k / n:.2f} [95% CI {low:.2f}, {high:.2f}]; failed checks: {worst}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="write a text per brief with a model, check it")
    chk = sub.add_parser("check", help="check existing texts against their briefs (no model)")
    for p in (gen, chk):
        p.add_argument("--briefs", default=str(BRIEFS), help="JSONL brief file (default: the project's 32)")
        p.add_argument("--out", default=None, help="write one JSON line per text (text + checks) here")
    chk.add_argument("--texts", required=True, help='JSONL file of {"id": brief id, "text": ...} rows')
    gen.add_argument("--model", default=SMOLLM2, help="chat model: short name, local folder or Hub id")
    gen.add_argument("--pattern", choices=PATTERNS, default="structured", help="prompt pattern (see above)")
    gen.add_argument("--revise", type=int, default=0, help="rewrite rounds for failing texts (revise: >= 1)")
    gen.add_argument("--max-new-tokens", type=int, default=160, help="length limit of one text, in tokens")
    gen.add_argument("--no-repeat", type=int, default=6, help="forbid repeating n-grams of this size in a text (0: off)")
    gen.add_argument("--batch-size", type=int, default=8, help="texts generated together")
    gen.add_argument("--limit", type=int, default=None, help="use only the first N briefs")
    gen.add_argument("--dtype", choices=("bfloat16", "float32"), default="bfloat16", help="model weights")
    args = parser.parse_args(argv)
    try:
        briefs = load_briefs(args.briefs)
        if args.command == "check":
            records = [{"id": b["id"], "text": t, "checks": check(b, t)} for b, t in read_texts(args.texts, briefs)]
            for r in records:
                r["passed"] = passed(r["checks"])
        else:
            if args.revise < 0 or args.max_new_tokens < 1 or args.batch_size < 1:
                raise ContentError("--revise must be >= 0, --max-new-tokens and --batch-size >= 1")
            briefs = briefs[:args.limit]
            tokenizer = load_tokenizer(args.model)
            model = load_model(args.model, dtype=getattr(torch, args.dtype)).eval()
            records = write(model, tokenizer, briefs, args.pattern, args.revise, args.max_new_tokens,
                            args.batch_size, args.no_repeat, progress=True)
    except (ContentError, ModelNotAvailable) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    for r in records:
        failed = [name for name, (ok, _) in r["checks"].items() if not ok]
        print(f"{r['id']}: {'pass' if r['passed'] else 'FAIL ' + ', '.join(failed)}")
    print(_summary(records))
    if args.out:
        print(f"wrote {write_jsonl(args.out, records)} records to {args.out}")


if __name__ == "__main__":
    main()
