"""pretrained/chat_client.py against the local OpenAI-compatible server; SDK and key errors; hosted calls.

The hosted tests run only when the provider's key is set (and, for Anthropic and Gemini, its SDK is
installed); otherwise pytest reports them as skipped with the reason.
"""

import importlib.util
import json
import os
import subprocess
import sys
import types
import urllib.error
import urllib.request

import pytest

from tests.conftest import ROOT

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "pretrained" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


client = _load("chat_client")


@pytest.fixture(scope="module")
def server():
    """The script's own CLI on a free port; yields its base URL."""
    proc = subprocess.Popen([sys.executable, "pretrained/local_openai_server.py", "--port", "0"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # "Serving <model> at http://127.0.0.1:PORT/v1 ..."
        assert "Serving" in line, proc.stderr.read()
        yield line.split(" at ")[1].split()[0]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_chat_against_local_server_answers(server):
    answer = client.chat(QUESTION, "smollm2-135m-instruct", server, max_tokens=20)
    assert "Paris" in answer


def test_chat_passes_options_history_and_system_message(server):
    short = client.chat(QUESTION, "smollm2-135m-instruct", server, max_tokens=2)
    assert 0 < len(short.split()) <= 2
    status, body = _post(f"{server}/chat/completions", {"messages": QUESTION, "max_tokens": 2})
    assert status == 200 and body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 2
    with_system = [{"role": "system", "content": "You are a geography teacher."}] + QUESTION
    _, body_system = _post(f"{server}/chat/completions", {"messages": with_system, "max_tokens": 1})
    assert body_system["usage"]["prompt_tokens"] != body["usage"]["prompt_tokens"]
    history = [{"role": "user", "content": "Hello."}, {"role": "assistant", "content": "Hi!"}] + QUESTION
    _, body_history = _post(f"{server}/chat/completions", {"messages": history, "max_tokens": 1})
    assert body_history["usage"]["prompt_tokens"] > body["usage"]["prompt_tokens"]  # every turn reached the model


def test_server_rejects_bad_requests(server):
    status, body = _post(f"{server}/chat/completions", {"messages": QUESTION, "stream": True})
    assert status == 400 and "streaming" in body["error"]["message"]
    status, body = _post(f"{server}/chat/completions", {"messages": [{"role": "robot", "content": "hi"}]})
    assert status == 400 and "role" in body["error"]["message"]
    status, body = _post(f"{server}/completions", {"prompt": "hi"})
    assert status == 404


def test_cli_asks_an_openai_compatible_endpoint(server):
    out = subprocess.run([sys.executable, "pretrained/chat_client.py", "--base-url", server, "--model",
                          "smollm2-135m-instruct", "--max-tokens", "20", "What is the capital of France?"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "Paris" in out.stdout


def test_missing_key_is_a_clear_error(monkeypatch):
    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(client.MissingAPIKey, match="OPENAI_API_KEY"):
        client.chat(QUESTION, "gpt-4.1-mini")  # the hosted default endpoint
    monkeypatch.setitem(sys.modules, "anthropic", types.SimpleNamespace(Anthropic=None))
    with pytest.raises(client.MissingAPIKey, match="ANTHROPIC_API_KEY"):
        client.complete_anthropic(QUESTION, "claude-sonnet-4-5")
    _fake_genai(monkeypatch, {})
    with pytest.raises(client.MissingAPIKey, match="GEMINI_API_KEY or GOOGLE_API_KEY"):
        client.complete_gemini(QUESTION, "gemini-2.5-flash")
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    out = subprocess.run([sys.executable, "pretrained/chat_client.py", "--model", "gpt-4.1-mini", "hi"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 2 and "OPENAI_API_KEY" in out.stderr and "Traceback" not in out.stderr


def test_missing_sdk_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "anthropic", None)  # import fails as if not installed
    with pytest.raises(client.MissingSDK, match="pip install anthropic"):
        client.complete_anthropic(QUESTION, "claude-sonnet-4-5", api_key="test")
    monkeypatch.setitem(sys.modules, "google.genai", None)
    with pytest.raises(client.MissingSDK, match="pip install google-genai"):
        client.complete_gemini(QUESTION, "gemini-2.5-flash", api_key="test")


def _fake_genai(monkeypatch, calls: dict) -> None:
    """A stand-in for google-genai that records the call (the real SDK is not needed to check its shape)."""
    class Models:
        def generate_content(self, **kwargs):
            calls.update(kwargs)
            return types.SimpleNamespace(text="Paris.")

    genai = types.ModuleType("google.genai")
    genai.Client = lambda api_key: types.SimpleNamespace(models=Models(), api_key=api_key)
    genai.types = types.SimpleNamespace(
        Content=lambda role, parts: {"role": role, "parts": parts},
        Part=types.SimpleNamespace(from_text=lambda text: {"text": text}),
        GenerateContentConfig=lambda **kw: kw)
    google = types.ModuleType("google")
    google.genai = genai
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.genai", genai)


def test_sdk_calls_have_the_documented_shape(monkeypatch):
    calls = {}

    class Messages:
        def create(self, **kwargs):
            calls["anthropic"] = kwargs
            return types.SimpleNamespace(content=[types.SimpleNamespace(type="text", text="Paris.")])

    monkeypatch.setitem(sys.modules, "anthropic", types.SimpleNamespace(
        Anthropic=lambda api_key: types.SimpleNamespace(messages=Messages())))
    conversation = [{"role": "system", "content": "Be brief."}, *QUESTION,
                    {"role": "assistant", "content": "Paris."}, {"role": "user", "content": "And Italy?"}]
    assert client.complete_anthropic(conversation, "claude-x", api_key="k", temperature=0) == "Paris."
    sent = calls["anthropic"]
    assert sent["system"] == "Be brief." and sent["max_tokens"] == 512 and sent["temperature"] == 0
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]

    gemini = {}
    _fake_genai(monkeypatch, gemini)
    assert client.complete_gemini(conversation, "gemini-x", api_key="k", max_output_tokens=9) == "Paris."
    assert [c["role"] for c in gemini["contents"]] == ["user", "model", "user"]
    assert gemini["config"] == {"system_instruction": "Be brief.", "max_output_tokens": 9}
    assert gemini["model"] == "gemini-x"


def _no(*env_vars: str) -> bool:
    return not any(os.environ.get(v) for v in env_vars)


@pytest.mark.skipif(_no("OPENAI_API_KEY"), reason="OPENAI_API_KEY is not set: hosted OpenAI call skipped")
def test_hosted_openai():
    model = os.environ.get("OPENAI_MODEL", "gpt-4.1-mini")
    assert "Paris" in client.chat(QUESTION, model, max_tokens=20)


@pytest.mark.skipif(_no("ANTHROPIC_API_KEY") or importlib.util.find_spec("anthropic") is None,
                    reason="needs ANTHROPIC_API_KEY and `pip install anthropic`: hosted Anthropic call skipped")
def test_hosted_anthropic():
    model = os.environ.get("ANTHROPIC_MODEL", "claude-sonnet-4-5")
    assert "Paris" in client.complete_anthropic(QUESTION, model, max_tokens=20)


def _has_genai() -> bool:
    try:
        return importlib.util.find_spec("google.genai") is not None
    except ModuleNotFoundError:  # no "google" package at all
        return False


@pytest.mark.skipif(_no("GEMINI_API_KEY", "GOOGLE_API_KEY") or not _has_genai(),
                    reason="needs GEMINI_API_KEY (or GOOGLE_API_KEY) and `pip install google-genai`: skipped")
def test_hosted_gemini():
    model = os.environ.get("GEMINI_MODEL", "gemini-2.5-flash")
    assert "Paris" in client.complete_gemini(QUESTION, model, max_output_tokens=20)
