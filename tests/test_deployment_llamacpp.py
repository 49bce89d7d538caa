"""llama-cpp-python's OpenAI-compatible server (started by export_gguf.launch_server) answers the `openai` client:
chat, streaming equal to non-streaming, and greedy output equal to the in-process `Llama` (once the server's
llama.cpp-style default repeat_penalty=1.1 is turned off)."""

import sys

import pytest

from tests.conftest import ROOT
from tests.test_optimization_export_gguf import _llama_cpp_or_skip

sys.path.insert(0, str(ROOT / "optimization"))
import export_gguf  # noqa: E402

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
GREEDY = {"temperature": 0, "extra_body": {"repeat_penalty": 1.0}}  # the server's default repeat_penalty is 1.1


@pytest.fixture(scope="module")
def server():
    _llama_cpp_or_skip()
    from common.models import smollm2_gguf

    gguf = smollm2_gguf()  # the embedded SmolLM2 is itself a GGUF (Q4_1): nothing to export first
    process, base = export_gguf.launch_server(gguf, alias="smollm2", threads=1)
    yield gguf, base
    process.terminate()
    process.wait(timeout=30)


def test_openai_client_chat_and_stream(server):
    from llama_cpp import Llama
    from openai import OpenAI

    gguf, base = server
    client = OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=120)
    assert [m.id for m in client.models.list().data] == ["smollm2"]
    reply = client.chat.completions.create(model="smollm2", messages=QUESTION, max_tokens=24, **GREEDY)
    text = reply.choices[0].message.content
    assert text.strip() and reply.choices[0].finish_reason in ("stop", "length") and reply.usage.completion_tokens > 0
    stream = client.chat.completions.create(model="smollm2", messages=QUESTION, max_tokens=24, stream=True,
                                            **GREEDY)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == text
    local = Llama(model_path=str(gguf), n_ctx=512, n_threads=1, verbose=False)
    assert local.create_chat_completion(QUESTION, max_tokens=24, temperature=0)["choices"][0]["message"]["content"] == text


def test_launch_server_reports_a_bad_model_file(tmp_path):
    _llama_cpp_or_skip()
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"not a gguf file")
    with pytest.raises(RuntimeError, match="exited with code"):
        export_gguf.launch_server(bad, timeout=60)
