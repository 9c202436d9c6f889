"""FP8 against the same judge unquantized, in one call (for bench/gpu_run.py and notebooks).

    from bench.fp8 import fp8_comparison
    out = fp8_comparison(path, pairs, "cuda", backend="packed", dtype="bf16", twin_pairs=4)

Runs the judge at `path` unquantized, with quantization="fp8" (the device's fast path), and, on the
first `twin_pairs` pairs, with fp8_compute="twin" (the CPU-exact rounding run on this device) to hold
the fast path against its twin. Returns the drift of fp8 against the unquantized judge (max/mean |dp1|,
verdict agreement: judge_core.fp8.drift.compare_scores), the fast-vs-twin parity, and each run's
prompt tokens/s and load time. Never raises for a system that cannot run: its row says why.
"""

from __future__ import annotations

from typing import Sequence

import torch

from judge_core.fp8.drift import compare_scores

from .systems import SystemRun, SystemSpec, run_system
from .workloads import BenchPair


def _row(run: SystemRun) -> dict:
    row = {"name": run.spec.name, "status": run.status, "reason": run.reason, "pairs": len(run.scores),
           "load_seconds": run.load_seconds, "seconds": run.seconds}
    if run.ok:
        row["prompt_tokens_per_s"] = run.stats.get("real_tokens", 0) / run.seconds if run.seconds else None
        row["peak_gpu_bytes"] = run.peak_gpu_bytes
    return row


def fp8_comparison(path: str, pairs: Sequence[BenchPair], device: str | torch.device, *, backend: str = "packed",
                   dtype: str = "bf16", token_budget: int = 32768, twin_pairs: int = 4, repeats: int = 1,
                   progress: bool = False) -> dict:
    """{"runs": [...], "drift": fp8 vs unquantized, "twin_parity": fast fp8 vs twin fp8 (first twin_pairs)}."""
    base = {"token_budget": token_budget}
    specs = {"base": SystemSpec(f"judge_core {backend} {dtype}", "judge_core", path, dtype, backend, options=base),
             "fp8": SystemSpec(f"judge_core {backend} {dtype} fp8", "judge_core", path, dtype, backend,
                               options={**base, "quantization": "fp8"}),
             "twin": SystemSpec(f"judge_core {backend} {dtype} fp8 twin", "judge_core", path, dtype, backend,
                                options={**base, "quantization": "fp8", "fp8_compute": "twin"})}
    runs = {}
    for key, spec in specs.items():
        if key == "twin" and not twin_pairs:
            continue
        subset = pairs[:twin_pairs] if key == "twin" else pairs
        runs[key] = run_system(spec, subset, device, repeats=1 if key == "twin" else repeats, progress=progress)
    out = {"runs": [_row(r) for r in runs.values()], "drift": None, "twin_parity": None, "speedup": None}
    if runs["base"].ok and runs["fp8"].ok:
        out["drift"] = compare_scores(runs["base"].scores, runs["fp8"].scores)
        out["speedup"] = runs["base"].seconds / runs["fp8"].seconds if runs["fp8"].seconds else None
    if "twin" in runs and runs["twin"].ok and runs["fp8"].ok:
        k = len(runs["twin"].scores)
        out["twin_parity"] = compare_scores(runs["twin"].scores, runs["fp8"].scores[:k])
    return out
