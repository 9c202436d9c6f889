"""The CPU row's token mixers alone, one layer each at the 4B's head sizes: which route, which chunk size.

Gated delta rule (2 key heads of 128 serving 4 value heads of 128): our chunked solve_triangular twin
against the blocked path at chunk sizes 32 / 64 / 128. Attention (4 query heads over 2 kv heads,
head_dim 256, causal): per-prompt SDPA with k/v repeated, per-prompt SDPA with enable_gqa (the CPU
route), and one padded SDPA call over the whole pack. Tokens/s by wall clock and by the process's CPU
time (the second excludes waiting for a core on a shared machine).

    python -m bench.cpu_ops --threads 1 --lengths 1800,2100,1500,2500,1900,2200,1700,2000
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from judge_core.ops.attention import varlen_attention_sdpa
from judge_core.ops.gated_delta import gated_delta_chunked
from judge_core.ops.gated_delta_blocked import StepLayout, gated_delta_blocked


def _best(fn, repeats: int) -> tuple[float, float]:
    """(wall, cpu) seconds of the fastest of `repeats` runs after one warm-up."""
    fn()
    best = (float("inf"), float("inf"))
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        fn()
        best = min(best, (time.perf_counter() - w, time.process_time() - c))
    return best


def _padded_attention(q, k, v, lengths, scale):
    """One SDPA call over [N, H, Lmax, D], right-padded (padded rows computed, then dropped)."""
    n, longest = len(lengths), max(lengths)
    index = torch.cat([torch.arange(m) + i * longest for i, m in enumerate(lengths)])

    def pad(x):
        buf = x.new_zeros((n * longest, *x.shape[1:]))
        buf[index] = x
        return buf.view(n, longest, *x.shape[1:]).transpose(1, 2)

    y = F.scaled_dot_product_attention(pad(q), pad(k), pad(v), is_causal=True, scale=scale, enable_gqa=True)
    return y.transpose(1, 2).reshape(n * longest, *q.shape[1:])[index]


def _repeat_attention(q, k, v, bounds, scale):
    out = torch.empty_like(q)
    for s, e in zip(bounds[:-1], bounds[1:]):
        ks, vs = (x[s:e].repeat_interleave(2, dim=1).transpose(0, 1)[None] for x in (k, v))
        out[s:e] = F.scaled_dot_product_attention(q[s:e].transpose(0, 1)[None], ks, vs, is_causal=True,
                                                  scale=scale)[0].transpose(0, 1)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.cpu_ops", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--lengths", default="1800,2100,1500,2500,1900,2200,1700,2000,2900,1600,3400,1550")
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    lengths = [int(x) for x in args.lengths.split(",")]
    bounds = [0] + torch.tensor(lengths).cumsum(0).tolist()
    cu, tokens = torch.tensor(bounds), bounds[-1]
    gen = torch.Generator().manual_seed(0)
    q, k = torch.randn(tokens, 2, 128, generator=gen), torch.randn(tokens, 2, 128, generator=gen)
    v = torch.randn(tokens, 4, 128, generator=gen)
    g, beta = -torch.rand(tokens, 4, generator=gen) * 0.2, torch.rand(tokens, 4, generator=gen)
    print(f"{tokens} tokens in {len(lengths)} prompts, {args.threads} thread(s)")
    rows = [("gated delta: chunked solve_triangular (twin)", lambda: gated_delta_chunked(q, k, v, g, beta, cu))]
    for size in (32, 64, 128):
        layout = StepLayout.build(bounds, size, "cpu")
        rows.append((f"gated delta: blocked, chunk {size}",
                     lambda layout=layout: gated_delta_blocked(q, k, v, g, beta, cu, layout=layout)))
    for dtype in (torch.float32, torch.bfloat16):
        qa = torch.randn(tokens, 4, 256, generator=gen).to(dtype)
        ka, va = (torch.randn(tokens, 2, 256, generator=gen).to(dtype) for _ in range(2))
        name = str(dtype).removeprefix("torch.")
        rows += [(f"attention {name}: per prompt, k/v repeated", lambda qa=qa, ka=ka, va=va:
                  _repeat_attention(qa, ka, va, bounds, 1 / 16)),
                 (f"attention {name}: per prompt, enable_gqa (CPU route)", lambda qa=qa, ka=ka, va=va:
                  varlen_attention_sdpa(qa, ka, va, bounds, 1 / 16)),
                 (f"attention {name}: one padded call", lambda qa=qa, ka=ka, va=va:
                  _padded_attention(qa, ka, va, lengths, 1 / 16))]
    print("| op, one layer | tokens/s (wall) | tokens/CPU-s |\n|---|--:|--:|")
    for name, fn in rows:
        wall, cpu = _best(fn, args.repeats)
        print(f"| {name} | {tokens / wall:,.0f} | {tokens / cpu:,.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
