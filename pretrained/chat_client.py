"""Ask a chat model a question the way applications do: any OpenAI-compatible endpoint, Anthropic or Gemini.

Examples:
  python pretrained/chat_client.py --local "What is the capital of France?"   # embedded SmolLM2, offline
  python pretrained/chat_client.py --base-url http://127.0.0.1:8000/v1 "Hi"    # local_openai_server.py, vLLM,
                                                                              # llama.cpp server, Ollama ...
  python pretrained/chat_client.py --system "Answer in French." --local "What is the capital of Italy?"
  OPENAI_API_KEY=... python pretrained/chat_client.py --model gpt-4.1-mini "Hi"             # api.openai.com
  ANTHROPIC_API_KEY=... python pretrained/chat_client.py --provider anthropic --model claude-sonnet-4-5 "Hi"
  GEMINI_API_KEY=... python pretrained/chat_client.py --provider gemini --model gemini-2.5-flash "Hi"

Hosted providers need their key in the environment (OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY or
GOOGLE_API_KEY) and, for Anthropic and Gemini, their SDK (pip install anthropic / google-genai). Model ids
change over time: take current ones from the provider's model list.
"""

from __future__ import annotations

import argparse
import os
import sys
from urllib.parse import urlparse

OPENAI_URL = "https://api.openai.com/v1"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "0.0.0.0")

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": "..."}


class MissingSDK(ImportError):
    """A provider's Python SDK is not installed; the message says what to pip install."""


class MissingAPIKey(RuntimeError):
    """A hosted endpoint needs an API key and none was given or found in the environment."""


def _key(api_key: str | None, env_vars: tuple[str, ...], provider: str) -> str:
    key = api_key or next((os.environ[v] for v in env_vars if os.environ.get(v)), None)
    if not key:
        raise MissingAPIKey(f"No API key for {provider}: pass api_key=... or set {' or '.join(env_vars)}.")
    return key


def chat(messages: list[Message], model: str, base_url: str = OPENAI_URL, api_key: str | None = None,
         **options) -> str:
    """Send a conversation to any OpenAI-compatible /chat/completions endpoint; return the reply text.

    `options` go to the request unchanged (max_tokens, temperature, top_p, seed, stop, ...), except
    `timeout` and `max_retries`, which configure the client. A local endpoint (127.0.0.1, localhost)
    needs no key; any other needs `api_key` or OPENAI_API_KEY.
    """
    from openai import OpenAI

    if urlparse(base_url).hostname in LOCAL_HOSTS:
        api_key = api_key or "not-needed"  # local servers ignore it, but the client insists on one
    else:
        api_key = _key(api_key, ("OPENAI_API_KEY",), base_url)
    client = OpenAI(base_url=base_url, api_key=api_key, timeout=options.pop("timeout", 120),
                    max_retries=options.pop("max_retries", 2))
    response = client.chat.completions.create(model=model, messages=messages, **options)
    return response.choices[0].message.content or ""


def _split_system(messages: list[Message]) -> tuple[str, list[Message]]:
    """Anthropic and Gemini take the system prompt apart from the turns."""
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    return system, [m for m in messages if m["role"] != "system"]


def complete_anthropic(messages: list[Message], model: str, api_key: str | None = None,
                       max_tokens: int = 512, **options) -> str:
    """The same conversation through Anthropic's SDK (Messages API): `pip install anthropic`.

    Differences to the OpenAI format: the system prompt is a separate `system=` argument, `max_tokens`
    is required, and the reply is a list of content blocks.
    """
    try:
        import anthropic
    except ImportError:
        raise MissingSDK("The Anthropic SDK is not installed: pip install anthropic") from None
    client = anthropic.Anthropic(api_key=_key(api_key, ("ANTHROPIC_API_KEY",), "Anthropic"))
    system, turns = _split_system(messages)
    if system:
        options["system"] = system
    response = client.messages.create(model=model, max_tokens=max_tokens, messages=turns, **options)
    return "".join(block.text for block in response.content if block.type == "text")


def complete_gemini(messages: list[Message], model: str, api_key: str | None = None, **options) -> str:
    """The same conversation through Google's Gen AI SDK (Gemini API): `pip install google-genai`.

    Differences: the assistant's role is called "model", a turn's text sits in `parts`, and the system
    prompt and sampling options (temperature, max_output_tokens, ...) go into a GenerateContentConfig.
    """
    try:
        from google import genai
        from google.genai import types
    except ImportError:
        raise MissingSDK("The Google Gen AI SDK is not installed: pip install google-genai") from None
    client = genai.Client(api_key=_key(api_key, ("GEMINI_API_KEY", "GOOGLE_API_KEY"), "Gemini"))
    system, turns = _split_system(messages)
    contents = [types.Content(role="model" if m["role"] == "assistant" else "user",
                              parts=[types.Part.from_text(text=m["content"])]) for m in turns]
    config = types.GenerateContentConfig(system_instruction=system or None, **options)
    response = client.models.generate_content(model=model, contents=contents, config=config)
    return response.text or ""


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("prompt", help="the user message")
    parser.add_argument("--provider", choices=["openai", "anthropic", "gemini"], default="openai",
                        help="openai = any OpenAI-compatible endpoint (default)")
    parser.add_argument("--base-url", default=OPENAI_URL, help=f"OpenAI-compatible endpoint (default {OPENAI_URL})")
    parser.add_argument("--local", action="store_true",
                        help="start the embedded SmolLM2 on a local endpoint and ask it (no key, offline)")
    parser.add_argument("--model", help="model id (default: the local model with --local)")
    parser.add_argument("--system", help="a system message")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--temperature", type=float, default=0.0)
    args = parser.parse_args(argv)
    if args.max_tokens < 1 or args.temperature < 0:
        parser.error("need --max-tokens >= 1 and --temperature >= 0")
    if not args.model and not args.local:
        parser.error("--model is required (except with --local)")
    if args.local and args.provider != "openai":
        parser.error("--local serves an OpenAI-compatible endpoint; use it without --provider")
    return args


def ask(args: argparse.Namespace) -> str:
    messages = ([{"role": "system", "content": args.system}] if args.system else []) + \
        [{"role": "user", "content": args.prompt}]
    if args.provider == "anthropic":
        return complete_anthropic(messages, args.model, max_tokens=args.max_tokens, temperature=args.temperature)
    if args.provider == "gemini":
        return complete_gemini(messages, args.model, max_output_tokens=args.max_tokens,
                               temperature=args.temperature)
    options = dict(max_tokens=args.max_tokens, temperature=args.temperature)
    if not args.local:
        return chat(messages, args.model, args.base_url, **options)
    from local_openai_server import serve  # this folder; loads torch and the model only when needed

    with serve() as server:
        return chat(messages, args.model or server.model_name, server.base_url, **options)


def main(argv=None) -> int:
    args = parse_args(argv)
    from openai import OpenAIError

    try:
        print(ask(args))
    except (MissingSDK, MissingAPIKey, OpenAIError) as err:
        print(f"error: {type(err).__name__}: {err}".splitlines()[0], file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
