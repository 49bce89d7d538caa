"""A continuous-batching inference engine with a paged KV cache, from scratch, for LLaMA-style models.

What production servers (vLLM, TGI, llama.cpp's server) do, in a few hundred lines you can read:

- **Paged KV cache.** Keys and values live in one pool of fixed-size blocks per layer. A request owns a list of
  blocks (its block table) that grows as it generates, so memory is never reserved for tokens that are never
  written, and a finished request's blocks are reused at once.
- **Continuous batching.** Every step runs ONE forward pass over all running requests: the new tokens of each
  (its whole prompt when it was just admitted, one token when it is decoding) are packed into one sequence for
  the linear layers; attention reads each request's own blocks. A request that finishes leaves the batch at
  once and a waiting one takes its place, instead of the whole batch waiting for its longest member.
- **Scheduler.** First come, first served; a request is admitted when there is a free batch slot and room in
  the cache; when the cache runs out mid-generation, the newest request is preempted (its blocks freed) and
  recomputed later.

It drives the embedding, norm, projection and MLP modules of a transformers LlamaForCausalLM (SmolLM2 or any
LLaMA/Mistral/Qwen2-like checkpoint without attention biases or sliding windows), so it runs the real weights.

Python API (import it from optimization/):
  Engine(model, max_batch=16, block_size=16, kv_cache_tokens=16384, kv_dtype=None, prepack=None,
         attention_kernel=None)
      attention_kernel: attention in C, read in place from the cache blocks (paged_attention.c, compiled with the
      system C compiler on first use; about 2x faster than gathering the blocks for PyTorch's attention). None:
      use it where it builds, else PyTorch; True: required; False: PyTorch (the reference it is tested against).
      kv_dtype: the cache's dtype. By default bf16 for a bf16 model read by the C kernel (which computes in
      float32), else float32: PyTorch's CPU attention is several times slower in bf16 (measured).
      prepack: for a bf16 model on CPU (the default there), the linear weights are reordered once into the
      matmul kernel's blocked layout and q/k/v and gate/up are fused into one matmul each, with bit-identical
      results (checked at start-up); rebuild the engine if the weights change.
      On Linux, creating an engine also makes glibc keep freed memory for reuse (`hold_freed_memory`), which
      makes prefill about 30 % faster on CPU; the process then keeps up to 1 GB of freed memory.
  engine.add(prompt_ids, max_new_tokens=64, temperature=0.0, top_p=1.0, stop=(), seed=None, ignore_eos=False)
  engine.step() -> [(request, token_id), ...]        one forward pass; the tokens it produced
  engine.run() -> finished requests                   step until every request is done
  engine.generate(prompts, **sampling) -> [output_ids, ...]
"""

from __future__ import annotations

import ctypes
import itertools
import sys
import time
from collections import deque
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

_ids = itertools.count()


@dataclass(eq=False)  # a request equals only itself (and `request in list` stays cheap)
class Request:
    """One generation request and its state in the engine."""

    prompt: list[int]
    max_new_tokens: int = 64
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    stop: tuple[int, ...] = ()  # token ids that end the generation (the model's EOS is added by the engine)
    seed: int | None = None
    ignore_eos: bool = False  # keep generating past the model's end-of-sequence token (for benchmarks)
    id: int = field(default_factory=lambda: next(_ids))
    output: list[int] = field(default_factory=list)
    blocks: list[int] = field(default_factory=list)  # block table: cache blocks holding this request's K/V
    cached: int = 0  # how many of `tokens` have their K/V in the cache
    finish_reason: str | None = None  # "stop" | "length" | "cancelled"
    arrived: float = field(default_factory=time.perf_counter)
    first_token_at: float | None = None
    finished_at: float | None = None
    generator: torch.Generator | None = None

    @property
    def tokens(self) -> list[int]:
        return self.prompt + self.output

    @property
    def done(self) -> bool:
        return self.finish_reason is not None


class PagedKVCache:
    """Per layer, one pool of `num_blocks * block_size` key and value slots; requests own whole blocks."""

    def __init__(self, layers: int, kv_heads: int, head_dim: int, num_blocks: int, block_size: int,
                 dtype: torch.dtype, device: torch.device | str):
        shape = (layers, num_blocks, kv_heads, block_size, head_dim)  # a head's keys in a block are contiguous
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.block_size, self.num_blocks = block_size, num_blocks
        self.free = deque(range(num_blocks))

    def blocks_for(self, tokens: int) -> int:
        return -(-tokens // self.block_size)  # ceiling division

    def reserve(self, request: Request, tokens: int) -> bool:
        """Grow the request's block table to hold `tokens` tokens; False (nothing taken) if the pool is short."""
        missing = self.blocks_for(tokens) - len(request.blocks)
        if missing > len(self.free):
            return False
        request.blocks += [self.free.popleft() for _ in range(max(0, missing))]
        return True

    def release(self, request: Request) -> None:
        self.free.extend(request.blocks)
        request.blocks, request.cached = [], 0

    def blocks(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of one layer: (num_blocks, kv_heads, block_size, head_dim) pools."""
        return self.k[layer], self.v[layer]

    def slots(self, request: Request, start: int, end: int, device) -> torch.Tensor:
        """Where positions start..end-1 of a request live, as rows of a layer's pool seen as (-1, head_dim):
        (positions, kv_heads) indices, since each kv head has its own row in a block."""
        pos = torch.arange(start, end)
        block = torch.tensor(request.blocks, dtype=torch.long)[pos // self.block_size]
        heads = torch.arange(self.k.shape[2])
        return ((block[:, None] * len(heads) + heads) * self.block_size + (pos % self.block_size)[:, None]).to(device)

    def write(self, layer: int, slots: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        """Store the keys and values (N, kv_heads, head_dim) of N tokens at their slots (N, kv_heads)."""
        rows = slots.flatten()
        self.k[layer].view(-1, self.k.shape[-1]).index_copy_(0, rows, k.reshape(rows.numel(), -1).to(self.k.dtype))
        self.v[layer].view(-1, self.v.shape[-1]).index_copy_(0, rows, v.reshape(rows.numel(), -1).to(self.v.dtype))


def hold_freed_memory() -> bool:
    """Make glibc keep freed memory for the next tensor instead of handing it back to the OS at once.

    By default a freed block of more than a few hundred kB goes back to the OS, so the next large tensor of a
    prefill step is fresh memory that page-faults on every 4 kB page it touches. Measured here, that made a
    2,400-token prefill step about 30 % slower, and elementwise ops up to 5x slower. (PyTorch's CPU tuning
    guide recommends jemalloc or tcmalloc for the same reason; this is the version without an install.) It is
    process-wide: the process keeps up to 1 GB of freed memory for reuse. Returns False where it does not apply.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (e.g. musl): nothing to tune
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(libc.mallopt(m_trim_threshold, 2**30) and libc.mallopt(m_mmap_threshold, 2**25))


class Engine:
    """Continuous batching over a paged KV cache for a transformers LLaMA-style causal LM."""

    def __init__(self, model, max_batch: int = 16, block_size: int = 16, kv_cache_tokens: int = 16384,
                 eos_token_ids: tuple[int, ...] | None = None, kv_dtype: torch.dtype | None = None,
                 prepack: bool | None = None, attention_kernel: bool | None = None):
        cfg = model.config
        if getattr(cfg, "attention_bias", False) or getattr(cfg, "sliding_window", None):
            raise ValueError("this engine supports LLaMA-style attention without biases or sliding windows")
        self.model, self.cfg = model.eval(), cfg
        self.heads, self.kv_heads = cfg.num_attention_heads, cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.heads
        self.max_len = cfg.max_position_embeddings
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype
        kv_dtype, self.kernel, self.kernel_status = self._attention_backend(kv_dtype, attention_kernel)
        self.attention_dtype = torch.float32 if self.kernel is not None else kv_dtype  # q, rotary, softmax
        self.cache = PagedKVCache(cfg.num_hidden_layers, self.kv_heads, self.head_dim,
                                  -(-kv_cache_tokens // block_size), block_size, kv_dtype, self.device)
        self.max_batch = max_batch
        eos = eos_token_ids if eos_token_ids is not None else model.generation_config.eos_token_id
        self.eos = tuple(eos) if isinstance(eos, (list, tuple)) else ((eos,) if eos is not None else ())
        self.memory_held = hold_freed_memory()
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []
        self.steps = self.preemptions = 0
        self.packed = self._prepack() if (prepack is None and self._can_prepack()) or prepack else {}

    # ---- public API -------------------------------------------------------------------------------------
    def add(self, prompt: list[int], **sampling) -> Request:
        """Queue a request (token ids of the prompt); it joins the batch at the next step with room."""
        request = Request(list(prompt), **sampling)
        if not request.prompt:
            raise ValueError("the prompt must contain at least one token")
        if len(request.prompt) + 1 > min(self.max_len, self.cache.num_blocks * self.cache.block_size):
            raise ValueError(f"prompt of {len(request.prompt)} tokens does not fit the model or the KV cache")
        if request.seed is not None:
            request.generator = torch.Generator(device="cpu").manual_seed(request.seed)
        self.waiting.append(request)
        return request

    def cancel(self, request: Request) -> None:
        """Stop a request now (e.g. its client went away) and free its cache blocks."""
        if request in self.waiting:
            self.waiting.remove(request)
        self._finish(request, "cancelled")

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    @torch.inference_mode()
    def step(self) -> list[tuple[Request, int]]:
        """Admit what fits, run one forward pass over every running request, sample one token for each."""
        self._make_room()
        while self.waiting and len(self.running) < self.max_batch:
            if not self.cache.reserve(self.waiting[0], len(self.waiting[0].tokens) + 1):
                break  # no room yet: wait until a running request finishes
            self.running.append(self.waiting.popleft())
        if not self.running:
            return []
        rows = list(self.running)
        logits = self._forward(rows)
        greedy = logits.float().argmax(-1).tolist()  # one call for the whole batch; sampled rows are redone below
        self.steps += 1
        events = []
        for request, row_logits, best in zip(rows, logits, greedy, strict=True):
            request.cached = len(request.tokens)
            token = best if request.temperature <= 0 else self._sample(request, row_logits)
            request.output.append(token)
            request.first_token_at = request.first_token_at or time.perf_counter()
            events.append((request, token))
            if (token in self.eos and not request.ignore_eos) or token in request.stop:
                self._finish(request, "stop")
            elif len(request.output) >= request.max_new_tokens or len(request.tokens) >= self.max_len:
                self._finish(request, "length")
        return events

    def run(self) -> list[Request]:
        """Step until no request is waiting or running; returns the requests that finished meanwhile."""
        finished = []
        while self.has_work():
            finished += [r for r, _ in self.step() if r.done]
        return finished

    def generate(self, prompts: list[list[int]], **sampling) -> list[list[int]]:
        """Generate for many prompts at once; returns each prompt's new token ids, in order."""
        requests = [self.add(p, **sampling) for p in prompts]
        self.run()
        return [r.output for r in requests]

    # ---- scheduling ---------------------------------------------------------------------------------------
    def _make_room(self) -> None:
        """Give each running request a slot for its next token; preempt the newest ones if the pool is full."""
        for request in sorted(self.running, key=lambda r: r.arrived):
            while request in self.running and not self.cache.reserve(request, len(request.tokens) + 1):
                victim = max(self.running, key=lambda r: r.arrived)
                self.running.remove(victim)
                self.cache.release(victim)  # its K/V is recomputed from prompt + output when it is readmitted
                self.waiting.appendleft(victim)
                self.preemptions += 1

    def _finish(self, request: Request, reason: str) -> None:
        request.finish_reason, request.finished_at = reason, time.perf_counter()
        if request in self.running:
            self.running.remove(request)
        self.cache.release(request)

    def _sample(self, request: Request, logits: torch.Tensor) -> int:
        probs = torch.softmax(logits.float() / request.temperature, dim=-1)
        if request.top_p < 1.0:  # nucleus: keep the smallest set of tokens whose probability reaches top_p
            sorted_probs, order = probs.sort(descending=True)
            keep = sorted_probs.cumsum(-1) - sorted_probs < request.top_p
            probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_probs[keep])
        return int(torch.multinomial(probs.cpu(), 1, generator=request.generator))

    # ---- the model ---------------------------------------------------------------------------------------
    def _forward(self, rows: list[Request]) -> torch.Tensor:
        """Logits of the next token for every row, feeding each row its tokens that are not cached yet."""
        new = [r.tokens[r.cached:] for r in rows]
        ids = torch.tensor([t for seq in new for t in seq], device=self.device)  # (N,) packed, no padding
        positions = torch.cat([torch.arange(r.cached, r.cached + len(seq)) for r, seq in zip(rows, new, strict=True)])
        slots = torch.cat([self.cache.slots(r, r.cached, len(r.tokens), self.device) for r in rows])
        inner = self.model.model
        x = inner.embed_tokens(ids)  # (N, D): the residual stream, in the model's dtype
        rope = self._rope_tables(positions.to(self.device))
        plan = self._attention_plan(rows, new)
        for i, layer in enumerate(inner.layers):
            x = x + self._attention(i, layer.self_attn, self._norm(layer.input_layernorm, x), rope, slots, plan)
            x = x + self._mlp(layer.mlp, self._norm(layer.post_attention_layernorm, x))
        last = torch.tensor(list(itertools.accumulate(len(s) for s in new)), device=self.device) - 1
        return self._linear(self.model.lm_head, self._norm(inner.norm, x[last]))  # (rows, V)

    def _rope_tables(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and signed sin of the rotary embedding, (N, 1, Dh), in the attention dtype.

        HF rotates with x * cos + rotate_half(x) * sin, where rotate_half(x) = [-x2, x1]. The same numbers come
        from x * cos + roll(x, Dh/2) * [-sin1, sin2], which is fewer kernels; q and k are rotated together.
        """
        like = torch.empty(0, dtype=self.attention_dtype, device=self.device)  # the tables' dtype
        cos, sin = self.model.model.rotary_emb(like, positions[None])  # (1, N, Dh)
        half = self.head_dim // 2
        signed = torch.cat([-sin[..., :half], sin[..., half:]], dim=-1)
        return cos[0, :, None], signed[0, :, None]

    @staticmethod
    def _norm(norm, x: torch.Tensor) -> torch.Tensor:
        """HF's RMSNorm (normalise in float32, round to the model's dtype, scale), with fewer Python-level calls:
        `F.rms_norm` does the float32 part that HF writes as five separate tensor operations."""
        eps = getattr(norm, "variance_epsilon", None)
        if eps is None:  # an unfamiliar norm module: run it as it is
            return norm(x)
        return norm.weight * F.rms_norm(x.float(), x.shape[-1:], eps=eps).to(x.dtype)

    def _mlp(self, mlp, h: torch.Tensor) -> torch.Tensor:
        sizes = [mlp.gate_proj.out_features, mlp.up_proj.out_features]
        gate, up = self._fused((mlp.gate_proj, mlp.up_proj), h).split(sizes, dim=-1)
        return self._linear(mlp.down_proj, mlp.act_fn(gate).mul_(up))

    def _linear(self, module, h: torch.Tensor, packed: dict | None = None) -> torch.Tensor:
        weight = (self.packed if packed is None else packed).get(module)
        if weight is None:
            return module(h)
        return torch.ops.mkldnn._linear_pointwise(h, weight, module.bias, "none", [], "")

    def _fused(self, modules: tuple, h: torch.Tensor, packed: dict | None = None) -> torch.Tensor:
        """Outputs of linears that read the same input, side by side: ONE matmul when `_prepack` fused them."""
        weight = (self.packed if packed is None else packed).get(modules)
        if weight is None:
            return torch.cat([self._linear(m, h, packed) for m in modules], dim=-1)
        return torch.ops.mkldnn._linear_pointwise(h, weight, None, "none", [], "")

    # ---- prepacked weights (bf16 on CPU) ------------------------------------------------------------------
    # oneDNN's bf16 matmul reorders a plain (out, in) weight into its blocked layout on EVERY call. Doing it
    # once here (what llama.cpp calls "repacking") makes decode steps faster with bit-identical results. It
    # uses the private op PyTorch's own compiler emits; the engine falls back to plain F.linear without it.
    def _can_prepack(self) -> bool:
        return (self.device.type == "cpu" and self.dtype == torch.bfloat16 and torch.backends.mkldnn.is_available()
                and hasattr(torch.ops.mkldnn, "_reorder_linear_weight"))

    # Linears that read the same input (q, k, v; gate, up) are also fused into one matmul each: fewer, larger
    # calls, since on a CPU a decode step is dominated by the fixed cost of ~200 small matmuls.
    def _prepack(self) -> dict:
        def pack(weight: torch.Tensor):
            return torch.ops.mkldnn._reorder_linear_weight(weight.detach(), self.max_batch)

        singles = [self.model.lm_head]
        groups = []
        for layer in self.model.model.layers:
            attn, mlp = layer.self_attn, layer.mlp
            singles += [attn.o_proj, mlp.down_proj]
            groups += [(attn.q_proj, attn.k_proj, attn.v_proj), (mlp.gate_proj, mlp.up_proj)]
        packed = {m: pack(m.weight) for m in singles}
        packed |= {g: pack(torch.cat([m.weight for m in g])) for g in groups}
        for rows in (1, 5, 64):  # the packed (and fused) kernels must round exactly as plain F.linear
            probe = torch.randn(rows, singles[1].in_features, dtype=self.dtype)
            group, single = groups[0], singles[1]
            fused = self._fused(group, probe, packed)
            plain = torch.cat([F.linear(probe, m.weight) for m in group], dim=-1)
            if not (torch.equal(self._linear(single, probe, packed), F.linear(probe, single.weight))
                    and torch.equal(fused, plain)):
                return {}  # this build's packed kernel rounds differently: keep the plain path
        return packed

    # ---- attention in C (optional) ------------------------------------------------------------------------
    def _attention_backend(self, kv_dtype: torch.dtype | None, wanted: bool | None):
        """The cache dtype, and the C kernel that reads it (None: PyTorch attention), with a line saying why."""
        if kv_dtype is not None:
            choices = [kv_dtype]
        else:  # a bf16 cache halves the bytes attention reads, but only the C kernel is fast on it
            choices = [torch.bfloat16, torch.float32] if self.dtype == torch.bfloat16 else [torch.float32]
        status = "off (attention_kernel=False)"
        if wanted is not False and self.device.type != "cpu":
            status = "not used: it is a CPU kernel"
        elif wanted is not False:
            from paged_attention import load  # next to this file
            for dtype in choices:
                kernel, status = load(self.heads // self.kv_heads, self.head_dim, dtype)
                if kernel is not None:
                    return dtype, kernel, status
        if wanted:
            raise RuntimeError(f"attention_kernel=True, but {status}")
        return choices[-1], None, status

    def _attention_plan(self, rows: list[Request], new: list[list[int]]) -> dict:
        """Index tensors shared by all layers: which packed tokens decode, which prefill, and their cache slots."""
        if self.kernel is not None:  # every new token attends to its row's first `length` cached tokens
            width = max(len(r.blocks) for r in rows)
            table = torch.tensor([r.blocks + [0] * (width - len(r.blocks)) for r in rows])  # (rows, blocks)
            counts = torch.tensor([len(seq) for seq in new])
            lengths = torch.cat([torch.arange(r.cached + 1, len(r.tokens) + 1) for r in rows])  # (N,)
            return {"kernel": (table.repeat_interleave(counts, dim=0), lengths)}  # a table row per token
        offsets = [0, *itertools.accumulate(len(s) for s in new)]
        decode = [i for i, s in enumerate(new) if len(s) == 1]
        plan = {"decode": None, "prefill": []}
        if decode:
            lengths = torch.tensor([len(rows[i].tokens) for i in decode])
            width = self.cache.blocks_for(int(lengths.max()))  # in blocks
            # whole blocks are gathered (a few large copies instead of one per token), padded with block 0
            table = torch.tensor([rows[i].blocks[:width] + [0] * (width - len(rows[i].blocks[:width]))
                                  for i in decode])  # (Bd, blocks)
            padding = torch.arange(width * self.cache.block_size)[None] >= lengths[:, None]
            mask = torch.zeros(padding.shape, dtype=self.attention_dtype).masked_fill_(padding, float("-inf"))
            mask = mask[:, None, None]  # (Bd, 1, 1, L): added to the scores, so padding gets no weight
            plan["decode"] = (torch.tensor([offsets[i] for i in decode], device=self.device),
                              table.to(self.device), mask.to(self.device))
        # a prompt row (its first step, or a recompute after preemption) has nothing cached before it
        plan["prefill"] = [(offsets[i], offsets[i + 1]) for i, seq in enumerate(new) if len(seq) > 1]
        return plan

    def _attention(self, layer: int, attn, h: torch.Tensor, rope, slots, plan) -> torch.Tensor:
        """Grouped-query attention for N packed tokens (h: (N, D)), reading and writing the paged cache."""
        n, dh, heads = h.shape[0], self.head_dim, self.heads
        qkv = self._fused((attn.q_proj, attn.k_proj, attn.v_proj), h)
        qkv = qkv.to(self.attention_dtype).view(n, -1, dh)  # float32 for the C kernel, else the cache's dtype
        qk, v = qkv[:, :heads + self.kv_heads], qkv[:, heads + self.kv_heads:]
        cos, signed_sin = rope
        qk = (qk * cos).add_(qk.roll(dh // 2, dims=-1) * signed_sin)  # rotary embedding of q and k at once
        q, k = qk[:, :heads], qk[:, heads:]
        self.cache.write(layer, slots, k, v)  # before reading: a token attends to itself
        if self.kernel is not None:  # in C, straight from the blocks: the same code for prompts and decoding
            table, lengths = plan["kernel"]
            queries = q.reshape(n, self.kv_heads, -1, dh).contiguous()  # (N, K, G, Dh), see the decode path
            out = self.kernel(queries, *self.cache.blocks(layer), table, lengths, dh ** -0.5)
            return self._linear(attn.o_proj, out.view(n, heads * dh).to(h.dtype))
        out = torch.empty_like(q)
        if plan["decode"] is not None:
            index, table, mask = plan["decode"]
            keys, values = self.cache.blocks(layer)  # (blocks, K, block_size, Dh)
            shape = (*table.shape, self.kv_heads, -1, dh)  # (Bd, W, K, block_size, Dh) -> (Bd, K, L, Dh)
            kd = keys.index_select(0, table.flatten()).view(shape).transpose(1, 2).flatten(2, 3)
            vd = values.index_select(0, table.flatten()).view(shape).transpose(1, 2).flatten(2, 3)
            everyone = len(index) == n  # the usual case: every row is decoding, no gather/scatter needed
            qd = q if everyone else q[index]  # (Bd, H, Dh)
            # the G query heads that share a kv head go in as G queries of that head: each gathered key is then
            # read once for all G of them, instead of once per query head (about 20 % faster here)
            qd = qd.view(len(index), self.kv_heads, -1, dh)  # (Bd, K, G, Dh)
            od = F.scaled_dot_product_attention(qd, kd, vd, attn_mask=mask).reshape(len(index), heads, dh)
            if everyone:
                out = od
            else:
                out[index] = od
        for start, end in plan["prefill"]:  # causal attention over the row's own fresh keys
            qp, kp, vp = (t[start:end].transpose(0, 1)[None] for t in (q, k, v))  # (1, heads, T, Dh)
            out[start:end] = F.scaled_dot_product_attention(qp, kp, vp, is_causal=True, enable_gqa=True)[0].transpose(0, 1)
        return self._linear(attn.o_proj, out.reshape(n, heads * dh).to(h.dtype))
