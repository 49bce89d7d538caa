"""Export a Hugging Face model (optionally with a LoRA adapter merged in) to GGUF files for llama.cpp and Ollama.

The steps: (1) with --lora, load the base model, fold the adapter into its weights with peft's merge_and_unload
and save a plain safetensors folder; (2) run llama.cpp's own converter, convert_hf_to_gguf.py, to write an F16
GGUF (weights, tokenizer, chat template and hyper-parameters in one file); (3) quantize that file to the other
types with llama-cpp-python's `llama_model_quantize`. A table of file sizes and bits per weight is printed.

The converter is not in llama-cpp-python's wheel: it ships in its source archive (vendor/llama.cpp/), which is
downloaded once (pip download, checksum verified) into the project cache, and only the converter, its
`conversion` package and its `gguf-py` are extracted from it. llama-cpp-python itself is built by `make setup`.

Examples:
  python optimization/export_gguf.py --out build/gguf                      # SmolLM2 -> F16, Q8_0, Q4_K_M
  python optimization/export_gguf.py --types q4_k_m q5_k_m --out build/gguf
  python optimization/export_gguf.py --lora runs/sentiment-lora --out build/gguf-sentiment   # merge, export
  python optimization/export_gguf.py --model runs/pydocs-full --types f16 --out build/gguf-pydocs
  python optimization/export_gguf.py --model HuggingFaceTB/SmolLM2-360M-Instruct --out build/gguf-360m
  python -m llama_cpp.server --model build/gguf/smollm2-135m-instruct.Q4_K_M.gguf --port 8001   # serve it

Types: f32, f16, bf16 come straight from the converter; q8_0, q6_k, q5_k_m, q4_k_m, q4_0, q3_k_m, q2_k are
quantized from the F16 file (K-quants need rows of a multiple of 256 values; llama.cpp falls back to another
type for tensors that are not). Files are named <name>.<TYPE>.gguf, e.g. smollm2-135m-instruct.Q4_K_M.gguf.

Python API (the lesson deployment/03_llama_cpp_gguf.ipynb imports it):
  TYPES, DEFAULT_TYPES, LLAMA_CPP_SDIST
  fetch_sdist() -> Path                    llama-cpp-python's source archive, in the cache
  converter_dir() -> Path                  folder with convert_hf_to_gguf.py, conversion/ and gguf-py/
  supported_architectures() -> set[str]    the HF architectures the converter knows
  prepare(model, work_dir, lora=None) -> Path   a plain HF folder for the converter (LoRA merged)
  convert(hf_dir, out_file, outtype="f16") -> Path / quantize(src, dst, qtype) -> Path
  export(model, out, types=DEFAULT_TYPES, lora=None, name=None) -> {type: Path}
  size_table(paths) -> [{"type", "file", "MB", "bits/weight"}] / tensor_types(path) -> [(name, type, weights)]
  launch_server(gguf, alias=None, threads=2) -> (process, base_url)   llama_cpp.server on 127.0.0.1
  read_modelfile(path) -> dict / ollama_prompt(modelfile, messages) -> str   Ollama's prompt, rendered here
"""

from __future__ import annotations

import argparse
import ast
import json
import logging
import re
import subprocess
import sys
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from common.registry import Package, cache_dir, extract, fetch  # noqa: E402

SMOLLM2 = "smollm2-135m-instruct"
LLAMA_CPP_SDIST = Package("llama-cpp-python", "0.3.36", "llama_cpp_python-0.3.36.tar.gz",
                          "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e")
_VENDOR = "llama_cpp_python-0.3.36/vendor/llama.cpp/"
CONVERTER_TYPES = ("f32", "f16", "bf16")  # written by convert_hf_to_gguf.py
QUANT_TYPES = ("q8_0", "q6_k", "q5_k_m", "q4_k_m", "q4_0", "q3_k_m", "q2_k")  # llama_model_quantize from F16
TYPES = CONVERTER_TYPES + QUANT_TYPES
DEFAULT_TYPES = ("f16", "q8_0", "q4_k_m")
MERGEABLE = ("LORA", "IA3", "LOHA", "LOKR", "ADALORA")  # peft types whose update folds into the weights


class ExportError(RuntimeError):
    """A problem the user can fix (missing model or adapter, unsupported architecture, no converter)."""


# ------------------------------------------------------------------------------ the converter


def fetch_sdist() -> Path:
    """llama-cpp-python's source archive (76 MB), downloaded once into the cache; tools/setup.sh builds from it."""
    try:
        return fetch(LLAMA_CPP_SDIST)
    except RuntimeError as err:
        raise ExportError(f"llama.cpp's converter ships only in llama-cpp-python's source archive, which could "
                          f"not be fetched:\n{err}") from err


def converter_dir() -> Path:
    """vendor/llama.cpp/ from the source archive, holding only convert_hf_to_gguf.py, conversion/ and gguf-py/."""
    for member in ("convert_hf_to_gguf.py", "conversion/", "gguf-py/"):
        if not (cache_dir() / "extracted" / f"{LLAMA_CPP_SDIST.name}-{LLAMA_CPP_SDIST.version}" / _VENDOR
                / member).exists():
            fetch_sdist()
        extract(LLAMA_CPP_SDIST, _VENDOR + member)
    folder = cache_dir() / "extracted" / f"{LLAMA_CPP_SDIST.name}-{LLAMA_CPP_SDIST.version}" / _VENDOR
    if not (folder / "convert_hf_to_gguf.py").is_file():
        raise ExportError(f"convert_hf_to_gguf.py is missing from {folder}: delete that folder and run again")
    return folder


def supported_architectures() -> set[str]:
    """The `architectures` names of config.json that the converter handles (its TEXT_MODEL_MAP)."""
    source = (converter_dir() / "conversion" / "__init__.py").read_text(encoding="utf-8")
    for node in ast.parse(source).body:
        if isinstance(node, ast.AnnAssign | ast.Assign):
            target = node.target if isinstance(node, ast.AnnAssign) else node.targets[0]
            if getattr(target, "id", None) == "TEXT_MODEL_MAP":
                return set(ast.literal_eval(node.value))
    raise ExportError("could not read the converter's list of architectures (TEXT_MODEL_MAP)")


# ------------------------------------------------------------------------------ the HF folder


def _adapter_base(lora: Path) -> str:
    """The base model of an adapter: fine-tuning/finetune_lm.py's base/ or settings.json, else peft's record."""
    if (lora / "base" / "config.json").exists():
        return str(lora / "base")
    if (lora / "settings.json").exists():
        return json.loads((lora / "settings.json").read_text())["model"]
    return json.loads((lora / "adapter_config.json").read_text())["base_model_name_or_path"]


def _check_lora(lora: Path) -> dict:
    if not lora.is_dir():
        raise ExportError(f"no adapter folder at '{lora}' (--lora takes the folder a peft adapter was saved to, "
                          "e.g. the --output of fine-tuning/finetune_lm.py)")
    if not (lora / "adapter_config.json").exists():
        raise ExportError(f"'{lora}' has no adapter_config.json: it is not a peft adapter folder")
    config = json.loads((lora / "adapter_config.json").read_text())
    if config.get("peft_type") not in MERGEABLE:
        raise ExportError(f"a {config.get('peft_type')} adapter cannot be merged into the weights (no "
                          f"merge_and_unload); only weight-update methods ({', '.join(MERGEABLE)}) can be exported")
    return config


def prepare(model: str, work_dir: Path, lora: str | Path | None = None, seed: int = 0) -> Path:
    """A folder the converter can read: the model's own folder when it already is one (and no --lora), else
    the model loaded (tiny-* built with `seed`, LoRA merged) and saved with save_pretrained into `work_dir`."""
    from common import ModelNotAvailable, load_model, load_tokenizer, resolve_model

    if lora:
        _check_lora(Path(lora))
    if lora and model is None:
        model = _adapter_base(Path(lora))
    try:
        resolved = resolve_model(model)
    except ModelNotAvailable as err:
        raise ExportError(str(err)) from err
    folder = Path(resolved)
    if not model.startswith("tiny-") and folder.is_dir() and not (folder / "config.json").exists():
        hint = " (it holds a peft adapter: pass it as --lora)" if (folder / "adapter_config.json").exists() else ""
        raise ExportError(f"'{folder}' has no config.json: not a Hugging Face model folder{hint}")
    if lora is None and folder.is_dir():
        return folder
    import torch

    torch.manual_seed(seed)  # tiny-* models are random-init: the seed makes the export reproducible
    has_tokenizer = lora and (Path(lora) / "tokenizer_config.json").exists()  # finetune_lm.py saves it there
    try:
        hf_model = load_model(model)
        tokenizer = load_tokenizer(str(lora) if has_tokenizer else model)
    except (OSError, ValueError) as err:
        raise ExportError(f"could not load '{model}': {err}") from err
    if lora:
        logging.getLogger("bitsandbytes").setLevel(logging.ERROR)  # peft imports it; its CPU notice is noise here
        import peft

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # transformers deprecations peft still triggers
            hf_model = peft.PeftModel.from_pretrained(hf_model, str(lora)).merge_and_unload()
    hf_model.save_pretrained(work_dir)
    tokenizer.save_pretrained(work_dir)
    return work_dir


# ------------------------------------------------------------------------------ convert, quantize


def convert(hf_dir: str | Path, out_file: str | Path, outtype: str = "f16", name: str | None = None,
            verbose: bool = False) -> Path:
    """Run llama.cpp's convert_hf_to_gguf.py in a subprocess: HF folder -> one GGUF file of `outtype`."""
    hf_dir, out_file = Path(hf_dir), Path(out_file)
    if outtype not in CONVERTER_TYPES:
        raise ValueError(f"the converter writes {', '.join(CONVERTER_TYPES)}; quantize() makes {outtype}")
    arch = (json.loads((hf_dir / "config.json").read_text()).get("architectures") or ["(none)"])[0]
    supported = supported_architectures()
    if arch not in supported:
        llama_like = sorted(a for a in supported if a.endswith("ForCausalLM"))[:12]
        raise ExportError(f"architecture '{arch}' is not supported by llama.cpp's converter ({len(supported)} are, "
                          f"e.g. {', '.join(llama_like)}, ...)")
    command = [sys.executable, str(converter_dir() / "convert_hf_to_gguf.py"), str(hf_dir), "--outfile",
               str(out_file), "--outtype", outtype, *(["--model-name", name] if name else [])]
    out_file.parent.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(command, capture_output=not verbose, text=True)
    if result.returncode != 0 or not out_file.exists():
        raise ExportError(f"convert_hf_to_gguf.py failed on {hf_dir}:\n{(result.stderr or '')[-2000:]}")
    return out_file


@contextmanager
def _quiet_llama(verbose: bool):
    """llama.cpp logs every tensor; keep that out of notebooks unless asked."""
    logger = logging.getLogger("llama-cpp-python")
    level = logger.level
    logger.setLevel(logging.DEBUG if verbose else logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def quantize(src: str | Path, dst: str | Path, qtype: str, threads: int = 0, verbose: bool = False) -> Path:
    """Quantize a GGUF (F16/F32) to `qtype` (e.g. q4_k_m) with llama.cpp's own quantizer."""
    import ctypes

    import llama_cpp
    import llama_cpp._logger  # noqa: F401  (routes llama.cpp's log through the logger we quiet)

    if qtype not in QUANT_TYPES:
        raise ValueError(f"unknown quantization type {qtype!r}; choose one of {', '.join(QUANT_TYPES)}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{qtype.upper()}")
    params.nthread = threads
    from llama_cpp._utils import suppress_stdout_stderr  # some of llama.cpp's warnings bypass its logger

    with _quiet_llama(verbose), suppress_stdout_stderr(disable=verbose):
        status = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if status != 0 or not Path(dst).exists():
        raise ExportError(f"llama_model_quantize({src} -> {qtype}) failed with status {status}")
    return Path(dst)


def gguf_name(name: str, gguf_type: str) -> str:
    """<name>.<TYPE>.gguf, the llama.cpp convention (TYPE upper-case: F16, Q8_0, Q4_K_M)."""
    return f"{name}.{gguf_type.upper()}.gguf"


def export(model: str | None = SMOLLM2, out: str | Path = "build/gguf", types=DEFAULT_TYPES,
           lora: str | Path | None = None, name: str | None = None, threads: int = 0,
           verbose: bool = False) -> dict[str, Path]:
    """Export `model` (short name, folder or Hub id; with `lora`, that adapter merged in) to each GGUF type.

    Returns {type: path}. `model=None` with `lora` takes the adapter's own base model."""
    unknown = [t for t in types if t not in TYPES]
    if unknown or not types:
        raise ExportError(f"unknown GGUF type(s) {unknown or types}; choose from {', '.join(TYPES)}")
    if lora is None and model is None:
        model = SMOLLM2
    name = name or (Path(lora).name if lora else Path(model).name)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    converter_dir()  # fail early (download/extract) before loading anything
    paths = {}
    with tempfile.TemporaryDirectory(dir=out, prefix=".export-") as tmp:
        hf_dir = prepare(model, Path(tmp) / "hf", lora)
        for t in [t for t in types if t in CONVERTER_TYPES] or []:
            paths[t] = convert(hf_dir, out / gguf_name(name, t), t, name, verbose)
        if any(t in QUANT_TYPES for t in types):
            f16 = paths.get("f16") or convert(hf_dir, Path(tmp) / gguf_name(name, "f16"), "f16", name, verbose)
            for t in [t for t in types if t in QUANT_TYPES]:
                paths[t] = quantize(f16, out / gguf_name(name, t), t, threads, verbose)
    return {t: paths[t] for t in types}


_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


def tensor_types(path: str | Path) -> list[tuple[str, str, int]]:
    """(name, type, number of weights) of every tensor in a GGUF file, read from its header only.

    gguf's GGUFReader does the same and more, but builds an object per vocabulary entry (seconds per file)."""
    import mmap
    import struct

    from gguf import GGMLQuantizationType

    with open(path, "rb") as f:
        data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)  # only the header pages are read
    if bytes(data[:4]) != b"GGUF":
        raise ExportError(f"{path} is not a GGUF file")
    pos = 8

    def read(fmt: str):
        nonlocal pos
        values = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return values[0] if len(values) == 1 else values

    def skip(value_type: int) -> None:
        nonlocal pos
        if value_type == 8:  # string: u64 length + bytes
            length = read("Q")
            pos += length
        elif value_type == 9:  # array: element type, count, elements
            element, count = read("IQ")
            if element in _SCALARS:
                pos += count * struct.calcsize(_SCALARS[element])
            else:
                for _ in range(count):
                    skip(element)
        else:
            pos += struct.calcsize(_SCALARS[value_type])

    n_tensors, n_kv = read("QQ")
    for _ in range(n_kv):
        skip(8)  # the key, a string
        skip(read("I"))
    tensors = []
    for _ in range(n_tensors):
        length = read("Q")
        name = data[pos:pos + length].decode()
        pos += length
        dims = read(f"{read('I')}Q")
        count = 1
        for d in dims if isinstance(dims, tuple) else (dims,):
            count *= d
        tensors.append((name, GGMLQuantizationType(read("I")).name, count))
        pos += 8  # offset of the tensor data
    data.close()
    return tensors


def size_table(paths: dict[str, Path]) -> list[dict]:
    """File size and bits per weight (file bits / weights in the GGUF) for each exported file."""
    rows = []
    for gguf_type, path in paths.items():
        weights = sum(count for _, _, count in tensor_types(path))
        size = Path(path).stat().st_size
        rows.append({"type": gguf_type.upper(), "file": Path(path).name, "MB": round(size / 1e6, 1),
                     "bits/weight": round(size * 8 / weights, 2)})
    return rows


def launch_server(gguf: str | Path, alias: str | None = None, threads: int = 2, n_ctx: int = 2048,
                  port: int | None = None, timeout: float = 120) -> tuple[subprocess.Popen, str]:
    """Start llama-cpp-python's OpenAI-compatible server (`python -m llama_cpp.server`) on 127.0.0.1, on a free
    port unless given; return the process and its base URL once /v1/models answers. Stop it with terminate()."""
    import socket
    import time
    import urllib.request

    if port is None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
               "--port", str(port), "--n_threads", str(threads), "--n_threads_batch", str(threads), "--n_ctx", str(n_ctx),
               *(["--model_alias", alias] if alias else [])]
    log = tempfile.TemporaryFile(mode="w+")  # a file, not a pipe: a full pipe would block the server
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, text=True)
    base, deadline = f"http://127.0.0.1:{port}", time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"llama_cpp.server exited with code {process.returncode}:\n{log.read()[-2000:]}")
        try:
            with urllib.request.urlopen(base + "/v1/models", timeout=2):
                return process, base
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"llama_cpp.server at {base} did not answer within {timeout:.0f} s")


# ------------------------------------------------------------------------------ Ollama Modelfile


def read_modelfile(path: str | Path) -> dict:
    """FROM, TEMPLATE, SYSTEM and PARAMETER (a list of (name, value)) of an Ollama Modelfile.

    Values may be bare, "quoted" or \"\"\"triple-quoted\"\"\" (multi-line); `#` starts a comment line."""
    text = Path(path).read_text(encoding="utf-8")
    pattern = re.compile(r'^(\w+)[ \t]+("""(.*?)"""|"([^"\n]*)"|([^\n]*))', re.S | re.M)
    result: dict = {"PARAMETER": []}
    for match in pattern.finditer(text):
        command = match.group(1).upper()
        value = next(g for g in match.groups()[2:] if g is not None)
        if command == "PARAMETER":
            key, _, val = value.strip().partition(" ")
            result["PARAMETER"].append((key, json.loads(val) if val.startswith('"') else val.strip()))
        else:
            result[command] = value if match.group(3) is not None else value.strip()
    return result


def render_go_template(template: str, data: dict) -> str:
    """Render the small part of Go's text/template that chat templates use: {{ .Field }}, {{ if COND }},
    {{ else if COND }}, {{ else }}, {{ end }}, {{ range .List }}, COND = `.Field` or `eq .Field "text"`, and
    the {{- -}} whitespace trims. Anything else raises ValueError (use Ollama itself for those)."""
    pieces = re.split(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", template, flags=re.S)
    texts, actions = pieces[0::4], list(zip(pieces[1::4], pieces[2::4], pieces[3::4], strict=True))
    for i, (left, _, right) in enumerate(actions):
        texts[i] = texts[i].rstrip() if left else texts[i]
        texts[i + 1] = texts[i + 1].lstrip() if right else texts[i + 1]
    tokens = [tok for i, text in enumerate(texts) for tok in
              [("text", text)] + ([("action", actions[i][1])] if i < len(actions) else [])]
    tree, end = _parse(tokens, 0)
    if end != len(tokens):
        raise ValueError(f"unexpected {{{{ {tokens[end][1]} }}}}")
    return _render(tree, data, data)


def _parse(tokens: list, i: int) -> tuple[list, int]:
    nodes = []
    while i < len(tokens):
        kind, value = tokens[i]
        if kind == "action" and (value.split() or [""])[0] in ("end", "else"):
            return nodes, i
        i += 1
        head, _, rest = value.partition(" ")
        if kind == "text":
            nodes.append(("text", value))
        elif head in ("if", "range"):
            branches, cond = [], rest
            while True:
                body, i = _parse(tokens, i)
                if i >= len(tokens):
                    raise ValueError(f"{{{{ {value} }}}} has no {{{{ end }}}}")
                branches.append((cond, body))
                closing, i = tokens[i][1], i + 1
                if closing == "end":
                    break
                cond = closing.removeprefix("else").strip().removeprefix("if").strip() or None
            nodes.append((head, branches))
        elif value.startswith(".") or value.startswith("$."):
            nodes.append(("value", value))
        else:
            raise ValueError(f"unsupported template action {{{{ {value} }}}}")
    return nodes, i


def _lookup(expr: str, dot, root):
    if expr.startswith('"'):
        return json.loads(expr)
    obj, path = (root, expr[2:]) if expr.startswith("$.") else (dot, expr[1:])
    for part in filter(None, path.split(".")):
        obj = obj.get(part) if isinstance(obj, dict) else None
    return obj


def _truth(cond: str | None, dot, root) -> bool:
    if cond is None:
        return True
    words = re.findall(r'"[^"]*"|\S+', cond)
    if words[0] == "eq" and len(words) == 3:
        return _lookup(words[1], dot, root) == _lookup(words[2], dot, root)
    if len(words) == 1:
        return bool(_lookup(words[0], dot, root))
    raise ValueError(f"unsupported template condition {cond!r}")


def _render(nodes: list, dot, root) -> str:
    out = []
    for kind, value in nodes:
        if kind == "text":
            out.append(value)
        elif kind == "value":
            out.append(str(_lookup(value, dot, root) or ""))
        elif kind == "if":
            body = next((b for cond, b in value if _truth(cond, dot, root)), [])
            out.append(_render(body, dot, root))
        else:  # range, with an optional else branch for an empty list
            items = _lookup(value[0][0], dot, root) or []
            out.extend(_render(value[0][1], item, root) for item in items)
            if not items and len(value) > 1:
                out.append(_render(value[1][1], dot, root))
    return "".join(out)


def ollama_prompt(modelfile: dict, messages: list[dict]) -> str:
    """The prompt Ollama builds for a chat: the Modelfile's SYSTEM goes first when the chat has no system
    message; .System is all system messages joined; .Messages holds every message as {Role, Content}."""
    if modelfile.get("SYSTEM") and not any(m["role"] == "system" for m in messages):
        messages = [{"role": "system", "content": modelfile["SYSTEM"]}, *messages]
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    data = {"System": system, "Messages": [{"Role": m["role"], "Content": m["content"]} for m in messages]}
    return render_go_template(modelfile["TEMPLATE"], data)


# ------------------------------------------------------------------------------ CLI


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[3:5]))
    parser.add_argument("--model", help=f"short name, local folder or Hub id (default {SMOLLM2}; with --lora, "
                        "the adapter's base model)")
    parser.add_argument("--lora", help="a peft LoRA (or IA3) adapter folder to merge into the model first")
    parser.add_argument("--out", default="build/gguf", help="folder for the .gguf files (default build/gguf)")
    parser.add_argument("--types", nargs="+", default=list(DEFAULT_TYPES), metavar="TYPE",
                        help=f"any of {', '.join(TYPES)} (default: {' '.join(DEFAULT_TYPES)})")
    parser.add_argument("--name", help="file name stem (default: the model or adapter folder name)")
    parser.add_argument("--threads", type=int, default=0, help="quantization threads (default: all cores)")
    parser.add_argument("--verbose", action="store_true", help="show the converter's and quantizer's logs")
    args = parser.parse_args(argv)
    bad = [t for t in args.types if t.lower() not in TYPES]
    if bad:
        parser.error(f"unknown --types {' '.join(bad)}; choose from {', '.join(TYPES)}")
    args.types = [t.lower() for t in args.types]
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        paths = export(args.model if args.model or args.lora else SMOLLM2, args.out, args.types, args.lora,
                       args.name, args.threads, args.verbose)
    except ExportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ImportError as err:
        print(f"error: {err}. Quantizing needs llama-cpp-python: run `make setup` (it builds it once).",
              file=sys.stderr)
        return 2
    rows = size_table(paths)
    print(f"\n{'type':8} {'MB':>8} {'bits/weight':>12}  file")
    for row in rows:
        print(f"{row['type']:8} {row['MB']:8.1f} {row['bits/weight']:12.2f}  {Path(args.out) / row['file']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
