"""Load-test OpenAI-compatible servers side by side: tokens/s, time to first token and latency percentiles.

Starts each server in turn (never two at once: on a small machine they would share the cores), sends the same
workload at each concurrency level with async streaming clients (optimization/bench_generate.py's `openai`
backend: real prompts of mixed lengths, mixed output lengths, `ignore_eos` where the server supports it),
stops the server, and writes one JSON file and one plot.

Servers:
  project   deployment/server.py: this repository's continuous-batching engine (bf16 by default here)
  llamacpp  llama-cpp-python's OpenAI server on a GGUF file (--gguf; make one with optimization/export_gguf.py)
  vllm      vLLM's OpenAI server, run by the Python of its own virtualenv (--vllm-python; deployment/setup_vllm.sh)
  url       a server that is already running (--base-url, --served-name)

Examples:
  python deployment/load_test.py                                   # the project's server at 1, 4 and 16 clients
  python deployment/load_test.py --servers project llamacpp vllm --gguf build/gguf/smollm2-135m-instruct-q8_0.gguf
  python deployment/load_test.py --servers url --base-url http://127.0.0.1:8000/v1 --concurrency 1 8 32
  python deployment/load_test.py --new-tokens 64:64 --out build/load   # fixed 64-token answers
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "optimization")]
import bench_generate as bench  # noqa: E402

from common import SMOLLM2, ModelNotAvailable, load_tokenizer  # noqa: E402
from common.models import resolve_model  # noqa: E402

SERVERS = ("project", "llamacpp", "vllm", "url")
DEFAULT_VLLM_PYTHON = ROOT / "build" / "venv-vllm" / "bin" / "python"


@dataclass
class Running:
    """A started server: its process (None for `url`), OpenAI base URL and the model name it expects."""

    process: subprocess.Popen | None
    base_url: str
    served_name: str
    log: object = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(process: subprocess.Popen, log, base_url: str, timeout: float) -> None:
    """Poll GET /v1/models until the server answers; fail with the server's own last words if it dies."""
    import httpx

    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"the server exited (code {process.returncode}):\n{log.read()[-3000:]}")
        try:
            if httpx.get(base_url + "/models", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    process.kill()
    raise RuntimeError(f"the server at {base_url} was not ready within {timeout:.0f} s")


def start(server: str, model: str = SMOLLM2, gguf: str | None = None, vllm_python: str | Path = DEFAULT_VLLM_PYTHON,
          threads: int = 2, base_url: str | None = None, served_name: str | None = None,
          timeout: float = 240) -> Running:
    """Start one server as a subprocess on a free loopback port and wait until it serves."""
    if server == "url":
        return Running(None, base_url, served_name or model)
    port, name = free_port(), served_name or model
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    if server == "project":
        command = [sys.executable, str(ROOT / "deployment" / "server.py"), "--model", model, "--served-name", name,
                   "--port", str(port), "--dtype", "bfloat16", "--embedding-model", "none",
                   "--max-concurrent", "256"]
    elif server == "llamacpp":
        if not gguf or not Path(gguf).is_file():
            raise FileNotFoundError(f"llamacpp needs --gguf FILE (got {gguf!r}); make one with optimization/export_gguf.py")
        command = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", name,
                   "--host", "127.0.0.1", "--port", str(port), "--n_threads", str(threads), "--n_threads_batch", str(threads), "--n_ctx", "4096",
                   "--interrupt_requests", "False"]  # by default a new request cuts off the one being streamed
    elif server == "vllm":
        if not Path(vllm_python).is_file():
            raise FileNotFoundError(f"no vLLM virtualenv at {vllm_python}: run `bash deployment/setup_vllm.sh`")
        command = [str(vllm_python), "-m", "vllm.entrypoints.openai.api_server", "--model", resolve_model(model),
                   "--served-model-name", name, "--host", "127.0.0.1", "--port", str(port), "--dtype", "bfloat16",
                   "--max-model-len", "4096"]
        # 1 GB of KV cache; and bind its threads to cores 0..threads-1: by default vLLM reserves one core for its
        # scheduler process, which on a 2-core machine leaves it a single core for the model
        env |= {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": f"0-{threads - 1}",
                "VLLM_CPU_NUM_OF_RESERVED_CPU": "0", "VLLM_LOGGING_LEVEL": "WARNING"}
    else:
        raise ValueError(f"unknown server {server!r}; choose from {', '.join(SERVERS)}")
    log = tempfile.TemporaryFile(mode="w+")  # a file, not a pipe: a full pipe would block the server
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, text=True)
    url = f"http://127.0.0.1:{port}/v1"
    _wait_ready(process, log, url, timeout)
    return Running(process, url, name, log)


def measure(running: Running, tokenizer, concurrency: list[int], per_client: int = 2, prompt_tokens=(32, 256),
            new_tokens=(16, 128), seed: int = 0, api_key: str = "none") -> list[dict]:
    """At each concurrency c, send max(4, per_client * c) requests with at most c in flight; one summary per level."""
    rows = []
    for c in concurrency:
        items = bench.workload(tokenizer, max(4, per_client * c), prompt_tokens, new_tokens, seed)
        bench.run("openai", None, tokenizer, items[:1], base_url=running.base_url, model_name=running.served_name,
                  concurrency=1, api_key=api_key)  # warm-up: first-request costs are not load
        result = bench.run("openai", None, tokenizer, items, base_url=running.base_url,
                           model_name=running.served_name, concurrency=c, api_key=api_key)
        rows.append(result.summary() | {"concurrency": c, "asked_tokens": sum(i.new_tokens for i in items)})
    return rows


def plot(rows: list[dict], path: Path | None = None):
    """tokens/s and TTFT (p50 solid, p95 dashed) against concurrency, one line per server."""
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for server in dict.fromkeys(r["server"] for r in rows):
        mine = [r for r in rows if r["server"] == server]
        xs = [r["concurrency"] for r in mine]
        line, = left.plot(xs, [r["tokens_per_s"] for r in mine], "o-", label=server)
        right.plot(xs, [r["ttft_p50"] for r in mine], "o-", color=line.get_color(), label=f"{server} p50")
        right.plot(xs, [r["ttft_p95"] for r in mine], "s--", color=line.get_color(), label=f"{server} p95")
    ticks = sorted({r["concurrency"] for r in rows})
    for ax in (left, right):
        ax.set(xscale="log", xlabel="concurrent clients")
        ax.set_xticks(ticks, labels=ticks)
        ax.legend(fontsize=8)
    left.set(ylabel="tokens / s (all clients)", title="throughput")
    right.set(ylabel="seconds", yscale="log", title="time to first token")
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=110)
    return fig


def run_all(servers: list[str], concurrency: list[int], **options) -> list[dict]:
    """Each server in turn: start, measure at every level, stop. A server that fails to start is reported, not fatal."""
    tokenizer = load_tokenizer(options.get("model", SMOLLM2))
    keys = ("model", "gguf", "vllm_python", "threads", "base_url", "served_name")
    rows = []
    for server in servers:
        started = time.perf_counter()
        try:
            running = start(server, **{k: options[k] for k in keys if options.get(k) is not None})
        except (RuntimeError, FileNotFoundError) as err:
            print(f"[{server}] not measured: {err}", file=sys.stderr)
            continue
        print(f"[{server}] ready in {time.perf_counter() - started:.0f} s at {running.base_url}", flush=True)
        try:
            for row in measure(running, tokenizer, concurrency, options.get("per_client", 2),
                               options.get("prompt_tokens", (32, 256)), options.get("new_tokens", (16, 128)),
                               options.get("seed", 0), options.get("api_key", "none")):
                rows.append({"server": server} | row)
                print(f"[{server}] {row['concurrency']:3d} clients: {row['tokens_per_s']:7.1f} tok/s, TTFT p50 "
                      f"{row['ttft_p50']:.2f} s / p95 {row['ttft_p95']:.2f} s", flush=True)
        finally:
            running.stop()
    return rows


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("--servers", nargs="+", choices=SERVERS, default=["project"])
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 4, 16])
    parser.add_argument("--per-client", type=int, default=2, help="requests per client at each level (min 4 in all)")
    parser.add_argument("--model", default=SMOLLM2, help="short name, folder or Hub id (project and vllm)")
    parser.add_argument("--gguf", help="llamacpp: the GGUF file")
    parser.add_argument("--vllm-python", default=str(DEFAULT_VLLM_PYTHON), help="vllm: its virtualenv's python")
    parser.add_argument("--base-url", help="url: the running server's /v1 URL")
    parser.add_argument("--served-name", help="the model name the server expects (default: --model)")
    parser.add_argument("--api-key", default="none")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for each server (default 2)")
    parser.add_argument("--prompt-tokens", type=bench.parse_range, default=(32, 256))
    parser.add_argument("--new-tokens", type=bench.parse_range, default=(16, 128))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "load_test", help="folder for JSON and plot")
    args = parser.parse_args(argv)
    if "url" in args.servers and not args.base_url:
        parser.error("--servers url needs --base-url http://HOST:PORT/v1")
    if "llamacpp" in args.servers and not args.gguf:
        parser.error("--servers llamacpp needs --gguf FILE (make one with optimization/export_gguf.py)")
    if min(args.concurrency) < 1 or args.per_client < 1:
        parser.error("--concurrency levels and --per-client must be at least 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        rows = run_all(args.servers, args.concurrency, model=args.model, gguf=args.gguf, vllm_python=args.vllm_python,
                       base_url=args.base_url, served_name=args.served_name, api_key=args.api_key,
                       threads=args.threads, per_client=args.per_client, prompt_tokens=args.prompt_tokens,
                       new_tokens=args.new_tokens, seed=args.seed)
    except ModelNotAvailable as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not rows:
        print("error: no server could be measured (see the messages above)", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "load_test.json").write_text(json.dumps(rows, indent=2))
    plot(rows, args.out / "load_test.png")
    print(f"wrote {args.out / 'load_test.json'} and load_test.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
