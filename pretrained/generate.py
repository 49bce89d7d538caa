"""Chat with, or complete text from, any causal language model; tokens stream to the terminal.

Examples:
  python pretrained/generate.py "What is the capital of France?"
  python pretrained/generate.py --completion "Once upon a time" --max-new-tokens 50
  python pretrained/generate.py --temperature 0.8 --top-p 0.95 "Write a haiku about CPUs."
  python pretrained/generate.py --system "Answer in French." "What is the capital of Italy?"
  python pretrained/generate.py --model ./my-finetuned-model "Hello"         # a local folder
  python pretrained/generate.py --model HuggingFaceTB/SmolLM2-360M-Instruct "Hi"   # Hub id, online
  python pretrained/generate.py          # interactive chat that keeps the history; Ctrl-D quits

The default model is the embedded SmolLM2-135M-Instruct (no download). --temperature 0 means
greedy decoding (the same answer every time); above 0 the answer is sampled.
"""

from __future__ import annotations

import argparse
import sys

import torch
from transformers import TextStreamer

from common import SMOLLM2, ModelNotAvailable, load_model, load_tokenizer, pick_device, seed_everything


def build_inputs(tokenizer, prompt: str, chat: bool, history: list | None = None,
                 system: str | None = None) -> dict:
    """Token ids for a chat turn (through the model's chat template) or a raw completion."""
    if not chat:
        return tokenizer(prompt, return_tensors="pt")
    if not tokenizer.chat_template:
        raise ValueError("This model's tokenizer has no chat template; use --completion.")
    messages = ([{"role": "system", "content": system}] if system else []) + (history or [])
    messages.append({"role": "user", "content": prompt})
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                         return_dict=True)


def generate(model, tokenizer, inputs: dict, max_new_tokens: int = 128, temperature: float = 0.0,
             top_p: float = 1.0, stream: bool = False) -> str:
    """Generate a continuation; greedy when temperature is 0. Returns only the new text."""
    inputs = {k: v.to(model.device) for k, v in inputs.items()}
    sampling = dict(do_sample=True, temperature=temperature, top_p=top_p) if temperature > 0 else \
        dict(do_sample=False, temperature=None, top_p=None, top_k=None)
    streamer = TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True) if stream else None
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, streamer=streamer,
                             pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id, **sampling)
    return tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("prompt", nargs="?", help="the message (omit it for an interactive chat)")
    parser.add_argument("--model", default=SMOLLM2, help=f"short name, local folder or Hub id (default {SMOLLM2})")
    parser.add_argument("--completion", action="store_true", help="continue raw text instead of chatting")
    parser.add_argument("--system", help="a system message for chat mode")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    parser.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling when temperature > 0")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", help="cpu, cuda, mps (default: the best available)")
    args = parser.parse_args(argv)
    if args.temperature < 0 or not 0 < args.top_p <= 1 or args.max_new_tokens < 1:
        parser.error("need --temperature >= 0, 0 < --top-p <= 1 and --max-new-tokens >= 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    seed_everything(args.seed)
    try:
        tokenizer = load_tokenizer(args.model)
        model = load_model(args.model, device=pick_device(args.device)).eval()
    except (ModelNotAvailable, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    options = dict(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p)
    chat = not args.completion
    try:
        if args.prompt is not None:
            generate(model, tokenizer, build_inputs(tokenizer, args.prompt, chat, system=args.system),
                     stream=True, **options)  # the streamer ends the line
            return 0
        history: list = []
        print(f"Chatting with {args.model}. An empty line or Ctrl-D quits.", file=sys.stderr)
        for line in iter(lambda: input("> ").strip(), ""):
            inputs = build_inputs(tokenizer, line, chat, history, args.system)
            reply = generate(model, tokenizer, inputs, stream=True, **options)
            history += [{"role": "user", "content": line}, {"role": "assistant", "content": reply}]
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except EOFError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
