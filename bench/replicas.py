"""`python -m bench.replicas` (or `python -m bench --replicas 1,2`): judge_core on Ray Data, 1 vs N replicas.

    python -m bench.replicas --model tiny --n-pairs 48 --replicas 1,2 --threads 1

What it measures, on a local Ray (ray.init(num_cpus=<cores>)):
- per replica count R: wall time of a whole job (actor start and model load included) and the steady
  rate from the first verdict to the last, over token-sized blocks of ~--block-pairs pairs;
- Ray's own overhead per batch: the same packed blocks (one pair each) through a 1-actor pool whose
  call returns its batch untouched: the steady time between consecutive blocks is what Ray adds to
  every replica call (scheduling, moving the block to the actor and the result back), judge excluded.
On a 2-core CPU shared with other jobs, 2 replicas share the cores the first one had: this measures
Ray's overhead per pair, not scaling. Scaling is one GPU per replica (bench/RESULTS.md, sizing table).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.replicas", description=__doc__.split("\n")[0])
    p.add_argument("--model", default="tiny")
    p.add_argument("--n-pairs", type=int, default=48)
    p.add_argument("--response-median", type=int, default=150, help="response tokens, median")
    p.add_argument("--block-pairs", type=int, default=4, help="pairs per block in the replica rows (about)")
    p.add_argument("--replicas", default="1,2")
    p.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process (OMP_NUM_THREADS)")
    p.add_argument("--out", default="bench/out/replicas.jsonl", help="JSONL file the rows are appended to")
    return p.parse_args(argv)


def make_pairs(n: int, response_median: int, model_path: str):
    from transformers import AutoTokenizer

    from .workloads import synthetic_pairs

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    return [(p.instruction, p.response_1, p.response_2)
            for p in synthetic_pairs(n, tokenizer=tokenizer, response_median=response_median,
                                     response_p90=2 * response_median)]


def local_seconds_per_call(judge, pairs, block_pairs: int) -> float:
    """compare_many in this process over blocks of `block_pairs` pairs: seconds per call (after a warm-up)."""
    judge.compare_many(pairs[:block_pairs])
    t0 = time.perf_counter()
    calls = 0
    for start in range(0, len(pairs), block_pairs):
        judge.compare_many(pairs[start:start + block_pairs])
        calls += 1
    return (time.perf_counter() - t0) / calls


class PassThrough:
    """An actor that does nothing with its batch: what is left of a block's time is Ray's."""

    def __call__(self, batch):
        return batch


def ray_overhead(pairs, cpus_per_replica: float) -> dict:
    """Seconds per block of a do-nothing 1-actor pool over one-pair blocks, first block excluded."""
    from ray.data import ActorPoolStrategy

    from judge_core.ray import pairs_dataset

    t0 = time.perf_counter()
    ds = pairs_dataset(pairs, block_tokens=1)
    out = ds.map_batches(PassThrough, batch_format="pyarrow", batch_size=1, compute=ActorPoolStrategy(size=1),
                         num_cpus=cpus_per_replica)
    arrivals = [time.perf_counter() - t0 for _ in out.iter_batches(batch_size=None, batch_format="pyarrow")]
    return {"blocks": len(arrivals), "s_per_block": (arrivals[-1] - arrivals[0]) / max(len(arrivals) - 1, 1)}


def ray_run(model: str, pairs, replicas: int, block_tokens: int, cpus_per_replica: float) -> dict:
    """One job: wall seconds, seconds to the first verdict, arrival time of each output block."""
    from judge_core.ray import pairs_dataset, score_dataset

    t0 = time.perf_counter()
    ds = pairs_dataset(pairs, block_tokens=block_tokens)
    scored = score_dataset(ds, model, replicas=replicas, packed=True, num_cpus=cpus_per_replica)
    arrivals, rows = [], 0
    for batch in scored.iter_batches(batch_size=None, batch_format="pyarrow"):
        arrivals.append(time.perf_counter() - t0)
        rows += batch.num_rows
    assert rows == len(pairs), f"{rows} rows for {len(pairs)} pairs"
    return {"wall_s": arrivals[-1], "first_s": arrivals[0], "blocks": len(arrivals), "arrivals": arrivals}


def replicas_rows(model: str = "tiny", n_pairs: int = 48, response_median: int = 150, block_pairs: int = 4,
                  replicas=(1, 2), cpus: int = 2, threads: int = 1) -> list[dict]:
    import ray
    import torch
    from ray.data import DataContext

    from judge_core import Judge
    from judge_core.ray.blocks import estimated_tokens

    os.environ["OMP_NUM_THREADS"] = str(threads)  # the replicas' torch threads (the raylet passes it on)
    torch.set_num_threads(threads)
    path = model
    if model == "tiny":
        from judge_core.embedded import default_checkpoint

        path = str(default_checkpoint())
    pairs = make_pairs(n_pairs, response_median, path)
    per_pair = max(estimated_tokens(*p) for p in pairs)
    judge = Judge.from_pretrained(path)
    local_small = local_seconds_per_call(judge, pairs, 1)
    local_big = local_seconds_per_call(judge, pairs, block_pairs)

    ray.init(num_cpus=cpus, include_dashboard=False, logging_level=logging.WARNING)
    ctx = DataContext.get_current()
    ctx.enable_progress_bars = ctx.print_on_execution_start = ctx.enable_auto_log_stats = False
    rows = []
    try:
        cpu_share = cpus / max(replicas) / 2  # leaves room for Ray's read tasks
        overhead = ray_overhead(pairs, cpu_share)
        rows.append({"row": "ray overhead per batch", "replicas": 1, "pairs": len(pairs), "blocks": overhead["blocks"],
                     "overhead_ms_per_batch": 1000 * overhead["s_per_block"],
                     "judge_ms_per_pair_in_process": 1000 * local_small})
        for r in replicas:
            run = ray_run(path, pairs, r, block_pairs * per_pair, cpu_share)
            steady = run["wall_s"] - run["first_s"]
            rows.append({"row": "replicas", "replicas": r, "pairs": len(pairs), "blocks": run["blocks"],
                         "wall_s": run["wall_s"], "first_verdict_s": run["first_s"],
                         "pairs_per_s_wall": len(pairs) / run["wall_s"],
                         "pairs_per_s_steady": (len(pairs) - len(pairs) / run["blocks"]) / steady if steady > 0 else None,
                         "single_process_pairs_per_s": block_pairs / local_big})
    finally:
        ray.shutdown()
    return rows


def format_row(row: dict) -> str:
    if row["row"] == "ray overhead per batch":
        return (f"| Ray overhead per batch (a do-nothing 1-actor pool, {row['blocks']} one-pair blocks) | "
                f"**{row['overhead_ms_per_batch']:.1f} ms/batch** | (the tiny judge: "
                f"{row['judge_ms_per_pair_in_process']:.0f} ms per one-pair call in-process) |")
    steady = row["pairs_per_s_steady"]
    return (f"| {row['replicas']} replica(s), {row['blocks']} blocks | {row['pairs_per_s_wall']:.2f} pairs/s wall "
            f"({row['first_verdict_s']:.1f} s to the first verdict) | "
            f"{'n/a' if steady is None else f'{steady:.2f}'} pairs/s steady (in-process: "
            f"{row['single_process_pairs_per_s']:.2f}) |")


def main(argv=None) -> int:
    args = parse_args(argv)
    rows = replicas_rows(args.model, args.n_pairs, args.response_median, args.block_pairs,
                         tuple(int(x) for x in args.replicas.split(",")), args.cpus, args.threads)
    for row in rows:
        print(format_row(row))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "a", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps({**row, "argv": sys.argv[1:] if argv is None else argv}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
