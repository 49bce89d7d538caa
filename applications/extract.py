"""Information extraction to JSON: a chat model fills a JSON Schema for each text, free or constrained.

Each text goes to the model with an instruction that lists the schema's fields (and their descriptions).
`plain` lets the model write whatever it likes and parses the first JSON object in its reply; it may write
prose, miss keys, or stop mid-object. `constrained` adds a logits processor (JsonSchemaConstraint, written
here in about 200 lines) that walks a fixed skeleton of the schema as the model generates: the braces, keys,
colons and commas are forced, and the model only chooses the string values, the list items and when to close
them; every token that would break the JSON is masked out, and near the token limit the processor closes the
object early. So a constrained output always parses and matches the schema, whatever the model (even a
random one). Output: one JSON line per text with the raw reply, the parsed object (or null) and two checks.

Supported schemas: a top-level {"type": "object", "properties": {...}} whose properties are "string",
"number", "integer" or {"type": "array", "items": {"type": "string"}}, with optional "description", "title",
"maxLength" (strings and list items) and "maxItems" (lists); "required" and "additionalProperties": false
are accepted (every property is always written). Anything else (nested objects, enum, pattern, anyOf, $ref,
...) is refused with its name. Without --schema, the built-in news schema is used (people, organisations,
places, dates), with one worked example in the prompt (--zero-shot drops it); --print-schema prints it as a
starting point.

Examples:
  python applications/extract.py --limit 5                            # the news gold set, constrained
  python applications/extract.py --mode plain --limit 5 --out build/extract-plain.jsonl --score
  python applications/extract.py --print-schema > my_schema.json      # edit, then:
  python applications/extract.py --schema my_schema.json --input notes.txt --out build/notes.jsonl
  python applications/extract.py --input articles.jsonl --text-column body --batch-size 4
  python applications/extract.py --model HuggingFaceTB/SmolLM2-1.7B-Instruct --dtype bfloat16 --score

Input: a .txt file (one text per non-empty line) or a .jsonl file (one object per line, the text in
--text-column). --score compares with gold lists in the input (columns named like the schema's array
fields, as in data/extraction_news.jsonl) and prints precision, recall and F1 per field.

Python API (applications/12_information_extraction.ipynb uses it):
  NEWS_SCHEMA, check_schema(schema) -> [Field]       load_schema(path) / read_texts(path, column)
  messages_for(text, fields) -> chat messages         JsonSchemaConstraint(tokenizer, fields, max_new_tokens)
  extract(model, tokenizer, texts, schema, mode, ...) -> [record]      parse_json(text) -> object | None
  normalise(s), field_scores(preds, golds, fields) -> {field: {tp, fp, fn, precision, recall, f1}}
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import torch
from tqdm import tqdm
from transformers import LogitsProcessor, LogitsProcessorList

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from common import SMOLLM2, ModelNotAvailable, load_model, load_tokenizer  # noqa: E402

MODES = ("constrained", "plain")
GOLD = ROOT / "data" / "extraction_news.jsonl"
NEWS_SCHEMA = {
    "type": "object",
    "properties": {
        "people": {"type": "array", "items": {"type": "string"}, "maxItems": 6,
                   "description": "names of the people named in the text"},
        "organisations": {"type": "array", "items": {"type": "string"}, "maxItems": 6,
                          "description": "names of companies, agencies, governments, courts, media and groups"},
        "places": {"type": "array", "items": {"type": "string"}, "maxItems": 6,
                   "description": "names of countries, regions, cities and other places"},
        "dates": {"type": "array", "items": {"type": "string"}, "maxItems": 6,
                  "description": "dates, days of the week and years, as written"},
    },
    "required": ["people", "organisations", "places", "dates"],
    "additionalProperties": False,
}
# One worked example for the news schema, written for this script (not from the gold set).
NEWS_SHOTS = [("Apple chief Tim Cook met Chancellor Angela Merkel in Berlin on Monday, the German government said.",
               {"people": ["Tim Cook", "Angela Merkel"], "organisations": ["Apple", "German government"],
                "places": ["Berlin"], "dates": ["Monday"]})]
SYSTEM = "You extract information from text. Reply with one JSON object and nothing else."
MAX_CHARS = 60  # a string value's length when the schema gives no maxLength (names are short)
MAX_ITEMS = 10  # a list's length when the schema gives no maxItems


class ExtractError(ValueError):
    """Bad input (schema, file, column, settings): reported as one line, exit code 2."""


@dataclass(frozen=True)
class Field:
    """One property of the schema: its name, kind (string, array, number, integer) and limits."""

    name: str
    kind: str
    max_chars: int = MAX_CHARS
    max_items: int = MAX_ITEMS
    description: str = ""


# --- schema and inputs -----------------------------------------------------------------------------------------

_TOP_KEYS = {"type", "properties", "required", "additionalProperties", "title", "description", "$schema", "$id"}
_PROP_KEYS = {"type", "description", "title", "maxLength", "items", "maxItems"}


def check_schema(schema: dict) -> list[Field]:
    """The fields of a supported schema, in order; ExtractError naming the first unsupported feature."""
    if not isinstance(schema, dict) or schema.get("type") != "object" or not isinstance(schema.get("properties"), dict):
        raise ExtractError('the schema must be an object schema: {"type": "object", "properties": {...}}')
    if extra := sorted(set(schema) - _TOP_KEYS):
        raise ExtractError(f"unsupported schema feature '{extra[0]}' at the top level (supported: "
                           f"{', '.join(sorted(_TOP_KEYS))})")
    if schema.get("additionalProperties", False) is not False:
        raise ExtractError("unsupported schema feature 'additionalProperties' other than false")
    if not schema["properties"]:
        raise ExtractError("the schema has no properties")
    if missing := [r for r in schema.get("required", []) if r not in schema["properties"]]:
        raise ExtractError(f"'required' names '{missing[0]}', which is not a property")
    fields = []
    for name, prop in schema["properties"].items():
        if not isinstance(prop, dict):
            raise ExtractError(f"property '{name}' is not a schema object")
        if extra := sorted(set(prop) - _PROP_KEYS):
            raise ExtractError(f"unsupported schema feature '{extra[0]}' in property '{name}' (supported: "
                               f"{', '.join(sorted(_PROP_KEYS))})")
        kind, items = prop.get("type"), prop.get("items")
        if kind not in ("string", "number", "integer", "array"):
            raise ExtractError(f"unsupported type {json.dumps(kind)} in property '{name}' (supported: string, "
                               f"number, integer, array of strings)")
        if kind == "array" and (not isinstance(items, dict) or items.get("type") != "string"
                                or set(items) - {"type", "maxLength", "description"}):
            raise ExtractError(f"unsupported 'items' in property '{name}': only {{\"type\": \"string\"}} "
                               f"(with optional maxLength) is supported")
        if kind != "array" and ("items" in prop or "maxItems" in prop):
            raise ExtractError(f"'items'/'maxItems' in property '{name}' need \"type\": \"array\"")
        max_chars = (items or {}).get("maxLength", prop.get("maxLength", MAX_CHARS))
        max_items = prop.get("maxItems", MAX_ITEMS)
        for key, value in (("maxLength", max_chars), ("maxItems", max_items)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ExtractError(f"'{key}' in property '{name}' must be a positive integer")
        fields.append(Field(name, kind, max_chars, max_items, prop.get("description", "")))
    return fields


def load_schema(path: str | Path | None) -> dict:
    """A JSON Schema from a file (or the built-in news schema for None), checked by check_schema."""
    if path is None:
        return NEWS_SCHEMA
    try:
        schema = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise ExtractError(f"cannot read the schema file '{path}': {err.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ExtractError(f"the schema file '{path}' is not valid JSON: {err}") from None
    check_schema(schema)
    return schema


def read_texts(path: str | Path, column: str = "text") -> list[dict]:
    """Rows to extract from: a .txt file (one text per non-empty line) or .jsonl (the text in `column`)."""
    path = Path(path)
    if path.suffix not in (".txt", ".jsonl"):
        raise ExtractError(f"'{path}': the input must be a .txt or .jsonl file")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise ExtractError(f"cannot read the input file '{path}': {err.strerror}") from None
    except UnicodeDecodeError:
        raise ExtractError(f"the input file '{path}' is not UTF-8 text") from None
    if path.suffix == ".txt":
        rows = [{"text": line.strip()} for line in lines if line.strip()]
    else:
        rows = []
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise ExtractError(f"'{path}' line {n} is not valid JSON") from None
            if not isinstance(row, dict) or not isinstance(row.get(column), str):
                have = ", ".join(row) if isinstance(row, dict) else "not an object"
                raise ExtractError(f"'{path}' line {n} has no text column '{column}' (it has: {have}); "
                                   f"choose one with --text-column")
            rows.append(row)
    if not rows:
        raise ExtractError(f"'{path}' holds no text")
    return rows


def messages_for(text: str, fields: list[Field], shots: list[tuple[str, dict]] = ()) -> list[dict]:
    """The chat messages for one text: the fields to fill (with their descriptions), then the text; each
    shot (text, answer) comes first as a worked user/assistant exchange."""
    kinds = {"string": "a string", "number": "a number", "integer": "an integer", "array": "a list of strings"}
    keys = "\n".join(f"- {f.name}: {kinds[f.kind]}" + (f", {f.description}" if f.description else "") for f in fields)
    ask = lambda t: f"Text:\n{t}\n\nReturn a JSON object with these keys:\n{keys}"  # noqa: E731
    messages = [{"role": "system", "content": SYSTEM}]
    for shot_text, answer in shots:
        messages += [{"role": "user", "content": ask(shot_text)}, {"role": "assistant", "content": json.dumps(answer)}]
    return messages + [{"role": "user", "content": ask(text)}]


# --- the constraint ---------------------------------------------------------------------------------------------
# The output is a fixed skeleton: literal pieces ('{"people": [', ', "places": "', '}') between value slots.
# A state is (segment, phase, position in a literal, items so far, value length, value blank so far, number text).
# step() feeds one character; a token is allowed when all its characters are accepted one after the other.

_NUMBER_PREFIX = re.compile(r"-?((0|[1-9]\d*)(\.\d*)?)?")
_NUMBER = re.compile(r"-?(0|[1-9]\d*)(\.\d+)?")
_OPENER = {"string": '"', "array": "[", "number": "", "integer": ""}
_SLOT_PHASE = {"string": "str", "array": "arr", "number": "num", "integer": "num"}


def _safe(ch: str) -> bool:
    """A character allowed inside a JSON string without escaping (and not a broken byte)."""
    return ch not in '"\\\ufffd\x7f' and ord(ch) >= 0x20


class JsonSchemaConstraint(LogitsProcessor):
    """Mask every token that would take the output off the schema's JSON skeleton (one state per batch row)."""

    def __init__(self, tokenizer, fields: list[Field], max_new_tokens: int):
        self.fields, self.max_new_tokens = fields, max_new_tokens
        self.segments: list = []  # literal strings and Field slots, alternating, ending with '}'
        for i, f in enumerate(fields):
            self.segments += [("{" if i == 0 else ", ") + json.dumps(f.name) + ": " + _OPENER[f.kind], f]
        self.segments.append("}")
        self.eos = tokenizer.eos_token_id
        if self.eos is None:
            raise ExtractError("the tokenizer has no end-of-sequence token, which constrained mode needs")
        self.strings = _token_strings(tokenizer)
        self.lengths = torch.tensor([len(s) for s in self.strings])
        self.content = torch.tensor([bool(s) and all(map(_safe, s)) for s in self.strings])
        # Tokens that can carry structure ('"', '",', ' "', '"],' ...) or numbers: checked one by one.
        self.structural = [i for i, s in enumerate(self.strings) if s and set(s) <= set(
            ' "[]{},:0123456789.-') and (set(s) & set('"[]{},:0123456789'))]
        self.literal_cache: dict[tuple[int, int], list[int]] = {}
        self.char_ids = {}
        for ch in '"] 0':
            ids = [i for i, s in enumerate(self.strings) if s == ch]
            if not ids:
                raise ExtractError(f"the tokenizer has no token for {ch!r}, which constrained mode needs")
            self.char_ids[ch] = ids[0]
        if self.max_new_tokens < self._need(self.start()) + 6:
            raise ExtractError(f"max_new_tokens={max_new_tokens} is too small for this schema: it needs at least "
                               f"{self._need(self.start()) + 6}")
        self.states: list | None = None

    def start(self) -> tuple:
        return (0, "lit", 0, 0, 0, True, "")

    # -- the character machine
    def _enter(self, k: int) -> tuple:
        """The state at the start of segment k."""
        if k == len(self.segments):
            return (k, "done", 0, 0, 0, True, "")
        seg = self.segments[k]
        return (k, "lit", 0, 0, 0, True, "") if isinstance(seg, str) else (k, _SLOT_PHASE[seg.kind], 0, 0, 0, True, "")

    def step(self, state: tuple, ch: str, closing: bool = False) -> tuple | None:
        """The state after one more character, or None if the character breaks the skeleton."""
        k, phase, pos, items, length, blank, num = state
        seg = self.segments[k] if k < len(self.segments) else None
        if phase == "lit":
            if ch != seg[pos]:
                return None
            return self._enter(k + 1) if pos + 1 == len(seg) else (k, "lit", pos + 1, items, length, blank, num)
        if phase in ("str", "item"):
            if ch == '"':
                if blank and not closing:
                    return None  # no empty values unless we are closing in a hurry
                return self._enter(k + 1) if phase == "str" else (k, "after", 0, items + 1, 0, True, "")
            if closing or not _safe(ch) or length >= seg.max_chars:
                return None
            return (k, phase, pos, items, length + 1, blank and ch.isspace(), num)
        if phase == "arr":  # just after '['
            if ch == '"' and not closing:
                return (k, "item", 0, items, 0, True, "")
            return self._enter(k + 1) if ch == "]" else None
        if phase == "after":  # after an item's closing quote
            if ch == "," and items < seg.max_items and not closing:
                return (k, "comma", 0, items, 0, True, "")
            return self._enter(k + 1) if ch == "]" else None
        if phase == "comma":
            return (k, "space", 0, items, 0, True, "") if ch == " " else None
        if phase == "space":
            return (k, "item", 0, items, 0, True, "") if ch == '"' else None
        if phase == "num":
            if ch in "0123456789.-":
                new = num + ch
                ok = _NUMBER_PREFIX.fullmatch(new) and len(new) <= 20 and not (seg.kind == "integer" and ch == ".")
                if ok and (not closing or (not _NUMBER.fullmatch(num) and ch == "0")):
                    return (k, "num", 0, 0, 0, True, new)
                return None
            if _NUMBER.fullmatch(num) and ch == self.segments[k + 1][0]:  # the number ends with the next literal
                return self.step(self._enter(k + 1), ch)
            return None
        return None  # done

    def accepts(self, state: tuple, token: str, closing: bool = False) -> tuple | None:
        for ch in token:
            state = self.step(state, ch, closing)
            if state is None:
                return None
        return state

    def _closing_token(self, state: tuple) -> int:
        """The next token on the shortest way to finish the object: close what is open, then the literals."""
        k, phase, pos, items, length, blank, num = state
        if phase == "lit":
            return self._greedy(k, pos)
        if phase == "num":
            return self._greedy(k + 1, 0) if _NUMBER.fullmatch(num) else self.char_ids["0"]
        return self.char_ids[{"str": '"', "item": '"', "arr": "]", "after": "]", "comma": " ", "space": '"'}[phase]]

    def _need(self, state: tuple) -> int:
        """Tokens on the shortest way to finish (the closing path), counting the end-of-sequence token."""
        n = 1
        while state[1] != "done":
            state = self.accepts(state, self.strings[self._closing_token(state)], closing=True)
            n += 1
        return n

    # -- the logits processor
    def _greedy(self, k: int, pos: int) -> int:
        """The longest token that spells the start of the rest of literal k."""
        return max(self._literal_tokens(k, pos), key=lambda i: len(self.strings[i]))

    def _literal_tokens(self, k: int, pos: int) -> list[int]:
        """Tokens that spell a prefix of the rest of literal k (cached): the forced part of the skeleton."""
        if (k, pos) not in self.literal_cache:
            rest = self.segments[k][pos:]
            self.literal_cache[k, pos] = [i for i, s in enumerate(self.strings) if s and rest.startswith(s)]
            if not self.literal_cache[k, pos]:
                raise ExtractError(f"the tokenizer has no token that spells {rest[:1]!r}")
        return self.literal_cache[k, pos]

    def allowed(self, state: tuple, closing: bool = False) -> torch.Tensor:
        """A boolean mask over the vocabulary: the tokens that keep the output on the skeleton."""
        mask = torch.zeros(len(self.strings), dtype=torch.bool)
        k, phase, pos, _, length, _, _ = state
        if phase == "done":
            mask[self.eos] = True
            return mask
        if closing:  # one way only, so that _need() stays exact
            mask[self._closing_token(state)] = True
            return mask
        candidates = self._literal_tokens(k, pos) + self.structural if phase == "lit" else self.structural
        for i in candidates:
            if self.accepts(state, self.strings[i], closing) is not None:
                mask[i] = True
        if phase in ("str", "item") and not closing:  # free text inside a string value, within its length
            mask |= self.content & (self.lengths <= self.segments[k].max_chars - length)
        return mask

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.states is None:  # first call: the prompt only
            self.states, self.prompt_len = [self.start()] * input_ids.shape[0], input_ids.shape[1]
            self.closing = [False] * input_ids.shape[0]
        else:
            for row, token in enumerate(input_ids[:, -1].tolist()):
                if self.states[row][1] != "done":
                    state = self.accepts(self.states[row], self.strings[token], self.closing[row])
                    assert state is not None, f"token {token} was masked but chosen"
                    self.states[row] = state
        budget = self.max_new_tokens - (input_ids.shape[1] - self.prompt_len)
        # Near the end of the budget, only the shortest way to close the object is left open.
        self.closing = [budget <= self._need(s) + 5 for s in self.states]
        masks = torch.stack([self.allowed(s, c) for s, c in zip(self.states, self.closing, strict=True)])
        vocab = min(scores.shape[-1], masks.shape[-1])
        out = torch.full_like(scores, float("-inf"))
        out[:, :vocab] = torch.where(masks[:, :vocab].to(scores.device), scores[:, :vocab], float("-inf"))
        return out


_STRINGS_CACHE: dict[int, list[str]] = {}


def _token_strings(tokenizer) -> list[str]:
    """Each token's text as it reads in the middle of a sequence (keeps SentencePiece's leading spaces)."""
    key = id(tokenizer)
    if key not in _STRINGS_CACHE:
        anchor = tokenizer.encode("a", add_special_tokens=False)[-1:]
        head = tokenizer.decode(anchor)
        pairs = tokenizer.batch_decode([anchor + [i] for i in range(len(tokenizer))], skip_special_tokens=False,
                                       clean_up_tokenization_spaces=False)
        special = set(tokenizer.all_special_ids) | {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
        _STRINGS_CACHE[key] = ["" if i in special or not p.startswith(head) else p[len(head):]
                               for i, p in enumerate(pairs)]
    return _STRINGS_CACHE[key]


# --- extraction -----------------------------------------------------------------------------------------------

def parse_json(text: str):
    """The first JSON object in a reply (code fences and prose around it are skipped), or None."""
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            obj, _ = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            return obj
    return None


@torch.inference_mode()
def extract(model, tokenizer, texts: list[str], schema: dict, mode: str = "constrained", max_new_tokens: int = 128,
            batch_size: int = 8, shots: list[tuple[str, dict]] = (), progress: bool = False) -> list[dict]:
    """One record per text: {output, parsed, valid_json, valid_schema, seconds} (greedy decoding)."""
    if mode not in MODES:
        raise ExtractError(f"unknown mode '{mode}' (choose {' or '.join(MODES)})")
    fields = check_schema(schema)
    tokenizer.padding_side = "left"
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    records = []
    for b in tqdm(range(0, len(texts), batch_size), desc=mode, unit="batch", disable=not progress):
        batch = texts[b:b + batch_size]
        prompts = [tokenizer.apply_chat_template(messages_for(t, fields, shots), add_generation_prompt=True, tokenize=False)
                   for t in batch]
        enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        processors = LogitsProcessorList(
            [JsonSchemaConstraint(tokenizer, fields, max_new_tokens)] if mode == "constrained" else [])
        start = time.perf_counter()
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad,
                             logits_processor=processors)
        seconds = (time.perf_counter() - start) / len(batch)
        for reply in tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True):
            parsed = parse_json(reply)
            records.append({"output": reply.strip(), "parsed": parsed, "valid_json": parsed is not None,
                            "valid_schema": parsed is not None and jsonschema.Draft202012Validator(schema).is_valid(
                                parsed), "seconds": round(seconds, 3)})
    return records


# --- scoring ----------------------------------------------------------------------------------------------------

def normalise(s: str) -> str:
    """Compare names loosely: NFKC, case-folded, outer punctuation and "the " and a final "'s" removed."""
    s = " ".join(unicodedata.normalize("NFKC", s).casefold().split())
    s = re.sub(r"['\u2019]s$", "", s.strip(" .,;:!?\"'()[]-"))
    return s.removeprefix("the ").strip()


def _as_list(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def field_scores(preds: list[dict | None], golds: list[dict], fields: list[str]) -> dict[str, dict]:
    """Micro precision/recall/F1 per field. A gold entity is a list of accepted surface forms; a predicted
    string counts once (after normalise) and matches at most one gold entity; a missing object predicts nothing."""
    table = {}
    for field in fields:
        tp = fp = fn = 0
        for pred, gold in zip(preds, golds, strict=True):
            entities = [{normalise(a) for a in (e if isinstance(e, list) else [e])} for e in gold.get(field, [])]
            matched = [False] * len(entities)
            for p in dict.fromkeys(normalise(x) for x in _as_list((pred or {}).get(field, []))):
                hit = next((j for j, e in enumerate(entities) if not matched[j] and p in e), None)
                if hit is None:
                    fp += 1
                else:
                    matched[hit] = True
                    tp += 1
            fn += matched.count(False)
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        table[field] = {"tp": tp, "fp": fp, "fn": fn, "precision": precision, "recall": recall, "f1": f1}
    return table


# --- command line ---------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--schema", help="a JSON Schema file (default: the built-in news schema)")
    parser.add_argument("--input", default=str(GOLD.relative_to(ROOT)),
                        help="a .txt (one text per line) or .jsonl file (default: the news gold set)")
    parser.add_argument("--text-column", default="text", help="the text field of .jsonl rows (default: text)")
    parser.add_argument("--out", default="build/extractions.jsonl", help="JSON Lines to write, one line per text")
    parser.add_argument("--mode", choices=MODES, default="constrained", help="constrained (default) or plain")
    parser.add_argument("--model", default=SMOLLM2, help="chat model: short name, local folder or Hub id")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--max-new-tokens", type=int, default=160)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--limit", type=int, help="only the first N texts")
    parser.add_argument("--zero-shot", action="store_true",
                        help="no worked example in the prompt (the built-in schema has one; a --schema file never)")
    parser.add_argument("--score", action="store_true", help="compare with the gold lists in the input's rows")
    parser.add_argument("--print-schema", action="store_true", help="print the built-in news schema and exit")
    args = parser.parse_args(argv)
    if args.print_schema:
        print(json.dumps(NEWS_SCHEMA, indent=2))
        return
    try:
        if args.batch_size < 1 or args.max_new_tokens < 1 or (args.limit is not None and args.limit < 1):
            raise ExtractError("--batch-size, --max-new-tokens and --limit must be at least 1")
        schema = load_schema(args.schema)
        fields = check_schema(schema)
        rows = read_texts(args.input, args.text_column)[:args.limit]
        tokenizer = load_tokenizer(args.model)
        JsonSchemaConstraint(tokenizer, fields, args.max_new_tokens)  # checks the token budget before loading
        model = load_model(args.model, dtype=getattr(torch, args.dtype)).eval()
        records = extract(model, tokenizer, [r[args.text_column] if args.input.endswith(".jsonl") else r["text"]
                                             for r in rows], schema, args.mode, args.max_new_tokens,
                          args.batch_size, NEWS_SHOTS if args.schema is None and not args.zero_shot else (),
                          progress=True)
    except (ExtractError, ModelNotAvailable) as err:
        parser.exit(2, f"extract.py: error: {' '.join(str(err).split())}\n")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as f:
        for row, rec in zip(rows, records, strict=True):
            keep = {k: v for k, v in row.items() if k not in {fl.name for fl in fields}}
            f.write(json.dumps({**keep, **rec}, ensure_ascii=False) + "\n")
    n = len(records)
    print(f"{args.mode}: {n} texts -> {out}; valid JSON {sum(r['valid_json'] for r in records)}/{n}, "
          f"valid schema {sum(r['valid_schema'] for r in records)}/{n}, "
          f"{sum(r['seconds'] for r in records) / n:.2f} s per text")
    if args.score:
        names = [f.name for f in fields if f.kind == "array" and all(f.name in r for r in rows)]
        if not names:
            parser.exit(2, "extract.py: error: --score needs gold lists in the input named like the array fields\n")
        for name, s in field_scores([r["parsed"] for r in records], rows, names).items():
            print(f"  {name:<14} precision {s['precision']:.2f}  recall {s['recall']:.2f}  F1 {s['f1']:.2f}")


if __name__ == "__main__":
    main()
