"""Sweeps: throughput against the token budget (judge_core) and against prompt length (every system).

Each system is built once per sweep and reused across points, so a sweep costs only its forwards.
"""

from __future__ import annotations

import gc
import time
from typing import Sequence

import torch

from .systems import SystemSpec, build_system
from .workloads import BenchPair, synthetic_pairs


def _timed(system, tuples, device: torch.device, repeats: int = 1) -> tuple[list, float]:
    """Scores and the fastest of `repeats` timed runs."""
    best = float("inf")
    for _ in range(max(1, repeats)):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        scores = system.compare_many(tuples)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return scores, best


def _release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def token_budget_sweep(spec: SystemSpec, pairs: Sequence[BenchPair], budgets: Sequence[int],
                       device: str | torch.device, *, repeats: int = 1, progress: bool = False,
                       cache: dict | None = None) -> list[dict]:
    """judge_core tokens/s at each token budget on the same pairs (one Judge, budget changed in place)."""
    device = torch.device(device)
    tuples = [p.as_tuple() for p in pairs]
    try:
        judge = build_system(spec, device, cache)
    except Exception as e:
        return [{"system": spec.name, "status": "skipped", "reason": f"{type(e).__name__}: {e}"[:300]}]
    points = []
    original_budget = judge.token_budget
    judge.compare_many(tuples[:1])  # warm-up
    iterator = budgets
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(budgets, desc=f"budget sweep ({spec.name})", unit="budget")
    for budget in iterator:
        judge.token_budget = int(budget)
        try:
            _, seconds = _timed(judge, tuples, device, repeats)
        except Exception as e:
            points.append({"system": spec.name, "token_budget": int(budget), "status": "failed",
                           "reason": f"{type(e).__name__}: {e}"[:300]})
            continue
        finally:
            judge.token_budget = original_budget
        st = judge.last_run_stats
        points.append({"system": spec.name, "token_budget": int(budget), "status": "ok", "seconds": seconds,
                       "prompt_tokens_per_s": st["real_tokens"] / seconds, "pairs_per_s": len(tuples) / seconds,
                       "padding_efficiency": st["real_tokens"] / max(st["computed_tokens"], 1),
                       "batches": st["batches"], "oom_splits": st.get("oom_splits", 0)})
    del judge
    _release(device)
    return points


def prompt_length_sweep(specs: Sequence[SystemSpec], response_tokens: Sequence[int], n_pairs: int,
                        device: str | torch.device, *, tokenizer=None, seed: int = 42, repeats: int = 1,
                        progress: bool = False, cache: dict | None = None) -> list[dict]:
    """Every system's tokens/s on synthetic pairs whose responses have a fixed token length."""
    device = torch.device(device)
    workloads = {n: [p.as_tuple() for p in synthetic_pairs(n_pairs, seed=seed, tokenizer=tokenizer,
                                                            response_tokens=n)] for n in response_tokens}
    points = []
    for spec in specs:
        try:
            system = build_system(spec, device, cache)
        except Exception as e:
            points.append({"system": spec.name, "status": "skipped", "reason": f"{type(e).__name__}: {e}"[:300]})
            continue
        for n in response_tokens:  # warm-up at every length: shape-dependent kernel choices are not throughput
            system.compare_many(workloads[n][:1])
        iterator = response_tokens
        if progress:
            from tqdm.auto import tqdm

            iterator = tqdm(response_tokens, desc=f"length sweep ({spec.name})", unit="length")
        for n in iterator:
            try:
                scores, seconds = _timed(system, workloads[n], device, repeats)
            except Exception as e:
                points.append({"system": spec.name, "response_tokens": n, "status": "failed",
                               "reason": f"{type(e).__name__}: {e}"[:300]})
                continue
            lengths = [t for s in scores if s.ok for t in s.tokens]
            points.append({"system": spec.name, "response_tokens": n, "status": "ok", "seconds": seconds,
                           "mean_prompt_tokens": sum(lengths) / max(len(lengths), 1),
                           "prompt_tokens_per_s": sum(lengths) / seconds, "pairs_per_s": len(scores) / seconds})
        del system
        _release(device)
    return points
