"""Offline batch inference with vLLM: many prompts in, all completions out, one call (run it with vLLM's Python).

vLLM lives in its own virtualenv (its pins conflict with the main one): make it once with
`bash deployment/setup_vllm.sh`, then run this file with that virtualenv's Python. Prompts come as token ids or
text, as JSON lines on stdin or from a file; results go to stdout as JSON lines, one per prompt, in order, then
one summary line. Greedy by default; end-of-sequence can be ignored, so every prompt gets exactly --max-tokens.

Examples:
  build/venv-vllm/bin/python deployment/vllm_offline.py --model MODEL_DIR --prompts prompts.jsonl
  echo '{"text": "The capital of France is"}' | build/venv-vllm/bin/python deployment/vllm_offline.py --model MODEL_DIR
  build/venv-vllm/bin/python deployment/vllm_offline.py --model MODEL_DIR --prompts p.jsonl --max-tokens 64 --ignore-eos
  # MODEL_DIR: a Hugging Face folder; the embedded SmolLM2's is printed by
  #   .venv/bin/python -c "from common.models import resolve_model; print(resolve_model('smollm2-135m-instruct'))"

Each prompt line: {"ids": [1, 2, 3]} or {"text": "..."} or {"messages": [{"role": "user", "content": "..."}]}
(a chat, rendered with the model's chat template). Output lines: {"index", "text", "ids", "prompt_tokens"}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def read_prompts(lines: list[str]) -> list[dict]:
    """Parse JSON lines; each must carry exactly one of ids / text / messages (the error names the line)."""
    prompts = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"line {number}: not JSON ({err.msg})") from None
        keys = [k for k in ("ids", "text", "messages") if k in row]
        if len(keys) != 1:
            raise ValueError(f"line {number}: give exactly one of 'ids', 'text' or 'messages' (found {keys or 'none'})")
        prompts.append(row)
    if not prompts:
        raise ValueError("no prompts: give JSON lines on stdin or with --prompts FILE")
    return prompts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("--model", required=True, help="a Hugging Face model folder (or Hub id when online)")
    parser.add_argument("--prompts", help="JSON lines file (default: stdin)")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--ignore-eos", action="store_true", help="generate exactly --max-tokens for every prompt")
    parser.add_argument("--dtype", default="bfloat16")
    args = parser.parse_args(argv)
    try:
        with open(args.prompts) if args.prompts else sys.stdin as source:
            prompts = read_prompts(source.readlines())
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GB of KV cache on CPU; the default (4) is too big here
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")  # keep stdout for the JSON lines
    # all cores for the model: by default vLLM reserves one for its scheduler (a 2-core machine keeps only one)
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{os.cpu_count() - 1}")
    os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
    from vllm import LLM, SamplingParams  # imported late: --help and input errors need no vLLM start-up

    started = time.perf_counter()
    llm = LLM(model=args.model, dtype=args.dtype, max_model_len=4096, seed=0)
    loaded = time.perf_counter() - started
    tokenizer = llm.get_tokenizer()
    inputs = []
    for p in prompts:
        if "messages" in p:
            p = {"ids": tokenizer.apply_chat_template(p["messages"], add_generation_prompt=True, tokenize=True,
                                                      return_dict=True)["input_ids"]}
        inputs.append({"prompt_token_ids": list(p["ids"])} if "ids" in p else p["text"])
    params = SamplingParams(temperature=args.temperature, max_tokens=args.max_tokens, ignore_eos=args.ignore_eos)
    started = time.perf_counter()
    outputs = llm.generate(inputs, params, use_tqdm=False)
    seconds = time.perf_counter() - started
    produced = 0
    for i, out in enumerate(outputs):
        ids = list(out.outputs[0].token_ids)
        produced += len(ids)
        print(json.dumps({"index": i, "text": out.outputs[0].text, "ids": ids,
                          "prompt_tokens": len(out.prompt_token_ids)}))
    print(json.dumps({"summary": {"prompts": len(outputs), "new_tokens": produced, "seconds": round(seconds, 3),
                                  "tokens_per_s": round(produced / seconds, 1), "load_seconds": round(loaded, 1)}}))
    return 0


if __name__ == "__main__":  # vLLM starts worker processes that re-import this file
    sys.exit(main())
