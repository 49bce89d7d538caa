"""A terminal tour of the learning path: one short step per section, on the embedded defaults.

    python tour.py          # (or `make tour`) run every step, under 5 minutes on a laptop CPU
    python tour.py --list   # show the steps without running them

Each step runs a section's own terminal script, so what you see here is what you can run yourself.
The tour grows as sections land.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent

# (section, what the step shows, command relative to the repository root)
STEPS = [
    ("pretrained", "SmolLM2-135M-Instruct answers a question (greedy, streamed token by token)",
     ["pretrained/generate.py", "What is the capital of France? Answer in one sentence.", "--max-new-tokens", "40"]),
    ("pretrained", "SmolLM2 continues raw text in completion mode (sampled, temperature 0.8)",
     ["pretrained/generate.py", "--completion", "The three laws of robotics are", "--max-new-tokens", "40",
      "--temperature", "0.8"]),
    ("pretrained", "MiniLM sentence embeddings: paraphrases are close, unrelated sentences far",
     ["pretrained/embed.py", "A cat sits on the mat.", "A kitten is resting on a rug.",
      "The stock market fell sharply today.", "Shares dropped steeply this morning."]),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", action="store_true", help="print the steps and exit")
    args = parser.parse_args()
    start = time.perf_counter()
    for i, (section, what, cmd) in enumerate(STEPS, 1):
        print(f"\n== {i}/{len(STEPS)} · {section}: {what}\n$ python {' '.join(_quote(c) for c in cmd)}", flush=True)
        if args.list:
            continue
        step_start = time.perf_counter()
        if subprocess.run([sys.executable, *cmd], cwd=ROOT).returncode != 0:
            print(f"step {i} failed", file=sys.stderr)
            return 1
        print(f"({time.perf_counter() - step_start:.1f} s)")
    if not args.list:
        print(f"\nTour finished in {time.perf_counter() - start:.0f} s. Next: `make lab` and open "
              "pretrained/01_pipelines_tokenizers_chat.ipynb.")
    return 0


def _quote(arg: str) -> str:
    return f'"{arg}"' if " " in arg else arg


if __name__ == "__main__":
    sys.exit(main())
