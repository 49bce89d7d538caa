"""Benchmark text generation: tokens/s, time to first token and latency percentiles, as JSON.

Every backend gets the SAME workload: N requests whose prompts are real text (the Python language reference)
cut to mixed lengths, each asking for its own number of new tokens. End-of-sequence is ignored, so every
backend produces exactly the requested tokens and the figures compare like with like. For the in-process
backends all requests arrive at time 0 (an offline batch), so time to first token includes the wait in line;
for `openai`, --concurrency clients each send a request when their previous one is answered, and times are
counted from when each request was sent (what a user of the server waits).

Backends:
  hf          transformers `generate`, one request after the other (sequential)
  hf-batch    transformers `generate` on static padded batches of --batch-size requests (left padding; a
              batch runs until its longest request is done, so only each request's own tokens are counted)
  engine      optimization/engine.py: continuous batching over a paged KV cache, --batch-size slots
  ceiling     the engine's schedule timed as if each step cost ONLY its weight matmuls (the same oneDNN calls):
              the tokens/s that no server built on these matmul kernels can beat on this workload
  llamacpp    llama-cpp-python on a GGUF file (--gguf), one request after the other
  openai      any OpenAI-compatible server (--base-url): deployment/server.py, llama.cpp's server, vLLM;
              --concurrency async streaming clients, text prompts, `ignore_eos` asked for where supported

Examples:
  python optimization/bench_generate.py --backend engine                       # 16 mixed requests, bf16
  python optimization/bench_generate.py --backend hf-batch --batch-size 16 --json hf.json
  python optimization/bench_generate.py --backend ceiling --new-tokens 16:80   # the matmul-only bound
  python optimization/bench_generate.py --backend hf --requests 4 --new-tokens 64:64 --dtype float32
  python optimization/bench_generate.py --backend llamacpp --gguf build/smollm2.Q4_K_M.gguf
  python optimization/bench_generate.py --backend openai --base-url http://127.0.0.1:8000/v1 --concurrency 16
  python optimization/bench_generate.py --model HuggingFaceTB/SmolLM2-360M-Instruct --backend engine

Python API (the lessons, evaluation/ and deployment/ use it):
  workload(tokenizer, requests=16, prompt_tokens=(32, 256), new_tokens=(16, 128), seed=0) -> [Item, ...]
  run(backend, model=None, tokenizer=None, items=..., batch_size=16, ...) -> Result (.summary() -> dict)
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "optimization")]
from common import SMOLLM2, ModelNotAvailable, load_dataset, load_model, load_tokenizer  # noqa: E402

BACKENDS = ("hf", "hf-batch", "engine", "ceiling", "llamacpp", "openai")
DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32, "float16": torch.float16}


@dataclass
class Item:
    """One request of the workload: prompt token ids and how many new tokens it asks for."""

    prompt: list[int]
    new_tokens: int


@dataclass
class Timing:
    """When one request got its first token and finished, in seconds from its arrival (see the module doc)."""

    ttft: float
    latency: float
    tokens: int


@dataclass
class Result:
    backend: str
    seconds: float
    timings: list[Timing]
    settings: dict = field(default_factory=dict)

    def summary(self) -> dict:
        """Aggregate figures: tokens/s over the whole run, TTFT and latency p50/p95 over the requests."""
        tokens = sum(t.tokens for t in self.timings)
        ttft, latency = [t.ttft for t in self.timings], [t.latency for t in self.timings]
        return {"backend": self.backend, "requests": len(self.timings), "new_tokens": tokens,
                "seconds": round(self.seconds, 3), "tokens_per_s": round(tokens / self.seconds, 1),
                "ttft_p50": round(percentile(ttft, 50), 3), "ttft_p95": round(percentile(ttft, 95), 3),
                "latency_p50": round(percentile(latency, 50), 3),
                "latency_p95": round(percentile(latency, 95), 3), **self.settings}


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100), like numpy's default."""
    values = sorted(values)
    if len(values) == 1:
        return values[0]
    pos = (len(values) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (pos - low)


def parse_range(text: str) -> tuple[int, int]:
    """'32:256' -> (32, 256); '64' -> (64, 64)."""
    low, _, high = text.partition(":")
    low_i, high_i = int(low), int(high or low)
    if not 1 <= low_i <= high_i:
        raise argparse.ArgumentTypeError(f"expected N or LOW:HIGH with 1 <= LOW <= HIGH, got {text!r}")
    return low_i, high_i


def workload(tokenizer, requests: int = 16, prompt_tokens: tuple[int, int] = (32, 256),
             new_tokens: tuple[int, int] = (16, 128), seed: int = 0) -> list[Item]:
    """Prompts cut from the Python language reference at random lengths; new-token counts drawn at random."""
    rng = random.Random(seed)
    texts = [t for t in load_dataset("python_docs")["train"]["text"] if len(t) > 4000]
    items = []
    for _ in range(requests):
        ids = tokenizer(rng.choice(texts))["input_ids"]
        length = rng.randint(*prompt_tokens)
        start = rng.randint(0, max(0, len(ids) - length))
        items.append(Item(ids[start:start + length], rng.randint(*new_tokens)))
    return items


class _Clock:
    """A stopping criterion that never stops: it records when each generation step ends (HF calls it then)."""

    def __init__(self, start: float):
        self.start, self.steps = start, []

    def __call__(self, input_ids, scores, **kwargs) -> torch.Tensor:
        self.steps.append(time.perf_counter() - self.start)
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


def _hf_generate(model, items: list[Item], start: float) -> list[Timing]:
    """One padded batch through HF generate; each row gets its own first-token and done times."""
    pad = model.generation_config.pad_token_id
    pad = pad if pad is not None else 0
    width = max(len(i.prompt) for i in items)
    ids = torch.tensor([[pad] * (width - len(i.prompt)) + i.prompt for i in items], device=model.device)
    mask = torch.tensor([[0] * (width - len(i.prompt)) + [1] * len(i.prompt) for i in items], device=model.device)
    steps = max(i.new_tokens for i in items)
    clock = _Clock(start)
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=steps, min_new_tokens=steps,
                             do_sample=False, pad_token_id=pad, stopping_criteria=[clock])
    assert out.shape[1] - width == steps, "generate stopped early"
    return [Timing(clock.steps[0], clock.steps[i.new_tokens - 1], i.new_tokens) for i in items]


def run_hf(model, items: list[Item], batch_size: int) -> tuple[float, list[Timing]]:
    start, timings = time.perf_counter(), []
    for b in range(0, len(items), batch_size):
        timings += _hf_generate(model, items[b:b + batch_size], start)
    return time.perf_counter() - start, timings


def _engine(model, items: list[Item], batch_size: int, block_size: int):
    """An engine with a KV cache that holds the whole workload, and no EOS: every request makes exactly its tokens."""
    from engine import Engine

    kv_tokens = sum(len(i.prompt) + i.new_tokens for i in items) + block_size * len(items)
    return Engine(model, max_batch=batch_size, block_size=block_size, kv_cache_tokens=kv_tokens, eos_token_ids=())


def run_engine(model, items: list[Item], batch_size: int, block_size: int = 16) -> tuple[float, list[Timing]]:
    engine = _engine(model, items, batch_size, block_size)
    start = time.perf_counter()
    requests = [engine.add(i.prompt, max_new_tokens=i.new_tokens) for i in items]
    for r in requests:
        r.arrived = start
    engine.run()
    seconds = time.perf_counter() - start
    return seconds, [Timing(r.first_token_at - start, r.finished_at - start, len(r.output)) for r in requests]


def run_ceiling(model, items: list[Item], batch_size: int, block_size: int = 16) -> tuple[float, list[Timing]]:
    """The engine's schedule (which requests run in which step, how many tokens each feeds), then each step
    replayed as its weight matmuls alone, on the engine's own prepacked weights: attention, norms, sampling,
    Python and HTTP all cost extra, so a real server on these kernels is slower than this on the workload."""
    engine = _engine(model, items, batch_size, block_size)
    requests = [engine.add(i.prompt, max_new_tokens=i.new_tokens) for i in items]
    schedule = []  # per step: (tokens fed, the requests that got a token)
    while engine.has_work():
        cached = {id(r): r.cached for r in requests}
        got = [r for r, _ in engine.step()]
        schedule.append((sum(len(r.tokens) - 1 - cached[id(r)] for r in got), got))
    widths = {m.in_features for m in engine.model.modules() if isinstance(m, torch.nn.Linear)}
    most = max(tokens for tokens, _ in schedule)
    inputs = {w: torch.randn(most, w, dtype=engine.dtype, device=engine.device) for w in widths}  # made untimed
    first, done, clock = {}, {}, 0.0
    for tokens, got in schedule:
        start = time.perf_counter()
        _weight_matmuls(engine, {w: x[:tokens] for w, x in inputs.items()}, len(got))
        clock += time.perf_counter() - start
        for r in got:
            first.setdefault(id(r), clock)
            done[id(r)] = clock
    return clock, [Timing(first[id(r)], done[id(r)], len(r.output)) for r in requests]


@torch.inference_mode()
def _weight_matmuls(engine, inputs: dict[int, torch.Tensor], rows: int) -> None:
    """Every linear layer of one engine step (inputs: a packed-token tensor per input width), and the LM head
    on `rows` tokens, one per request, as the engine runs it."""
    for layer in engine.model.model.layers:
        attn, mlp = layer.self_attn, layer.mlp
        engine._fused((attn.q_proj, attn.k_proj, attn.v_proj), inputs[attn.q_proj.in_features])
        engine._linear(attn.o_proj, inputs[attn.o_proj.in_features])
        engine._fused((mlp.gate_proj, mlp.up_proj), inputs[mlp.gate_proj.in_features])
        engine._linear(mlp.down_proj, inputs[mlp.down_proj.in_features])
    head = engine.model.lm_head
    engine._linear(head, inputs[head.in_features][:rows])


def run_llamacpp(gguf: str, items: list[Item], threads: int) -> tuple[float, list[Timing]]:
    try:
        from llama_cpp import Llama
    except ImportError as err:
        raise SystemExit("the llamacpp backend needs llama-cpp-python: see deployment/README.md") from err
    llm = Llama(model_path=gguf, n_ctx=max(len(i.prompt) + i.new_tokens for i in items) + 8, n_threads=threads,
                n_threads_batch=threads, n_batch=512, verbose=False)  # else the prompt uses every core
    start, timings = time.perf_counter(), []
    for item in items:
        llm.reset()
        first, count = None, 0
        for _token in llm.generate(item.prompt, temp=0.0, top_k=1, reset=True):
            first = first or time.perf_counter() - start
            count += 1
            if count == item.new_tokens:
                break
        timings.append(Timing(first, time.perf_counter() - start, count))
    return time.perf_counter() - start, timings


async def _openai_all(base_url: str, model_name: str, prompts: list[str], items: list[Item], concurrency: int,
                      api_key: str, count_tokens=None) -> tuple[float, list[Timing]]:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=600)
    gate = asyncio.Semaphore(concurrency)
    start = time.perf_counter()

    async def one(prompt: str, item: Item) -> Timing:
        async with gate:  # a client sends its next request when its previous one is done
            sent, first, count, text = time.perf_counter(), None, None, []
            stream = await client.completions.create(
                model=model_name, prompt=prompt, max_tokens=item.new_tokens, temperature=0.0, stream=True,
                stream_options={"include_usage": True}, extra_body={"ignore_eos": True})
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].text:
                    first = first or time.perf_counter() - sent
                    text.append(chunk.choices[0].text)
                if chunk.usage:
                    count = chunk.usage.completion_tokens
            if count is None:  # a server that does not report usage in streams (llama-cpp-python): re-tokenize
                count = count_tokens("".join(text)) if count_tokens else len(text)
            return Timing(first or time.perf_counter() - sent, time.perf_counter() - sent, count)

    timings = await asyncio.gather(*(one(p, i) for p, i in zip(prompts, items, strict=True)))
    await client.close()
    return time.perf_counter() - start, list(timings)


def _run_sync(coroutine):
    """asyncio.run, also from Jupyter, where this thread already runs an event loop: then in a helper thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def run(backend: str, model=None, tokenizer=None, items: list[Item] | None = None, batch_size: int = 16,
        warmup: bool = True, **options) -> Result:
    """Run one backend on the workload; options: gguf, threads, base_url, model_name, concurrency, api_key."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend in ("hf", "hf-batch", "engine", "ceiling") and warmup:  # first calls pay for allocations, kernels
        (run_engine if backend in ("engine", "ceiling") else run_hf)(model, [Item(items[0].prompt[:8], 2)], 1)
    if backend == "hf":
        seconds, timings = run_hf(model, items, 1)
    elif backend == "hf-batch":
        seconds, timings = run_hf(model, items, batch_size)
    elif backend == "engine":
        seconds, timings = run_engine(model, items, batch_size)
    elif backend == "ceiling":
        seconds, timings = run_ceiling(model, items, batch_size)
    elif backend == "llamacpp":
        seconds, timings = run_llamacpp(options["gguf"], items, options.get("threads", torch.get_num_threads()))
    else:
        prompts = [tokenizer.decode(i.prompt) for i in items]
        count = lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
        seconds, timings = _run_sync(_openai_all(options["base_url"], options.get("model_name", SMOLLM2), prompts,
                                                   items, options.get("concurrency", 16),
                                                   options.get("api_key", "none"), count))
    settings = {k: options[k] for k in ("dtype", "concurrency") if k in options}
    if backend in ("hf-batch", "engine", "ceiling"):
        settings["batch_size"] = batch_size
    return Result(backend, seconds, timings, settings)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:4]))
    parser.add_argument("--backend", choices=BACKENDS, default="engine")
    parser.add_argument("--model", default=SMOLLM2, help="short name, local folder or Hub id (default: %(default)s)")
    parser.add_argument("--dtype", choices=list(DTYPES), default="bfloat16")
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--prompt-tokens", type=parse_range, default=(32, 256), help="LOW:HIGH (default 32:256)")
    parser.add_argument("--new-tokens", type=parse_range, default=(16, 128), help="LOW:HIGH (default 16:128)")
    parser.add_argument("--batch-size", type=int, default=16, help="hf-batch batch / engine slots")
    parser.add_argument("--concurrency", type=int, default=16, help="openai: clients in flight")
    parser.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--served-name", default=SMOLLM2, help="openai: the model name the server expects")
    parser.add_argument("--api-key", default="none")
    parser.add_argument("--gguf", help="llamacpp: path to a .gguf file")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the summary and per-request timings here")
    args = parser.parse_args(argv)
    if args.backend == "llamacpp" and not args.gguf:
        parser.error("--backend llamacpp needs --gguf PATH (make one with optimization/export_gguf.py)")
    if args.requests < 1 or args.batch_size < 1 or args.concurrency < 1:
        parser.error("--requests, --batch-size and --concurrency must be at least 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        tokenizer = load_tokenizer(args.model)
        model = None
        if args.backend in ("hf", "hf-batch", "engine", "ceiling"):
            model = load_model(args.model, dtype=DTYPES[args.dtype])
    except ModelNotAvailable as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    items = workload(tokenizer, args.requests, args.prompt_tokens, args.new_tokens, args.seed)
    result = run(args.backend, model, tokenizer, items, args.batch_size, dtype=args.dtype, gguf=args.gguf,
                 threads=args.threads, base_url=args.base_url, model_name=args.served_name,
                 concurrency=args.concurrency, api_key=args.api_key)
    summary = result.summary()
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"summary": summary, "timings": [asdict(t) for t in result.timings]},
                                        indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
