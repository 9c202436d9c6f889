"""The CPU forward with glibc keeping freed blocks (judge_core/cpu_malloc.py) against malloc as the system
leaves it: one child process per setting (the setting is process-wide and cannot be undone), the same
model and batch, the fastest of several forwards and the page faults per forward.

    python -m bench.cpu_malloc_ab --threads 2          # fp32; --dtype bf16
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

# The dev pairs' prompt lengths at the 4B tokenizer run 1.5k-4k tokens: 8 prompts, 15,700 tokens.
LENGTHS = (1800, 2100, 1500, 2500, 1900, 2200, 1700, 2000)

_CHILD = """
import json, resource, sys, time, torch
from judge_core.cpu_malloc import keep_freed_memory
from judge_core.models.batch import PackedBatch
from judge_core.models.weights import load_qwen3_5
from bench.cpu_row import head_sizes_checkpoint

dtype, threads, rounds, lengths = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
kept = keep_freed_memory()                      # JUDGE_CORE_CPU_MALLOC in this child's env decides
torch.set_num_threads(threads)
model = load_qwen3_5(head_sizes_checkpoint("/tmp/judge_core_bench"), dtype=getattr(torch, dtype), label_ids=[32, 33])
gen = torch.Generator().manual_seed(0)
prompts = [torch.randint(0, 248_000, (n,), generator=gen).tolist() for n in lengths]
best, faults = float("inf"), []
with torch.inference_mode():
    model(PackedBatch.from_token_lists(prompts, "cpu"))           # first forward: allocations settle
    for _ in range(rounds):
        f0, t0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
        model(PackedBatch.from_token_lists(prompts, "cpu"))
        best = min(best, time.perf_counter() - t0)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
print(json.dumps({"kept": kept, "seconds": best, "tokens_per_s": sum(lengths) / best,
                  "faults_per_forward": sorted(faults)[len(faults) // 2],
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10}))
"""


def run(setting: str, dtype: str, threads: int, rounds: int) -> dict:
    env = dict(os.environ, JUDGE_CORE_CPU_MALLOC=setting)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", _CHILD, dtype, str(threads), str(rounds), json.dumps(LENGTHS)],
                         env=env, capture_output=True, text=True, check=True, cwd=root)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.cpu_malloc_ab", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args(argv)
    print(f"{sum(LENGTHS):,} tokens in {len(LENGTHS)} prompts, {args.dtype}, {args.threads} threads, "
          f"fastest of {args.rounds} forwards")
    for setting in ("system", "keep", "system", "keep"):   # alternated: a noisy minute hits both
        r = run(setting, args.dtype, args.threads, args.rounds)
        print(f"JUDGE_CORE_CPU_MALLOC={setting:6s}: {r['tokens_per_s']:,.0f} tok/s, {r['faults_per_forward']:,} "
              f"page faults per forward (median), peak RSS {r['peak_rss_mib']:,} MiB", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
