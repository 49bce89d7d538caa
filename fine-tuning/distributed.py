"""Train one small causal LM for a few steps under any launcher (DDP, accelerate, FSDP2, DeepSpeed ZeRO-2/3, tensor parallel) and write what every rank saw as JSON.

Every mode trains the SAME model from the SAME initial weights on the SAME global batches (fixed-length token
blocks of real text, no dropout, no gradient clipping), so a 2-process run must end with the parameters of the
1-process run, up to float rounding. Each rank writes rank<R>.json (mode, world size, rank, backend, losses,
seconds, parameters and optimizer state held by that rank); rank 0 also writes params.pt (the full final
parameters, gathered from the shards). `--compare A B` prints the largest parameter difference of two runs.

Modes (--mode):
  single      one process, no launcher: the reference
  ddp         torch DistributedDataParallel: every rank holds the whole model, gradients are averaged
  accelerate  the same data parallelism set up by accelerate's Accelerator (accelerate launch --multi_gpu)
  fsdp2       torch fully_shard: parameters, gradients and optimizer state are split across ranks
  zero2       DeepSpeed ZeRO stage 2 (configs/ds_zero2.json): gradients and optimizer state are split
  zero3       DeepSpeed ZeRO stage 3 (configs/ds_zero3.json): parameters are split too
  tp          Megatron-style tensor parallelism: every MLP is split column- then row-wise across ranks, all
              ranks see the same batch; also checks one parallel MLP against the unsplit one

On a CPU the processes talk over gloo and DeepSpeed needs DS_ACCELERATOR=cpu (set here when no GPU is seen).
On GPUs the same commands use NCCL: change nothing but the process count.

Examples:
  python fine-tuning/distributed.py --mode single --output runs/dist/single
  torchrun --standalone --nproc_per_node 2 fine-tuning/distributed.py --mode ddp --output runs/dist/ddp
  accelerate launch --multi_gpu --num_processes 2 fine-tuning/distributed.py --mode accelerate --output runs/dist/acc
  accelerate launch --config_file fine-tuning/configs/accelerate_multi_gpu.yaml --num_processes 2 \\
      fine-tuning/distributed.py --mode accelerate --output runs/dist/acc
  torchrun --standalone --nproc_per_node 2 fine-tuning/distributed.py --mode fsdp2 --output runs/dist/fsdp2
  torchrun --standalone --nproc_per_node 2 fine-tuning/distributed.py --mode zero3 --output runs/dist/zero3
  deepspeed --num_gpus 8 fine-tuning/distributed.py --mode zero2 --batch 64 --output runs/dist/zero2   # GPUs
  torchrun --standalone --nproc_per_node 2 fine-tuning/distributed.py --mode tp --output runs/dist/tp
  python fine-tuning/distributed.py --compare runs/dist/single runs/dist/ddp
  python fine-tuning/distributed.py --mode single --model smollm2-135m-instruct --data my_text.txt --output runs/s

Python API (lesson 13 uses it):
  launch(mode, output, nproc=2, launcher=None, args=()) -> dict   # run one mode as subprocesses, read the JSONs
  command(mode, output, nproc=2, launcher=None, args=()) -> list   # the launcher command it runs
  max_param_diff(run_a, run_b) -> float; params_off(run_a, run_b, atol=1e-5) -> (n differing, n)
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CONFIGS = HERE / "configs"
MODES = ("single", "ddp", "accelerate", "fsdp2", "zero2", "zero3", "tp")
LAUNCHERS = ("python", "torchrun", "accelerate", "accelerate-cpu", "deepspeed")
DEFAULT_LAUNCHER = {"single": "python", "accelerate": "accelerate"}  # every other mode: torchrun


class UsageError(Exception):
    """Bad input or a bad launch: reported in one line, exit code 2."""


# ---------------------------------------------------------------- launching (the parent side)

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(mode: str, output: Path, nproc: int = 2, launcher: str | None = None,
            args: Sequence[str] = ()) -> list[str]:
    """The command that runs `mode` with `nproc` processes under `launcher` (python -m forms of the CLIs)."""
    launcher = launcher or DEFAULT_LAUNCHER.get(mode, "torchrun")
    script = [str(Path(__file__).resolve()), "--mode", mode, "--output", str(output), *args]
    port = str(_free_port())  # two runs at once must not share a rendezvous port
    py = [sys.executable, "-m"]
    if launcher == "python":
        return [sys.executable, *script]
    if launcher == "torchrun":
        return [*py, "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port", port, *script]
    if launcher in ("accelerate", "accelerate-cpu"):
        # --multi_gpu starts nproc processes even without a GPU; --cpu would silently start ONE (the trap)
        flag = "--cpu" if launcher == "accelerate-cpu" else "--multi_gpu"
        return [*py, "accelerate.commands.launch", flag, "--num_processes", str(nproc), "--num_machines", "1",
                "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", port, *script]
    if launcher == "deepspeed":
        return [*py, "deepspeed.launcher.runner", "--num_gpus", str(nproc), "--master_port", port, *script]
    raise UsageError(f"unknown launcher '{launcher}'; choose one of {', '.join(LAUNCHERS)}")


def pretty(cmd: Sequence[str]) -> str:
    """A command as a reader would type it: CLI names, paths relative to the script's folder."""
    names = {"torch.distributed.run": "torchrun", "accelerate.commands.launch": "accelerate launch",
             "deepspeed.launcher.runner": "deepspeed"}
    words = list(cmd[2:]) if cmd[1:2] == ["-m"] else list(cmd[1:])
    words[0] = names.get(words[0], "python " + Path(words[0]).name)
    skip = {"--master_port", "--main_process_port", "--output", "--num_machines", "--mixed_precision",
            "--dynamo_backend"}
    shown, i = [], 0
    while i < len(words):
        if words[i] in skip:
            i += 2
            continue
        shown.append(Path(words[i]).name if words[i].endswith(".py") else words[i])
        i += 1
    return " ".join(shown)


def launch(mode: str, output: Path, nproc: int = 2, launcher: str | None = None, args: Sequence[str] = (),
           timeout: float = 600) -> dict:
    """Run one mode as subprocesses; return its command, wall time, return code and the ranks' JSONs."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    cmd = command(mode, output, nproc, launcher, args)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    start = time.perf_counter()
    # a session of its own, so that on a timeout the launcher AND its workers are stopped
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
                            start_new_session=True)
    try:
        _, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    ranks = [json.loads(p.read_text()) for p in sorted(output.glob("rank*.json"))]
    return {"mode": mode, "command": pretty(cmd), "returncode": proc.returncode, "stderr": stderr,
            "wall_seconds": time.perf_counter() - start, "ranks": ranks, "output": output}


def _params(run_a: Path, run_b: Path) -> tuple[dict, dict]:
    import torch

    a = torch.load(Path(run_a) / "params.pt", weights_only=True)
    b = torch.load(Path(run_b) / "params.pt", weights_only=True)
    if a.keys() != b.keys():
        raise UsageError(f"the two runs have different parameters ({len(a)} vs {len(b)} tensors)")
    return a, b


def max_param_diff(run_a: Path, run_b: Path) -> float:
    """Largest |a - b| over all parameters of two runs' params.pt."""
    a, b = _params(run_a, run_b)
    return max((a[k] - b[k]).abs().max().item() for k in a)


def params_off(run_a: Path, run_b: Path, atol: float = 1e-5) -> tuple[int, int]:
    """(how many parameters differ by more than `atol`, how many there are) between two runs.

    AdamW divides each gradient by its own running size, so an element whose gradient is almost zero (pure
    rounding noise, which differs with the order of a sum) can move by part of a step in one run and not in the
    other: a handful of such elements is expected, a large share is a bug.
    """
    a, b = _params(run_a, run_b)
    return sum(int(((a[k] - b[k]).abs() > atol).sum()) for k in a), sum(v.numel() for v in a.values())


# ---------------------------------------------------------------- the worker (one per rank)

def world_from_env() -> tuple[int, int, int]:
    """(world size, rank, local rank) as every launcher sets them in the environment."""
    env = os.environ
    return int(env.get("WORLD_SIZE", 1)), int(env.get("RANK", 0)), int(env.get("LOCAL_RANK", 0))


def check_launch(mode: str, world: int, batch: int) -> None:
    """Fail early, in words, on a launch that cannot give the intended run."""
    if mode == "single" and world > 1:
        raise UsageError(f"--mode single is the 1-process reference but {world} processes were started; "
                         "use --mode ddp (or another distributed mode) under a launcher")
    if mode != "single" and world < 2:
        hint = ("; note: `accelerate launch --cpu --num_processes 2` silently starts ONE process, use "
                "`accelerate launch --multi_gpu --num_processes 2` (it runs on a CPU too)" if mode == "accelerate"
                else "")
        launcher = ("accelerate launch --multi_gpu --num_processes 2" if mode == "accelerate"
                    else "torchrun --standalone --nproc_per_node 2")
        raise UsageError(f"--mode {mode} needs 2 or more processes but this run has 1: start it with "
                         f"`{launcher} distributed.py --mode {mode} ...`{hint}")
    if mode not in ("single", "tp") and batch % world:
        raise UsageError(f"--batch {batch} cannot be split over {world} processes; use a multiple of {world}")


def check_data(data: str) -> str:
    """'named' or 'file'; fails in words before any model is loaded."""
    from common import DATASETS

    if data in DATASETS:
        return "named"
    if Path(data).is_file() and Path(data).suffix == ".txt":
        return "file"
    raise UsageError(f"--data '{data}' is neither a named corpus ({', '.join(DATASETS)}) nor a .txt file")


def token_blocks(tokenizer, data: str, seq_len: int, n_blocks: int):
    """`n_blocks` rows of `seq_len` token ids from the start of a named corpus or a .txt file."""
    import torch

    from common import corpus_text

    chars = max(20_000, n_blocks * seq_len * 6)  # about 4 characters per token, with margin
    if check_data(data) == "named":
        text = corpus_text(data, "train")[:chars]
    else:
        text = Path(data).read_text(encoding="utf-8", errors="replace")[:chars]
    ids = tokenizer(text)["input_ids"]
    if len(ids) < n_blocks * seq_len:
        raise UsageError(f"--data has {len(ids)} tokens, fewer than the {n_blocks * seq_len} needed; "
                         "use more text or fewer --steps")
    return torch.tensor(ids[:n_blocks * seq_len]).view(n_blocks, seq_len)


@dataclass
class Runner:
    """One mode's wrapped model and its three verbs; `held` counts what this rank keeps in memory."""

    forward: Callable
    backward: Callable
    step: Callable
    full_state: Callable  # -> {name: tensor} of the whole model (a collective: every rank calls it)
    held: Callable  # -> {"params": n, "optimizer_state": n} elements on this rank


def _local_numel(t) -> int:
    """Elements this rank stores: a DTensor's local shard (FSDP2), a ZeRO-3 partition, else the tensor."""
    local = getattr(t, "to_local", None)
    if local is not None:
        return local().numel()
    ds = getattr(t, "ds_tensor", None)
    return ds.numel() if ds is not None else t.numel()


def _optimizer_elements(optimizer) -> int:
    return sum(_local_numel(t) for s in optimizer.state.values() for t in s.values()
               if hasattr(t, "numel") and t.dim() > 0)  # exp_avg, exp_avg_sq; not the scalar step


def _plain(model, optimizer) -> Runner:
    def step():
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return Runner(
        forward=model, backward=lambda loss: loss.backward(), step=step,
        full_state=lambda: {k: v.detach().clone() for k, v in model.named_parameters()},
        held=lambda: {"params": sum(_local_numel(p) for p in model.parameters()),
                      "optimizer_state": _optimizer_elements(optimizer)})


def wrap(mode: str, model, lr: float, batch: int, world: int) -> Runner:
    """Wrap the model for `mode` and build its optimizer (AdamW, the same hyper-parameters everywhere)."""
    import torch

    adamw = dict(lr=lr, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0)
    if mode == "single":
        return _plain(model, torch.optim.AdamW(model.parameters(), **adamw))
    if mode == "ddp":
        from torch.nn.parallel import DistributedDataParallel as DDP

        ddp = DDP(model)  # broadcasts rank 0's weights, then all-reduces (averages) gradients in backward
        runner = _plain(ddp, torch.optim.AdamW(ddp.parameters(), **adamw))
        runner.full_state = lambda: {k: v.detach().clone() for k, v in model.named_parameters()}
        return runner
    if mode == "accelerate":
        from accelerate import Accelerator

        accelerator = Accelerator(cpu=not torch.cuda.is_available())
        wrapped, optimizer = accelerator.prepare(model, torch.optim.AdamW(model.parameters(), **adamw))
        runner = _plain(wrapped, optimizer)
        runner.backward = accelerator.backward
        runner.full_state = lambda: {k: v.detach().clone()
                                     for k, v in accelerator.unwrap_model(wrapped).named_parameters()}
        runner.distributed_type = accelerator.distributed_type.value  # e.g. MULTI_CPU, MULTI_GPU
        return runner
    if mode == "fsdp2":
        return _fsdp2(model, adamw, world)
    if mode in ("zero2", "zero3"):
        return _deepspeed(model, int(mode[-1]), adamw, batch, world)
    if mode == "tp":
        return _tensor_parallel(model, adamw)
    raise UsageError(f"unknown mode '{mode}'")


def _fsdp2(model, adamw: dict, world: int) -> Runner:
    import torch
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh("cuda" if torch.cuda.is_available() else "cpu", (world,))
    for layer in model.model.layers:  # one all-gather / reduce-scatter unit per decoder layer
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)  # the rest (embeddings, tied head, final norm) in the root unit
    runner = _plain(model, torch.optim.AdamW(model.parameters(), **adamw))  # each rank steps its own shard
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    names = [k for k, _ in model.named_parameters()]
    runner.full_state = lambda: {k: v for k, v in get_model_state_dict(model, options=options).items()
                                 if k in names}
    return runner


def fill_auto(config: dict, values: dict) -> dict:
    """Replace every "auto" in a DeepSpeed config (as transformers' Trainer would) from `values`."""
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out[key] = fill_auto(value, values)
        elif value == "auto":
            if key not in values:
                raise UsageError(f'the DeepSpeed config has "{key}": "auto", which this script cannot fill')
            out[key] = values[key]
        else:
            out[key] = value
    return out


def deepspeed_config(stage: int, lr: float, batch: int, world: int, hidden: int) -> dict:
    """configs/ds_zero<stage>.json with its "auto" values filled for this run (fp32 on a CPU)."""
    import torch

    config = json.loads((CONFIGS / f"ds_zero{stage}.json").read_text())
    gpu_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    values = {"train_batch_size": batch, "train_micro_batch_size_per_gpu": batch // world,
              "gradient_accumulation_steps": 1, "gradient_clipping": 0.0, "lr": lr, "betas": [0.9, 0.95],
              "eps": 1e-8, "weight_decay": 0.0, "enabled": gpu_bf16, "reduce_bucket_size": hidden * hidden,
              "stage3_prefetch_bucket_size": int(0.9 * hidden * hidden),
              "stage3_param_persistence_threshold": 10 * hidden}
    config = fill_auto(config, values)
    if not torch.cuda.is_available():  # torch's AdamW instead of DeepSpeed's fused kernel (a JIT build)
        config["optimizer"]["params"]["torch_adam"] = True
    return config


def _deepspeed(model, stage: int, adamw: dict, batch: int, world: int) -> Runner:
    try:
        import deepspeed
    except ImportError as err:
        raise UsageError(f"--mode zero{stage} needs DeepSpeed: pip install deepspeed ({err})") from err
    config = deepspeed_config(stage, adamw["lr"], batch, world, model.config.hidden_size)
    engine, optimizer, _, _ = deepspeed.initialize(model=model, model_parameters=model.parameters(),
                                                   config=config)

    def full_state():
        params = list(engine.module.parameters())
        with deepspeed.zero.GatheredParameters(params, enabled=stage == 3):
            return {k: v.detach().clone().cpu() for k, v in engine.module.named_parameters()}

    inner = getattr(optimizer, "optimizer", optimizer)  # ZeRO wraps torch's AdamW; its state is the shard
    return Runner(forward=engine, backward=engine.backward, step=engine.step, full_state=full_state,
                  held=lambda: {"params": sum(_local_numel(p) for p in engine.module.parameters()),
                                "optimizer_state": _optimizer_elements(inner)})


# ---- tensor parallelism, Megatron-LM style (Shoeybi et al., 2019): the f and g operators of its Figure 3

def _all_reduce(x):
    import torch.distributed as dist

    x = x.clone()
    dist.all_reduce(x)
    return x


def _parallel_ops():
    import torch

    class CopyToParallel(torch.autograd.Function):
        """f: identity forward; backward sums the input gradients of the ranks' halves."""

        @staticmethod
        def forward(ctx, x):
            return x

        @staticmethod
        def backward(ctx, grad):
            return _all_reduce(grad)

    class ReduceFromParallel(torch.autograd.Function):
        """g: forward sums the ranks' partial outputs; backward passes the gradient through."""

        @staticmethod
        def forward(ctx, x):
            return _all_reduce(x)

        @staticmethod
        def backward(ctx, grad):
            return grad

    return CopyToParallel, ReduceFromParallel


def parallel_mlp(mlp, rank: int, world: int):
    """A LLaMA MLP (gate, up, down) split over `world` ranks: this rank keeps 1/world of its hidden units.

    gate and up are column-parallel (rows of their weight = output units), down is row-parallel (columns of
    its weight = input units), so each rank computes a partial output and one all-reduce adds them up.
    """
    import torch
    from torch import nn

    copy_to, reduce_from = _parallel_ops()
    width = mlp.gate_proj.out_features
    if width % world or mlp.gate_proj.bias is not None:
        raise UsageError(f"tensor parallelism needs an MLP width ({width}) divisible by {world}, without bias")
    part = slice(rank * width // world, (rank + 1) * width // world)

    class ParallelMLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.gate = nn.Parameter(mlp.gate_proj.weight.detach()[part].clone())  # [width/world, d]
            self.up = nn.Parameter(mlp.up_proj.weight.detach()[part].clone())  # [width/world, d]
            self.down = nn.Parameter(mlp.down_proj.weight.detach()[:, part].clone())  # [d, width/world]
            self.act = mlp.act_fn

        def forward(self, x):
            x = copy_to.apply(x)
            h = self.act(torch.nn.functional.linear(x, self.gate)) * torch.nn.functional.linear(x, self.up)
            return reduce_from.apply(torch.nn.functional.linear(h, self.down))  # partial sums -> full output

    return ParallelMLP()


def check_parallel_mlp(mlp, rank: int, world: int, seed: int = 0) -> dict:
    """Output and gradients of the split MLP against the whole MLP, on the same random input."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(4, 16, mlp.gate_proj.in_features, generator=gen)
    target = torch.randn(x.shape, generator=gen)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya = mlp(xa)
    ((ya - target) ** 2).mean().backward()
    par = parallel_mlp(mlp, rank, world)
    yb = par(xb)
    ((yb - target) ** 2).mean().backward()
    n = mlp.gate_proj.out_features // world
    part = slice(rank * n, (rank + 1) * n)
    weight_grads = [(par.gate.grad - mlp.gate_proj.weight.grad[part]).abs().max(),
                    (par.up.grad - mlp.up_proj.weight.grad[part]).abs().max(),
                    (par.down.grad - mlp.down_proj.weight.grad[:, part]).abs().max()]
    mlp.zero_grad(set_to_none=True)
    return {"output_diff": (ya - yb).abs().max().item(), "input_grad_diff": (xa.grad - xb.grad).abs().max().item(),
            "weight_grad_diff": max(g.item() for g in weight_grads),
            "output_scale": ya.abs().max().item()}


def _tensor_parallel(model, adamw: dict) -> Runner:
    import torch
    import torch.distributed as dist

    rank, world = dist.get_rank(), dist.get_world_size()
    for layer in model.model.layers:
        layer.mlp = parallel_mlp(layer.mlp, rank, world)
    runner = _plain(model, torch.optim.AdamW(model.parameters(), **adamw))

    def full_state():  # gather the MLP pieces back into gate_proj/up_proj/down_proj weights
        state = {}
        for name, p in model.named_parameters():
            if ".mlp." not in name:
                state[name] = p.detach().clone()
                continue
            pieces = [torch.empty_like(p) for _ in range(world)]
            dist.all_gather(pieces, p.detach().contiguous())
            prefix, kind = name.rsplit(".", 1)
            state[f"{prefix}.{kind}_proj.weight"] = torch.cat(pieces, dim=1 if kind == "down" else 0)
        return state

    runner.full_state = full_state
    return runner


def train(args: argparse.Namespace) -> dict:
    """The worker: set up this rank, train, write rank<R>.json (and params.pt on rank 0)."""
    import torch
    import torch.distributed as dist

    from common import ModelNotAvailable, load_model, load_tokenizer, seed_everything

    world, rank, local_rank = world_from_env()
    check_launch(args.mode, world, args.batch)
    check_data(args.data)
    torch.set_num_threads(args.threads)
    if world > 1 and not dist.is_initialized():
        if args.mode in ("zero2", "zero3"):
            import deepspeed

            if not torch.cuda.is_available():
                # On a CPU DeepSpeed first JIT-compiles a shared-memory all-reduce (a C++ build of minutes,
                # cached in ~/.cache/torch_extensions); without it every collective goes through gloo.
                importlib.import_module("deepspeed.comm.torch").build_shm_op = lambda: None
            deepspeed.init_distributed(dist_backend="nccl" if torch.cuda.is_available() else "gloo")
        elif args.mode != "accelerate":  # the Accelerator creates its own process group
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    try:
        tokenizer = load_tokenizer(args.model)
        seed_everything(args.seed)  # every rank builds the same initial weights
        model = load_model(args.model, dtype=torch.float32)
    except (ModelNotAvailable, OSError, ValueError) as err:
        raise UsageError(f"cannot load model '{args.model}': {err}") from err
    model.config.use_cache = False
    blocks = token_blocks(tokenizer, args.data, args.seq_len, args.steps * args.batch)
    record = {"mode": args.mode, "world_size": world, "rank": rank, "local_rank": local_rank, "pid": os.getpid()}
    if args.mode == "tp":
        record["tp_check"] = check_parallel_mlp(model.model.layers[0].mlp, rank, world, args.seed)
    runner = wrap(args.mode, model, args.lr, args.batch, world)
    record["backend"] = dist.get_backend() if dist.is_initialized() else "none"
    record["distributed_type"] = getattr(runner, "distributed_type", None)
    data_parallel = args.mode not in ("single", "tp")
    per_rank = args.batch // world if data_parallel else args.batch
    losses, start = [], time.perf_counter()
    for step in range(args.steps):
        rows = blocks[step * args.batch:(step + 1) * args.batch]
        if data_parallel:  # each rank takes its own slice of the global batch
            rows = rows[rank * per_rank:(rank + 1) * per_rank]
        loss = runner.forward(input_ids=rows, labels=rows).loss
        runner.backward(loss)
        runner.step()
        reported = loss.detach().clone()
        if data_parallel:  # the global batch's loss = mean of the ranks' losses (equal token counts)
            dist.all_reduce(reported)
            reported /= world
        losses.append(reported.item())
    record.update(seconds=time.perf_counter() - start, losses=losses, final_loss=losses[-1],
                  rows_per_rank=per_rank, **{f"{k}_per_rank": v for k, v in runner.held().items()})
    state = runner.full_state()
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        torch.save({k: v.float().cpu() for k, v in state.items()}, out / "params.pt")
    (out / f"rank{rank}.json").write_text(json.dumps(record, indent=1))
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    return record


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=MODES, default="single", help="how to parallelise (see above)")
    parser.add_argument("--output", type=Path, default=Path("runs/dist"), help="folder for rank*.json, params.pt")
    parser.add_argument("--model", default="tiny-llama", help="a LLaMA-style causal LM: short name, folder, Hub id")
    parser.add_argument("--data", default="shakespeare", help="a named corpus or a .txt file")
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps")
    parser.add_argument("--batch", type=int, default=8, help="GLOBAL batch (rows per step, over all ranks)")
    parser.add_argument("--seq-len", type=int, default=64, help="tokens per row")
    parser.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate")
    parser.add_argument("--seed", type=int, default=0, help="seeds the initial weights (same on every rank)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("RUN_A", "RUN_B"),
                        help="print the max |param difference| of two finished runs and exit")
    args = parser.parse_args(argv)
    if min(args.steps, args.batch, args.seq_len, args.threads) < 1:
        parser.error("--steps, --batch, --seq-len and --threads must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.compare:
            for run in args.compare:
                if not (run / "params.pt").exists():
                    raise UsageError(f"no params.pt in {run}: run distributed.py with --output {run} first")
            off, total = params_off(*args.compare)
            print(f"max |param diff| = {max_param_diff(*args.compare):.3g}; {off:,} of {total:,} differ by > 1e-5")
            return 0
        record = train(args)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if record["rank"] == 0:
        print(f"{args.mode}: world size {record['world_size']}, loss {record['losses'][0]:.3f} -> "
              f"{record['final_loss']:.3f} in {record['seconds']:.1f} s; wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))  # `common` when run as a script
    if not __import__("torch").cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")  # DeepSpeed would otherwise look for a GPU
    sys.exit(main())
