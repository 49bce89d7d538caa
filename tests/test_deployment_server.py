"""deployment/server.py as clients see it: a real subprocess on a free loopback port, the official `openai`
client, raw HTTP for malformed requests, 16 concurrent streams, limits, and clients that go away."""

import asyncio
import json
import subprocess
import sys
import time

import httpx
import pytest
import torch

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "deployment"))

MODEL = "smollm2-135m-instruct"
KEY = "test-key"
LIMITS = ["--max-tokens-limit", "64", "--max-prompt-tokens", "512", "--max-concurrent", "20"]


@pytest.fixture(scope="module")
def server():
    from server import launch
    proc, base = launch("--api-key", KEY, *LIMITS)
    yield base
    proc.terminate()
    proc.wait(timeout=20)


@pytest.fixture(scope="module")
def client(server):
    from openai import OpenAI
    return OpenAI(base_url=server + "/v1", api_key=KEY, max_retries=0)


def health(server) -> dict:
    return httpx.get(server + "/health").json()


def wait_idle(server, seconds=20.0) -> dict:
    deadline = time.time() + seconds
    while time.time() < deadline:
        h = health(server)
        if h["in_flight"] == 0 and h["running"] == 0 and h["waiting"] == 0:
            return h
        time.sleep(0.05)
    raise AssertionError(f"server still busy: {health(server)}")


QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def test_chat_equals_hf_greedy_generate(client, smollm2):
    reply = client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=20)
    model, tokenizer = smollm2
    ids = tokenizer.apply_chat_template(QUESTION, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=20, do_sample=False)
    expected = tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    assert reply.choices[0].message.content == expected and "Paris" in expected
    assert reply.choices[0].finish_reason in ("stop", "length") and reply.model == MODEL
    assert reply.usage.prompt_tokens == ids["input_ids"].shape[1] and 0 < reply.usage.completion_tokens <= 20


def test_streaming_gives_the_same_text(client):
    whole = client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=20).choices[0].message.content
    chunks = list(client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=20, stream=True,
                                                 stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole and chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
    assert chunks[-1].usage.completion_tokens > 0  # the usage chunk comes last


def test_completions_stop_and_models(client):
    out = client.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=12)
    assert out.choices[0].text.strip() and out.usage.prompt_tokens == 5
    stopped = client.completions.create(model=MODEL, prompt="1, 2, 3, 4,", max_tokens=30, stop=[" 7"])
    assert " 7" not in stopped.choices[0].text and stopped.choices[0].finish_reason == "stop"
    assert " 5" in stopped.choices[0].text
    assert {m.id for m in client.models.list()} == {MODEL, "minilm-l6"}


def test_embeddings_rank_by_meaning(client):
    out = client.embeddings.create(model="minilm-l6", input=["a cat sat on the mat", "a kitten on a rug",
                                                              "stock markets fell sharply"])
    v = torch.tensor([d.embedding for d in out.data])
    assert v.shape == (3, 384) and torch.allclose(v.norm(dim=1), torch.ones(3), atol=1e-4)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2


def test_sixteen_concurrent_streams_are_batched(server):
    from openai import AsyncOpenAI

    prompts = [f"Write one sentence about the number {i}." for i in range(16)]

    async def one(client, prompt):
        stream = await client.chat.completions.create(model=MODEL, max_tokens=24, stream=True,
                                                      messages=[{"role": "user", "content": prompt}])
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    async def together():
        client = AsyncOpenAI(base_url=server + "/v1", api_key=KEY, max_retries=0)
        return await asyncio.gather(*(one(client, p) for p in prompts))

    texts = asyncio.run(together())
    assert all(texts) and len(set(texts)) > 8
    assert wait_idle(server)["largest_batch"] >= 8, "concurrent requests were not decoded together"
    # Batched greedy decoding gives what each prompt gets alone.
    from openai import OpenAI
    alone = OpenAI(base_url=server + "/v1", api_key=KEY).chat.completions.create(
        model=MODEL, max_tokens=24, messages=[{"role": "user", "content": prompts[3]}])
    assert alone.choices[0].message.content == texts[3]


BAD = {
    "malformed JSON": (dict(content=b'{"model": "x", "messages": [', headers={"content-type": "application/json"}),
                       400, "not valid JSON"),
    "wrong type": (dict(json={"model": MODEL, "messages": QUESTION, "max_tokens": "many"}), 400, "max_tokens"),
    "no messages": (dict(json={"model": MODEL}), 400, "messages: Field required"),
    "unknown model": (dict(json={"model": "gpt-9", "messages": QUESTION}), 404, "model 'gpt-9' is not served"),
    "max_tokens over the limit": (dict(json={"model": MODEL, "messages": QUESTION, "max_tokens": 5000}), 400,
                                  "max_tokens 5000 is more than this server allows (64"),
    "100,000-character prompt": (dict(json={"model": MODEL, "messages": [{"role": "user", "content": "a" * 100_000}]}),
                                 400, "100,000 characters"),
    "prompt over the token limit": (dict(json={"model": MODEL, "messages": [{"role": "user", "content": "cat " * 600}]}),
                                    400, "this server accepts at most 512"),
    "n=2": (dict(json={"model": MODEL, "messages": QUESTION, "n": 2}), 400, "n:"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_requests_get_a_clear_4xx_and_the_server_keeps_serving(server, client, case):
    request, status, message = BAD[case]
    request = dict(request)
    headers = {"authorization": f"Bearer {KEY}", **request.pop("headers", {})}
    out = httpx.post(server + "/v1/chat/completions", headers=headers, **request)
    assert out.status_code == status and message in out.json()["error"]["message"], out.text
    assert client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=4).choices[0].message.content


def test_api_key_is_required(server):
    from openai import AuthenticationError, OpenAI

    with pytest.raises(AuthenticationError, match="missing or wrong API key"):
        OpenAI(base_url=server + "/v1", api_key="wrong", max_retries=0).models.list()
    assert httpx.get(server + "/health").status_code == 200  # health checks need no key


def test_disconnected_streams_free_their_slots_and_the_limit_answers_429(server, client):
    """20 streams fill --max-concurrent; a 21st gets 429; closing them mid-stream cancels them in the engine."""
    wait_idle(server)
    body = {"model": MODEL, "messages": QUESTION, "max_tokens": 64, "stream": True}
    headers = {"authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=server, headers=headers, timeout=60) as http:
        streams = [http.stream("POST", "/v1/chat/completions", json=body) for _ in range(20)]
        responses = [s.__enter__() for s in streams]
        first_lines = [next(r.iter_lines()) for r in responses]  # each stream has started
        assert all(json.loads(line.removeprefix("data: "))["choices"] for line in first_lines)
        busy = http.post("/v1/chat/completions", json={**body, "stream": False})
        assert busy.status_code == 429 and "busy" in busy.json()["error"]["message"]
        for s in streams:
            s.__exit__(None, None, None)
    wait_idle(server)  # every slot freed well before 64 tokens x 20 requests could have been generated
    assert client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=4).choices[0].message.content


def test_bad_start_is_one_clear_line():
    out = subprocess.run([sys.executable, "deployment/server.py", "--model", "no-such-org/no-such-model",
                          "--port", "0"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stderr.startswith("error: ") and "Traceback" not in out.stderr
    out = subprocess.run([sys.executable, "deployment/server.py", "--model", "tiny-gpt2", "--port", "0",
                          "--embedding-model", "none"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "LLaMA-style" in out.stderr and "Traceback" not in out.stderr


def test_load_generator_gets_exact_token_counts_with_ignore_eos(server):
    """optimization/bench_generate.py's `openai` backend against this server: 6 streams at once, each exactly
    its max_tokens (ignore_eos), first tokens before the ends."""
    sys.path.insert(0, str(ROOT / "optimization"))
    import bench_generate as bg

    from common import load_tokenizer
    tok = load_tokenizer(MODEL)
    items = bg.workload(tok, 6, (16, 64), (4, 24), seed=3)
    result = bg.run("openai", None, tok, items, base_url=server + "/v1", api_key=KEY, concurrency=6)
    assert [t.tokens for t in result.timings] == [i.new_tokens for i in items]
    assert all(0 < t.ttft <= t.latency <= result.seconds for t in result.timings)
    wait_idle(server)


def test_the_worker_thread_runs_every_call_and_hands_back_errors():
    # all PyTorch work (loading, engine, embeddings) goes through Worker.call, so one OpenMP team serves it
    import threading

    from server import Worker
    worker = Worker()
    assert worker.call(threading.current_thread).result(timeout=10) is worker.thread
    with pytest.raises(ValueError, match="invalid literal"):
        worker.call(int, "not a number").result(timeout=10)
    assert worker.load()["running"] == 0  # no engine yet: the health figures still answer


@pytest.mark.parametrize("stop", [[], [" Paris"], ["é 日", "🙂"]])
def test_streamed_text_equals_the_whole_decode(stop):
    """Token by token, the incremental decoder sends exactly the text of the whole answer, up to a stop string."""
    from server import TextStream

    from common import load_tokenizer
    tokenizer = load_tokenizer(MODEL)
    text = "Naïve café: the capital of France is Paris. 日本語も大丈夫 🙂 and   spaces,\nnew lines\ttabs."
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    whole = tokenizer.decode(ids, skip_special_tokens=True)
    stream = TextStream(tokenizer, stop)
    pieces = [stream.push(token) for token in ids] + ([] if stream.stopped else [stream.push(None)])
    assert all("\ufffd" not in piece for piece in pieces)  # never half a character
    cut = min([whole.find(s) for s in stop if s in whole], default=len(whole))
    assert "".join(pieces) == whole[:cut]
    assert stream.stopped == (cut < len(whole))
