"""The packed CPU forward over real pairs with shared prefixes on and off, alternated in one process
(so a shared machine's slow minutes hit both alike), fastest of 3 rounds.

    python -m bench.cpu_prefix_ab fp32 1 8      # dtype, torch threads, pairs (the card's, seed 42)

Prints prompt tokens, computed tokens and prompt tokens/s (wall and per CPU-second) for each setting,
and the largest |d p1| between them (prefix sharing must not move a number).
"""

from __future__ import annotations

import sys
import time

import torch

from judge_core import Judge

from .cpu_row import DEFAULT_ITEMS, head_sizes_checkpoint, row_pairs


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    dtype = args[0] if args else "fp32"
    torch.set_num_threads(int(args[1]) if len(args) > 1 else 1)
    n_pairs = int(args[2]) if len(args) > 2 else 8
    path = str(head_sizes_checkpoint("/tmp/judge_core_bench"))
    judges = {share: Judge.from_pretrained(path, backend="packed", device="cpu", dtype=dtype, share_prefixes=share)
              for share in (True, False)}
    pairs, workload = row_pairs(str(DEFAULT_ITEMS), n_pairs, 42, judges[True].tokenizer)
    tuples = [p.as_tuple() for p in pairs]
    best, stats, p1 = {}, {}, {}
    for _ in range(3):
        for share, judge in judges.items():
            wall, cpu = time.perf_counter(), time.process_time()
            results = judge.compare_many(tuples)
            seconds = (time.perf_counter() - wall, time.process_time() - cpu)
            best[share] = min(best.get(share, (float("inf"),) * 2), seconds)
            stats[share], p1[share] = dict(judge.last_run_stats), [r.p1 for r in results]
    print(f"{workload}; {dtype}, {torch.get_num_threads()} thread(s), {len(tuples)} pairs")
    for share, (wall, cpu) in best.items():
        s = stats[share]
        tokens = s.get("prompt_tokens", s.get("real_tokens"))
        print(f"share_prefixes={share}: {tokens:,} prompt tokens, {s.get('computed_tokens', tokens):,} computed; "
              f"{tokens / wall:,.0f} prompt tok/s wall, {tokens / cpu:,.0f} tok/CPU-s ({wall:.2f} s)")
    diff = max(abs(a - b) for a, b in zip(p1[True], p1[False]))
    print(f"max |d p1| shared vs unshared: {diff * 100:.3g} pp")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
