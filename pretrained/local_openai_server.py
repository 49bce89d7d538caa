"""Serve any local causal LM behind a minimal OpenAI-compatible HTTP endpoint (/v1/chat/completions).

Examples:
  python pretrained/local_openai_server.py                      # SmolLM2 on http://127.0.0.1:8000/v1
  python pretrained/local_openai_server.py --port 0             # any free port (printed at start)
  python pretrained/local_openai_server.py --model ./my-finetuned-model --port 8001
  # then, in another terminal:
  python pretrained/chat_client.py --base-url http://127.0.0.1:8000/v1 "What is the capital of France?"
  curl -s http://127.0.0.1:8000/v1/chat/completions -H "Content-Type: application/json" \\
       -d '{"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "Hi"}]}'

Standard library only (http.server), one request at a time, no streaming: enough to learn the protocol
and to test clients offline. Use vLLM, llama.cpp's server or text-generation-inference for real serving.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer

import torch

from common import SMOLLM2, ModelNotAvailable, load_model, load_tokenizer, pick_device


def _plain(message) -> dict:
    """Check one message and flatten OpenAI's list-of-parts content to a string."""
    if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant"):
        raise ValueError("'messages' must be a non-empty list of {'role': 'system'|'user'|'assistant', "
                         "'content': ...} objects")
    content = message.get("content")
    if isinstance(content, list):  # [{"type": "text", "text": "..."}, ...]
        content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
    if not isinstance(content, str):
        raise ValueError("each message needs a text 'content'")
    return {"role": message["role"], "content": content}


def chat_completion(model, tokenizer, request: dict, model_name: str) -> dict:
    """Answer one OpenAI chat-completions request body with a local model; returns the response body."""
    messages = [_plain(m) for m in request.get("messages") or [None]]
    if request.get("stream"):
        raise ValueError("streaming is not supported by this minimal server; send \"stream\": false")
    max_tokens = int(request.get("max_completion_tokens") or request.get("max_tokens") or 256)
    temperature = float(request.get("temperature", 0) or 0)  # default greedy: reproducible answers
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                           return_dict=True).to(model.device)
    sampling = dict(do_sample=True, temperature=temperature, top_p=float(request.get("top_p", 1.0))) \
        if temperature > 0 else dict(do_sample=False, temperature=None, top_p=None, top_k=None)
    if request.get("seed") is not None:
        torch.manual_seed(int(request["seed"]))
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=max_tokens, **sampling,
                             pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    new = out[0, inputs["input_ids"].shape[1]:]
    finished = len(new) > 0 and new[-1].item() == tokenizer.eos_token_id
    prompt_tokens, completion_tokens = inputs["input_ids"].shape[1], len(new)
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
        "model": model_name,
        "choices": [{"index": 0, "finish_reason": "stop" if finished else "length",
                     "message": {"role": "assistant",
                                 "content": tokenizer.decode(new, skip_special_tokens=True).strip()}}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


def make_handler(model, tokenizer, model_name: str) -> type[BaseHTTPRequestHandler]:
    """A request handler class bound to one model: POST /v1/chat/completions and GET /v1/models."""

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str) -> None:
            self._send(status, {"error": {"message": message, "type": "invalid_request_error"}})

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path.rstrip("/") == "/v1/models":
                self._send(200, {"object": "list", "data": [{"id": model_name, "object": "model"}]})
            else:
                self._error(404, f"no route {self.path}; try POST /v1/chat/completions")

        def do_POST(self) -> None:  # noqa: N802
            if self.path.rstrip("/") != "/v1/chat/completions":
                return self._error(404, f"no route {self.path}; try POST /v1/chat/completions")
            try:
                request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                self._send(200, chat_completion(model, tokenizer, request, model_name))
            except (ValueError, TypeError, KeyError) as err:  # bad JSON or bad fields: the client's fault
                self._error(400, str(err))
            except Exception as err:  # anything else: report it, keep serving
                self._send(500, {"error": {"message": f"{type(err).__name__}: {err}", "type": "server_error"}})

        def log_message(self, format, *args) -> None:  # keep the terminal/notebook quiet
            pass

    return Handler


class LocalServer:
    """An OpenAI-compatible server on a background thread; use as a context manager or call close()."""

    def __init__(self, model_name: str = SMOLLM2, host: str = "127.0.0.1", port: int = 0,
                 device: str | None = None):
        tokenizer = load_tokenizer(model_name)
        if not tokenizer.chat_template:
            raise ValueError(f"'{model_name}' has no chat template, so it cannot serve chat completions.")
        model = load_model(model_name, device=pick_device(device)).eval()
        self.httpd = HTTPServer((host, port), make_handler(model, tokenizer, model_name))
        self.model_name = model_name
        self.base_url = f"http://{host}:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def serve(model_name: str = SMOLLM2, host: str = "127.0.0.1", port: int = 0) -> LocalServer:
    """Load `model_name` and serve it in the background; port 0 picks a free port (see .base_url)."""
    return LocalServer(model_name, host, port)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=SMOLLM2, help=f"short name, local folder or Hub id (default {SMOLLM2})")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1, local only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 = any free port)")
    parser.add_argument("--device", help="cpu, cuda, mps (default: the best available)")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error("--port must be between 0 and 65535")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        server = LocalServer(args.model, args.host, args.port, args.device)
    except (ModelNotAvailable, ValueError, RuntimeError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"Serving {args.model} at {server.base_url} (POST /chat/completions). Ctrl-C stops.", flush=True)
    try:
        server.thread.join()
    except KeyboardInterrupt:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
