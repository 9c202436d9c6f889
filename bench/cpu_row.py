"""The CPU row: Qwen3.5 at the 4B's per-head sizes and tiny width, 64 pairs of real length, on this CPU.

The model is built by judge_core's own builder (`judge_core.embedded.build_checkpoint`) with the tiny
judge's widths and head counts but the 4B's per-head sizes (attention head_dim 256, Gated DeltaNet
key/value head dim 128): the ops whose cost depends on head size (the gated delta rule, attention)
run at the real judge's shapes while the matmuls stay small enough for a CPU. This is the shape issue 22
compares against vLLM's CPU build (20.7k / 16.8k prompt tokens/s on 2 cores, bf16).

Each system scores the same pairs (both passes of each) and reports prompt tokens/s; judge_core's
packed backend also reports where its forward time goes (gated delta rule, attention, matmuls, other),
from timers around the KernelSet's ops and forward hooks on every projection.

    python -m bench.cpu_row --threads 1,2                  # or: python -m bench --cpu-row
    python -m bench.cpu_row --n-pairs 8 --systems packed-bf16,packed-fp32
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from .systems import SystemSpec, build_system, run_system
from .workloads import card_pairs, read_items, synthetic_pairs

# The builder's overrides: the 4B's per-head sizes on the tiny judge (hidden 64, 4 layers, 3 of them
# Gated DeltaNet; 4 attention heads over 2 kv heads; 2 GDN key heads serving 4 value heads).
HEAD_SIZES_4B = dict(head_dim=256, linear_key_head_dim=128, linear_value_head_dim=128)
# ../shared/data next to the checkout (a worktree may sit one level deeper): the first that exists.
_ROOT = Path(__file__).resolve().parent.parent
_ITEMS_CANDIDATES = [base / "shared" / "data" / "creative_writing_items.dev.jsonl.gz"
                     for base in (_ROOT.parent, _ROOT.parent.parent)]
DEFAULT_ITEMS = next((p for p in _ITEMS_CANDIDATES if p.exists()), _ITEMS_CANDIDATES[0])
SYSTEMS = ("packed-bf16", "packed-fp32", "hf-bf16", "hf-fp32", "plain-bf16", "plain-fp32")
TARGETS = {"packed-bf16": 20_000, "packed-fp32": 10_000}   # issue 22, 2 threads
SPLIT_CATEGORIES = ("gated_delta", "attention", "matmuls", "other")


def head_sizes_checkpoint(work_dir: str | Path, seed: int = 0) -> Path:
    """The CPU row's checkpoint (built once into work_dir, with the real Qwen3.5 tokenizer)."""
    from judge_core.embedded import build_checkpoint

    out = Path(work_dir) / f"tiny-qwen3_5-4b-head-sizes-seed{seed}"
    if not (out / "config.json").exists():
        build_checkpoint(out, "text", seed=seed, **HEAD_SIZES_4B)
    return out


def row_pairs(items: str | None, n_pairs: int, seed: int, tokenizer, max_chars: int | None = None) -> tuple[list, str]:
    """n_pairs card-filtered pairs from the items file when it exists, else synthetic pairs with the
    dev data's token lengths; responses cut to max_chars characters when given."""
    cut = f", responses cut to {max_chars} chars" if max_chars else ""
    if items and Path(items).exists():
        return (card_pairs(read_items(items), n_pairs, seed=seed, max_chars=max_chars),
                f"card pairs from {Path(items).name} (seed {seed}{cut})")
    return (synthetic_pairs(n_pairs, seed=seed, tokenizer=tokenizer, max_chars=max_chars),
            f"synthetic pairs with dev-data token lengths (seed {seed}{cut}; {items or 'no items file'} absent)")


class _Timers:
    """Wall time per category, summed over forwards (the CPU runs ops synchronously)."""

    def __init__(self):
        self.seconds = dict.fromkeys(SPLIT_CATEGORIES, 0.0)
        self._start: dict[int, float] = {}

    def timed(self, category: str, fn, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self.seconds[category] += time.perf_counter() - t0

    def hook(self, module: torch.nn.Module) -> None:
        def pre(mod, args):
            self._start[id(mod)] = time.perf_counter()

        def post(mod, args, out):
            self.seconds["matmuls"] += time.perf_counter() - self._start.pop(id(mod))

        module.register_forward_pre_hook(pre)
        module.register_forward_hook(post)


class _TimedKernels:
    """The model's KernelSet with timers around its token mixers; everything else passes through."""

    def __init__(self, kernels, timers: _Timers):
        self._kernels, self._timers = kernels, timers

    def __getattr__(self, name):
        return getattr(self._kernels, name)

    def gated_delta_op(self, *args, **kwargs):
        return self._timers.timed("gated_delta", self._kernels.gated_delta_op, *args, **kwargs)

    def attention_op(self, *args, **kwargs):
        return self._timers.timed("attention", self._kernels.attention_op, *args, **kwargs)

    def prefix_attention_op(self, *args, **kwargs):   # a forked batch (shared prefixes, on by default)
        return self._timers.timed("attention", self._kernels.prefix_attention_op, *args, **kwargs)


def op_split(judge, pairs) -> dict:
    """Seconds per category of the packed forward over `pairs` (one extra, instrumented run)."""
    from judge_core.models.linear import FusedLinear

    model = judge.backend.model
    timers = _Timers()
    for module in model.modules():
        if isinstance(module, (torch.nn.Linear, FusedLinear)):
            timers.hook(module)
    real = model.kernels_for_weights()
    model.kernels = _TimedKernels(real, timers)
    try:
        cpu0 = time.process_time()
        judge.compare_many([p.as_tuple() for p in pairs])
        cpu_seconds = time.process_time() - cpu0
        forward = judge.last_run_stats.get("seconds")
    finally:
        model.kernels = real
        for module in model.modules():   # drop the hooks
            module._forward_pre_hooks.clear()
            module._forward_hooks.clear()
    total = forward if forward is not None else sum(timers.seconds.values())
    timers.seconds["other"] = max(0.0, total - sum(timers.seconds[c] for c in SPLIT_CATEGORIES[:3]))
    # On a shared machine wall time includes waiting for a core; the process's CPU time does not, so
    # tokens per CPU-second at 1 thread approximates the quiet-machine rate (cache contention aside).
    return {"forward_seconds": round(total, 3), "cpu_seconds": round(cpu_seconds, 3),
            **{c: round(s, 3) for c, s in timers.seconds.items()},
            "kernels": real.describe()}


def _spec(name: str, path: str, token_budget: int) -> SystemSpec:
    kind, dtype = name.split("-")
    if kind == "plain":
        return SystemSpec(name, "plain", path, dtype=dtype, options={"rows_per_batch": 8})
    return SystemSpec(name, "judge_core", path, dtype=dtype, backend=kind, options={"token_budget": token_budget})


def run_row(*, systems=SYSTEMS, threads=(1, 2), n_pairs: int = 64, items: str | None = str(DEFAULT_ITEMS),
            seed: int = 42, token_budget: int = 32768, work_dir: str = "/tmp/judge_core_bench",
            repeats: int = 1, split: bool = True, max_chars: int | None = None) -> dict:
    """Every system at every thread count on one workload; returns rows plus the machine and workload."""
    from transformers import AutoTokenizer

    from .suite import _git_commit, machine_description

    path = str(head_sizes_checkpoint(work_dir))
    tokenizer = AutoTokenizer.from_pretrained(path)
    pairs, workload = row_pairs(items, n_pairs, seed, tokenizer, max_chars)
    device = torch.device("cpu")
    rows, previous = [], torch.get_num_threads()
    try:
        for n_threads in threads:
            torch.set_num_threads(n_threads)
            for name in systems:
                spec = _spec(name, path, token_budget)
                cache: dict = {}
                run = run_system(spec, pairs, device, repeats=repeats, cache=cache)
                row = {"system": name, "threads": n_threads, "status": run.status, "reason": run.reason}
                if run.ok:
                    tokens = run.stats["real_tokens"]
                    row.update(prompts=run.stats["prompts"], tokens=tokens, seconds=round(run.seconds, 2),
                               tokens_per_s=round(tokens / run.seconds),
                               forward_seconds=run.stats.get("forward_seconds"))
                    if split and spec.kind == "judge_core" and spec.backend == "packed":
                        row["split"] = op_split(build_system(spec, device, cache), pairs)
                        row["tokens_per_cpu_s"] = round(tokens / row["split"]["cpu_seconds"])
                rows.append(row)
                print(json.dumps(row), flush=True)
                cache.clear()
    finally:
        torch.set_num_threads(previous)
    load = os.getloadavg()
    return {"rows": rows, "workload": workload, "pairs": len(pairs), "checkpoint": path,
            "config": dict(HEAD_SIZES_4B, hidden_size=64, num_hidden_layers=4), "commit": _git_commit(),
            "machine": machine_description(device), "load_average_after": [round(x, 1) for x in load],
            "targets_2_threads": TARGETS}


def markdown(result: dict) -> str:
    lines = ["| system | threads | prompt tokens/s | tokens/CPU-s | seconds | GDN s | attention s | matmuls s | other s |",
             "|---|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for r in result["rows"]:
        if r["status"] != "ok":
            lines.append(f"| {r['system']} | {r['threads']} | {r['status']}: {r['reason'][:60]} | | | | | | |")
            continue
        s = r.get("split") or {}
        cells = [f"{s[c]:.2f}" if c in s else "" for c in SPLIT_CATEGORIES]
        per_cpu = f"{r['tokens_per_cpu_s']:,}" if "tokens_per_cpu_s" in r else ""
        lines.append(f"| {r['system']} | {r['threads']} | {r['tokens_per_s']:,} | {per_cpu} | {r['seconds']} | "
                     + " | ".join(cells)
                     + " |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.cpu_row", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma list of {','.join(SYSTEMS)}")
    p.add_argument("--threads", default="1,2", help="torch intra-op thread counts to run, e.g. 1,2")
    p.add_argument("--n-pairs", type=int, default=64)
    p.add_argument("--items", default=str(DEFAULT_ITEMS), help="items .jsonl(.gz); synthetic pairs if absent")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--max-chars", type=int, default=None,
                   help="cut each response to this many characters (2600 gives ~235k tokens over 64 pairs: the "
                        "size of issue 22's vLLM workload, whose prompts average 1.8k tokens against 3.9k uncut)")
    p.add_argument("--token-budget", type=int, default=32768)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--no-split", action="store_true", help="skip the per-op split of the packed backend")
    p.add_argument("--work-dir", default="/tmp/judge_core_bench")
    p.add_argument("--out", default=None, help="write the result JSON here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    systems = tuple(s.strip() for s in args.systems.split(",") if s.strip())
    bad = [s for s in systems if s not in SYSTEMS]
    if bad:
        raise SystemExit(f"unknown systems {bad}: expected some of {SYSTEMS}")
    threads = tuple(int(t) for t in args.threads.split(",") if t.strip())
    result = run_row(systems=systems, threads=threads, n_pairs=args.n_pairs, items=args.items, seed=args.seed,
                     token_budget=args.token_budget, work_dir=args.work_dir, repeats=args.repeats,
                     split=not args.no_split, max_chars=args.max_chars)
    print(markdown(result))
    print(f"workload: {result['workload']}, {result['pairs']} pairs; commit {result['commit']}; "
          f"load average after {result['load_average_after']}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
