"""The whole packed forward with the blocked gated delta rule against the chunked twin, alternated in
one process on one batch (so a shared machine's slow minutes hit both alike), fastest of 3 rounds.

    python -m bench.cpu_gdn_ab fp32 1        # dtype, torch threads
"""

from __future__ import annotations

import dataclasses
import sys
import time

import torch

from judge_core.models.batch import PackedBatch
from judge_core.models.weights import load_qwen3_5

from .cpu_row import head_sizes_checkpoint

LENGTHS = (3400, 3300, 3500, 3450)   # the dev pairs' prompt length at the 4B tokenizer (~3.4k)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args[0] if args else "fp32"]
    torch.set_num_threads(int(args[1]) if len(args) > 1 else 1)
    model = load_qwen3_5(head_sizes_checkpoint("/tmp/judge_core_bench"), dtype=dtype, label_ids=[32, 33])
    gen = torch.Generator().manual_seed(0)
    prompts = [torch.randint(0, 248_000, (n,), generator=gen).tolist() for n in LENGTHS]
    fast = model.kernels_for_weights()
    kernel_sets = {fast.gated_delta: fast, "torch (twin)": dataclasses.replace(fast, gated_delta="torch")}
    best: dict = {}
    with torch.inference_mode():
        for _ in range(3):
            for name, kernels in kernel_sets.items():
                model.kernels = kernels
                batch = PackedBatch.from_token_lists(prompts, "cpu")
                wall, cpu = time.perf_counter(), time.process_time()
                model(batch)
                best[name] = min(best.get(name, (float("inf"),) * 2),
                                 (time.perf_counter() - wall, time.process_time() - cpu))
    tokens = sum(LENGTHS)
    for name, (wall, cpu) in best.items():
        print(f"{args} GDN {name}: {tokens / wall:,.0f} tok/s wall, {tokens / cpu:,.0f} tok/CPU-s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
