"""An OpenAI-compatible server for a local causal LM that batches concurrent requests (FastAPI + uvicorn).

Examples:
  python deployment/server.py                                  # SmolLM2 on http://127.0.0.1:8000/v1
  python deployment/server.py --port 0                         # any free port (the URL is printed)
  python deployment/server.py --model runs/merged --served-name my-model   # a model fine-tuned here
  python deployment/server.py --api-key s3cret                 # clients send "Authorization: Bearer s3cret"
  python deployment/server.py --max-batch 32 --max-tokens-limit 2048 --dtype bfloat16
  # then, from another terminal:
  curl -s http://127.0.0.1:8000/v1/chat/completions -H "Content-Type: application/json" \\
       -d '{"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "Hi"}]}'
  python pretrained/chat_client.py --base-url http://127.0.0.1:8000/v1 "What is the capital of France?"

Endpoints: POST /v1/chat/completions and /v1/completions (both with "stream": true over server-sent events),
POST /v1/embeddings (MiniLM, mean-pooled and normalised), GET /v1/models, GET /health (no key needed),
GET / and /chat: a chat page that streams from /v1/chat/completions (deployment/static/chat.html, no key needed).

How it serves: every generation request goes into ONE continuous-batching engine (optimization/engine.py: a
paged KV cache, new requests join the running batch at the next step), driven by one worker thread, so 16
concurrent clients share each forward pass instead of waiting in line. The model must be LLaMA-style (LLaMA,
SmolLM, Mistral-like; no attention biases or sliding windows), which is what the engine implements.

Limits, each answered with a 4xx in OpenAI's error format and without disturbing other requests:
max_tokens over --max-tokens-limit (HTTP 400), a prompt over --max-prompt-tokens (HTTP 400), more than
--max-concurrent requests in flight (HTTP 429), an unknown model name (HTTP 404), a missing or wrong key with
--api-key (HTTP 401), malformed JSON or wrong types (HTTP 400). A streaming client that disconnects is cancelled and frees its batch slot.

Choices: greedy decoding unless the request sets "temperature" (--default-temperature changes that; OpenAI's
default is 1.0, which makes a 135M model ramble); n=1 only; binds 127.0.0.1 unless --host says otherwise;
models are loaded without trust_remote_code, so no code from a model folder runs.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import json
import os
import queue
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from common import MINILM, SMOLLM2, ModelNotAvailable, load_model, load_tokenizer

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "optimization"), str(ROOT / "pretrained")]  # the engine and embed() live there
from embed import embed  # noqa: E402
from engine import Engine  # noqa: E402

# ------------------------------------------------------------------------------------ request bodies

class Body(BaseModel):
    model_config = ConfigDict(extra="ignore")  # clients send many optional OpenAI fields; unknown ones are ignored


class Part(Body):
    type: str = "text"
    text: str = ""


class Message(Body):
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[Part] | None = None


class Sampling(Body):
    model: str
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    n: int = Field(1, ge=1, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: dict | None = None
    ignore_eos: bool = False  # vLLM's extension: generate exactly max_tokens (benchmarks use it)


class ChatRequest(Sampling):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)


class CompletionRequest(Sampling):
    prompt: str | list[str]


class EmbeddingRequest(Body):
    model: str
    input: str | list[str]


class ApiError(Exception):
    """An OpenAI-style error response: {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None):
        super().__init__(message)
        self.status, self.body = status, {"error": {"message": message, "type": kind, "param": param, "code": code}}


# ------------------------------------------------------------------------------------ the batching worker

@dataclass
class Job:
    """One generation request as the worker thread sees it; events come back through `events`."""
    prompt: list[int]
    sampling: dict
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue = field(default_factory=asyncio.Queue)  # (token, finish_reason) or an Exception
    request: object = None  # the engine's Request, once added
    released: bool = False  # no longer counted as in flight


class Worker:
    """The one thread that runs PyTorch: it loads the models, owns the engine, adds and cancels jobs between
    steps, runs steps while there is work, and computes embeddings between steps.

    One thread, because the engine is not thread-safe, and because on a CPU every thread that runs PyTorch's
    parallel kernels gets its own OpenMP thread team: with more OpenMP threads than cores, libgomp stops
    spin-waiting between kernels, and each of the ~250 parallel kernels of a decoding step then waits for a
    thread to wake up (measured here: the same engine made 214 instead of 309 tok/s when run from a second
    thread). The asyncio side talks to this thread through `inbox` and receives tokens through each job's
    asyncio queue (call_soon_threadsafe)."""

    def __init__(self):
        self.engine: Engine | None = None  # set by start_engine, in this thread
        self.inbox, self.jobs = queue.SimpleQueue(), {}
        self.largest_batch = 0  # most requests served by one forward pass so far (shows the batching)
        self.in_flight, self.lock = 0, threading.Lock()  # submitted and not yet finished or cancelled
        self.thread = threading.Thread(target=self._loop, name="engine", daemon=True)
        self.thread.start()

    def submit(self, job: Job) -> None:
        with self.lock:
            self.in_flight += 1
        self.inbox.put(("add", job))

    def cancel(self, job: Job) -> None:
        self.inbox.put(("cancel", job))

    def call(self, fn, *args, **kwargs) -> concurrent.futures.Future:
        """Run fn(*args, **kwargs) in the worker thread between two steps; the future holds its result or error."""
        future = concurrent.futures.Future()
        self.inbox.put(("call", (future, fn, args, kwargs)))
        return future

    def start_engine(self, model, **options) -> None:
        """Build the engine (call it through `call`, so that its set-up also runs in this thread)."""
        self.engine = Engine(model, **options)

    def _send(self, job: Job, item) -> None:
        self._send_all([(job, item)])

    @staticmethod
    def _send_all(items: list[tuple[Job, object]]) -> None:
        """Hand events to their jobs' event loops: one wake-up per loop and step, not one per token (each wake-up
        is a write to the loop's self-pipe; one per token cost about 5 % of this thread at 16 streams)."""
        loops: dict[asyncio.AbstractEventLoop, list] = {}
        for job, item in items:
            loops.setdefault(job.loop, []).append((job.events, item))
        for loop, batch in loops.items():
            loop.call_soon_threadsafe(_put_all, batch)

    def _release(self, job: Job) -> None:
        """The job no longer holds a slot: it finished, failed or was cancelled (counted once)."""
        if not job.released:
            job.released = True
            with self.lock:
                self.in_flight -= 1

    def _handle(self, command: str, item) -> None:
        """One inbox item: ("call", (future, fn, args, kwargs)), ("add", job) or ("cancel", job)."""
        job = item
        if command == "call":
            future, fn, args, kwargs = item
            try:
                future.set_result(fn(*args, **kwargs))
            except Exception as err:  # noqa: BLE001 - handed to the caller
                future.set_exception(err)
        elif command == "add":
            try:
                job.request = self.engine.add(job.prompt, **job.sampling)
                self.jobs[job.request.id] = job
            except ValueError as err:
                self._send(job, err)
                self._release(job)
        elif job.request is not None and not job.request.done:
            self.engine.cancel(job.request)
            self.jobs.pop(job.request.id, None)
            self._release(job)

    def _loop(self) -> None:
        while True:
            try:  # block while idle; otherwise take whatever arrived since the last step
                while True:
                    self._handle(*self.inbox.get(block=not (self.engine and self.engine.has_work())))
            except queue.Empty:
                pass
            if self.engine is None:
                continue
            try:
                events = self.engine.step()
            except Exception as err:  # noqa: BLE001 - fail the running requests, keep serving the next ones
                for job in list(self.jobs.values()):
                    self.engine.cancel(job.request)
                    self._send(job, RuntimeError(f"generation failed: {err}"))
                    self._release(job)
                self.jobs.clear()
                continue
            self.largest_batch = max(self.largest_batch, len(events))
            self._send_all([(self.jobs[request.id], (token, request.finish_reason)) for request, token in events])
            for request, _ in events:
                if request.done:
                    self._release(self.jobs.pop(request.id))

    def load(self) -> dict:
        engine = self.engine
        return {"in_flight": self.in_flight, "running": len(engine.running) if engine else 0,
                "waiting": len(engine.waiting) if engine else 0, "largest_batch": self.largest_batch}


def _put_all(batch: list[tuple[asyncio.Queue, object]]) -> None:
    for events, item in batch:
        events.put_nowait(item)


class TextStream:
    """Token ids in, text out: only complete characters, and never text that could be the start of a stop string.

    Decoding is incremental (as in vLLM and TGI): each token decodes only a short window of ids that starts at the
    last piece already added to the text, so that spacing and multi-byte characters come out as in the whole
    text, instead of decoding the whole answer again at every token."""

    def __init__(self, tokenizer, stop: list[str]):
        self.tokenizer, self.stop, self.stopped = tokenizer, [s for s in stop if s], False
        self.ids, self.text, self.sent = [], "", 0  # the ids, the text decoded so far, how much of it was sent
        self.prefix = self.read = 0  # ids[prefix:read] is the window already in `text`; ids[read:] is not yet

    def _decode(self) -> None:
        before = self.tokenizer.decode(self.ids[self.prefix:self.read], skip_special_tokens=True)
        now = self.tokenizer.decode(self.ids[self.prefix:], skip_special_tokens=True)
        if len(now) > len(before) and not now.endswith("\ufffd"):  # \ufffd: half a UTF-8 character, wait
            self.text += now[len(before):]
            self.prefix, self.read = self.read, len(self.ids)

    def push(self, token: int | None) -> str:
        """Add a token (None: the end) and return the new text that is safe to send."""
        if token is not None:
            self.ids.append(token)
            self._decode()
        elif self.read < len(self.ids):  # the end: whatever is left, even half a character
            self.text += self.tokenizer.decode(self.ids, skip_special_tokens=True)[len(self.text):]
            self.read = len(self.ids)
        text = self.text
        hits = [i for i in (text.find(s, max(self.sent - len(s), 0)) for s in self.stop) if i >= 0]
        if hits:
            self.stopped, end = True, min(hits)
        elif token is None:
            end = len(text)
        else:
            held = max((k for s in self.stop for k in range(1, len(s)) if text.endswith(s[:k])), default=0)
            end = len(text) - held
        new, self.sent = text[self.sent:max(end, self.sent)], max(end, self.sent)
        return new


# ------------------------------------------------------------------------------------ the service

@dataclass
class Settings:
    model: str = SMOLLM2
    served_name: str | None = None
    embedding_model: str | None = MINILM
    api_key: str | None = None
    dtype: str = "float32"
    max_batch: int = 16
    kv_cache_tokens: int = 32768
    max_tokens_limit: int = 1024
    default_max_tokens: int = 256
    max_prompt_tokens: int = 4096
    max_concurrent: int = 64
    default_temperature: float = 0.0


class Service:
    """The loaded models, the worker and the request logic; the FastAPI routes are thin wrappers."""

    def __init__(self, settings: Settings):
        self.settings = s = settings
        self.name = s.served_name or s.model
        self.tokenizer = load_tokenizer(s.model)
        self.worker = Worker()  # every PyTorch computation, loading included, runs in its thread (see Worker)
        try:
            model = self.worker.call(load_model, s.model, dtype=getattr(torch, s.dtype)).result()
        except (ValueError, KeyError) as err:  # e.g. a folder without a causal-LM config
            raise ModelNotAvailable(f"cannot load {s.model} as a causal LM: {str(err).splitlines()[0]}") from None
        try:
            self.worker.call(self.worker.start_engine, model, max_batch=s.max_batch,
                             kv_cache_tokens=s.kv_cache_tokens).result()
        except (ValueError, AttributeError) as err:
            raise ModelNotAvailable(f"{s.model} cannot be served by the batching engine ({err}); it needs a "
                                    f"LLaMA-style decoder") from None
        self.context = model.config.max_position_embeddings
        self.embedder = None
        if s.embedding_model:
            encoder = self.worker.call(load_model, s.embedding_model, kind="encoder").result().eval()
            self.embedder = (s.embedding_model, encoder, load_tokenizer(s.embedding_model))

    # ---- checks shared by both generation endpoints
    def check_model(self, name: str) -> None:
        if name != self.name:
            raise ApiError(404, f"model '{name}' is not served here; this server serves '{self.name}' "
                           f"(see GET /v1/models)", param="model", code="model_not_found")

    def sampling(self, body: Sampling, max_tokens: int | None, prompt: list[int]) -> dict:
        s = self.settings
        if len(prompt) > s.max_prompt_tokens:
            raise ApiError(400, f"the prompt has {len(prompt)} tokens; this server accepts at most "
                           f"{s.max_prompt_tokens} (--max-prompt-tokens)", param="messages")
        max_tokens = max_tokens or min(s.default_max_tokens, s.max_tokens_limit)
        if max_tokens > s.max_tokens_limit:
            raise ApiError(400, f"max_tokens {max_tokens} is more than this server allows ({s.max_tokens_limit}; "
                           f"start it with --max-tokens-limit to change that)", param="max_tokens")
        if len(prompt) + max_tokens > self.context:
            raise ApiError(400, f"prompt ({len(prompt)} tokens) + max_tokens ({max_tokens}) exceeds the model's "
                           f"context of {self.context} tokens", param="max_tokens")
        temperature = s.default_temperature if body.temperature is None else body.temperature
        return dict(max_new_tokens=max_tokens, temperature=temperature, top_p=body.top_p, seed=body.seed,
                    ignore_eos=body.ignore_eos)

    def check_text_size(self, text: str) -> None:
        """Refuse a huge prompt before tokenizing it (no real token is shorter than one character)."""
        if len(text) > 16 * self.settings.max_prompt_tokens:
            raise ApiError(400, f"the prompt has {len(text):,} characters, far over the limit of "
                           f"{self.settings.max_prompt_tokens} tokens (--max-prompt-tokens)", param="messages")

    def chat_prompt(self, body: ChatRequest) -> list[int]:
        messages = [{"role": m.role if m.role != "developer" else "system",
                     "content": m.content if isinstance(m.content, str) else
                     "".join(p.text for p in m.content or [] if p.type == "text")} for m in body.messages]
        self.check_text_size("".join(m["content"] for m in messages))
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                  return_dict=True)["input_ids"]

    def completion_prompt(self, body: CompletionRequest) -> list[int]:
        if isinstance(body.prompt, list):
            if len(body.prompt) != 1:
                raise ApiError(400, "send one prompt per request (a list of several is not supported)", "prompt")
            body.prompt = body.prompt[0]
        self.check_text_size(body.prompt)
        return self.tokenizer(body.prompt, add_special_tokens=False)["input_ids"] or [self.tokenizer.eos_token_id]

    # ---- generation
    def start(self, prompt: list[int], sampling: dict) -> Job:
        if self.worker.in_flight >= self.settings.max_concurrent:
            raise ApiError(429, f"the server is busy: {self.worker.in_flight} requests in flight (--max-concurrent "
                           f"{self.settings.max_concurrent}); retry shortly", kind="rate_limit_error")
        job = Job(prompt, sampling, asyncio.get_running_loop())
        self.worker.submit(job)
        return job

    async def pieces(self, job: Job, stop: list[str]):
        """Yield (text, finish_reason) pieces of one job; cancels it in the engine if the consumer goes away."""
        text = TextStream(self.tokenizer, stop)
        try:
            while True:
                item = await job.events.get()
                if isinstance(item, Exception):
                    raise ApiError(400 if isinstance(item, ValueError) else 500, str(item),
                                   kind="invalid_request_error" if isinstance(item, ValueError) else "server_error")
                token, reason = item
                piece = text.push(token) + (text.push(None) if reason else "")
                if text.stopped:
                    yield piece, "stop"
                    return
                yield piece, reason
                if reason:
                    return
        finally:
            if not job.released:
                self.worker.cancel(job)  # client gone or stop string hit: free the batch slot now

    async def complete(self, job: Job, stop: list[str]) -> tuple[str, str, int]:
        text, reason, count = "", "stop", 0
        async with contextlib.aclosing(self.pieces(job, stop)) as pieces:
            async for piece, finish in pieces:
                text, count = text + piece, count + 1
                reason = finish or reason
        return text, reason, count


def stops(stop: str | list[str] | None) -> list[str]:
    stop = [stop] if isinstance(stop, str) else list(stop or [])
    if len(stop) > 4:
        raise ApiError(400, "at most 4 stop sequences", param="stop")
    return stop


# ------------------------------------------------------------------------------------ the HTTP app

def create_app(service: Service):
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse, StreamingResponse

    app = FastAPI(title="llm-path OpenAI-compatible server")
    key = service.settings.api_key

    @app.exception_handler(ApiError)
    async def api_error(_, err: ApiError):
        return JSONResponse(err.body, status_code=err.status)

    @app.exception_handler(RequestValidationError)
    async def bad_body(_, err: RequestValidationError):
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"] if p != "body") or "body"
        message = "the body is not valid JSON" if first["type"] == "json_invalid" else f"{where}: {first['msg']}"
        return JSONResponse(ApiError(400, message, param=where).body, status_code=400)

    @app.middleware("http")
    async def check_key(request: Request, call_next):
        if key and request.url.path.startswith("/v1/") and request.headers.get("authorization") != f"Bearer {key}":
            body = ApiError(401, "missing or wrong API key: send 'Authorization: Bearer <key>'",
                            kind="authentication_error", code="invalid_api_key").body
            return JSONResponse(body, status_code=401)
        return await call_next(request)

    @app.get("/", include_in_schema=False)
    @app.get("/chat", include_in_schema=False)
    async def chat_page():
        return FileResponse(ROOT / "deployment" / "static" / "chat.html")  # the page calls /v1/ with the key

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": service.name, **service.worker.load()}

    @app.get("/v1/models")
    async def models():
        names = [service.name] + ([service.embedder[0]] if service.embedder else [])
        return {"object": "list", "data": [{"id": n, "object": "model", "created": 0, "owned_by": "local"}
                                           for n in names]}

    def envelope(kind: str, request_id: str, **extra) -> dict:
        return {"id": request_id, "object": kind, "created": int(time.time()), "model": service.name, **extra}

    def usage(prompt: list[int], count: int) -> dict:
        return {"prompt_tokens": len(prompt), "completion_tokens": count, "total_tokens": len(prompt) + count}

    async def generate(body: Sampling, prompt: list[int], max_tokens: int | None, chat: bool):
        sampling = service.sampling(body, max_tokens, prompt)
        stop = stops(body.stop)
        job = service.start(prompt, sampling)
        request_id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        kind = "chat.completion" if chat else "text_completion"
        if not body.stream:
            text, reason, count = await service.complete(job, stop)
            choice = ({"message": {"role": "assistant", "content": text}} if chat else {"text": text, "logprobs": None})
            return envelope(kind, request_id, choices=[{"index": 0, **choice, "finish_reason": reason}],
                            usage=usage(prompt, count))
        return StreamingResponse(sse(job, stop, request_id, kind + (".chunk" if chat else ""), chat, prompt, body),
                                 media_type="text/event-stream")

    async def sse(job, stop, request_id, kind, chat, prompt, body):
        def chunk(delta: dict | str, reason=None, **extra) -> str:
            choice = {"delta": delta} if chat else {"text": delta, "logprobs": None}
            data = envelope(kind, request_id, choices=[{"index": 0, **choice, "finish_reason": reason}], **extra)
            return f"data: {json.dumps(data)}\n\n"

        count = 0
        if chat:
            yield chunk({"role": "assistant", "content": ""})
        try:
            async with contextlib.aclosing(service.pieces(job, stop)) as pieces:  # closed at once if the client goes
                async for piece, reason in pieces:
                    count += 1
                    if piece or reason:
                        yield chunk({"content": piece} if chat else piece, reason)
        except ApiError as err:
            yield f"data: {json.dumps(err.body)}\n\n"
        if (body.stream_options or {}).get("include_usage"):
            yield f"data: {json.dumps(envelope(kind, request_id, choices=[], usage=usage(prompt, count)))}\n\n"
        yield "data: [DONE]\n\n"

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatRequest):
        service.check_model(body.model)
        prompt = service.chat_prompt(body)
        return await generate(body, prompt, body.max_completion_tokens or body.max_tokens, chat=True)

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest):
        service.check_model(body.model)
        return await generate(body, service.completion_prompt(body), body.max_tokens, chat=False)

    @app.post("/v1/embeddings")
    async def embeddings(body: EmbeddingRequest):
        if not service.embedder or body.model != service.embedder[0]:
            served = f"'{service.embedder[0]}'" if service.embedder else "none (--embedding-model none)"
            raise ApiError(404, f"embedding model '{body.model}' is not served here; served: {served}",
                           param="model", code="model_not_found")
        texts = [body.input] if isinstance(body.input, str) else body.input
        if not texts or sum(map(len, texts)) > 16 * service.settings.max_prompt_tokens:
            raise ApiError(400, "input must be 1 or more texts within the prompt limit", param="input")
        name, model, tokenizer = service.embedder
        vectors = await asyncio.wrap_future(service.worker.call(embed, texts, model, tokenizer))
        tokens = sum(len(ids) for ids in tokenizer(texts)["input_ids"])
        return {"object": "list", "model": name, "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                "data": [{"object": "embedding", "index": i, "embedding": v.tolist()} for i, v in enumerate(vectors)]}

    return app


# ------------------------------------------------------------------------------------ command line

def launch(*args: str, timeout: float = 180) -> tuple[subprocess.Popen, str]:
    """Start this server as a subprocess on a free port (unless --port is given); return it and its base URL
    (http://127.0.0.1:PORT) once /health answers. Stop it with process.terminate()."""
    import httpx

    command = [sys.executable, str(Path(__file__).resolve()), *(["--port", "0"] if "--port" not in args else []), *args]
    log = tempfile.TemporaryFile(mode="w+")  # a file, not a pipe: a full pipe would block the server
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True)
    line = process.stdout.readline()  # "Serving NAME on http://HOST:PORT/v1", or nothing if it failed
    if "http://" not in line:
        process.wait(timeout=30)
        log.seek(0)
        raise RuntimeError(f"the server did not start: {log.read().strip()}")
    base = line.split()[-1].removesuffix("/v1")
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if httpx.get(base + "/health", timeout=2).status_code == 200:
                return process, base
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"the server at {base} did not answer /health within {timeout:.0f} s")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--model", default=SMOLLM2, help=f"short name, local folder or Hub id (default {SMOLLM2})")
    add("--served-name", help="the model name clients send (default: --model)")
    add("--embedding-model", default=MINILM, help=f"encoder for /v1/embeddings, or 'none' (default {MINILM})")
    add("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    add("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    add("--api-key", default=os.environ.get("LLM_PATH_API_KEY"), help="require this bearer key (default: "
        "$LLM_PATH_API_KEY, else no key)")
    add("--dtype", default="float32", choices=["float32", "bfloat16", "float16"], help="weights (default float32)")
    add("--max-batch", type=int, default=16, help="requests decoded together in one step (default 16)")
    add("--kv-cache-tokens", type=int, default=32768, help="KV cache size in tokens over all requests (default 32768)")
    add("--max-tokens-limit", type=int, default=1024, help="largest max_tokens a request may ask for (default 1024)")
    add("--default-max-tokens", type=int, default=256, help="max_tokens when a request sets none (default 256)")
    add("--max-prompt-tokens", type=int, default=4096, help="longest prompt accepted (default 4096)")
    add("--max-concurrent", type=int, default=64, help="requests in flight before 429 (default 64)")
    add("--default-temperature", type=float, default=0.0, help="when a request sets none (default 0: greedy)")
    args = parser.parse_args(argv)
    for name in ("max_batch", "kv_cache_tokens", "max_tokens_limit", "default_max_tokens", "max_prompt_tokens",
                 "max_concurrent"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main(argv=None) -> int:
    import uvicorn

    args = parse_args(argv)
    settings = Settings(model=args.model, served_name=args.served_name, api_key=args.api_key, dtype=args.dtype,
                        embedding_model=None if args.embedding_model == "none" else args.embedding_model,
                        max_batch=args.max_batch, kv_cache_tokens=args.kv_cache_tokens,
                        max_tokens_limit=args.max_tokens_limit, default_max_tokens=args.default_max_tokens,
                        max_prompt_tokens=args.max_prompt_tokens, max_concurrent=args.max_concurrent,
                        default_temperature=args.default_temperature)
    try:
        sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((args.host, args.port))
    except OSError as err:
        print(f"error: cannot listen on {args.host}:{args.port} ({err.strerror}); pick another --port", file=sys.stderr)
        return 2
    try:
        service = Service(settings)
    except ModelNotAvailable as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.api_key:
        print(f"warning: listening on {args.host} without --api-key: anyone who can reach it can use it",
              file=sys.stderr)
    port = sock.getsockname()[1]
    print(f"Serving {service.name} on http://{args.host}:{port}/v1", flush=True)
    config = uvicorn.Config(create_app(service), log_level="warning", timeout_graceful_shutdown=2)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
