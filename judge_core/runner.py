"""Batches -> backend -> candidate logits, with out-of-memory split-and-retry.

The planner sizes batches from a token budget; the budget is a guess about memory. When a batch
still runs out of memory, it is halved and each half retried, down to single prompts; a single
prompt that does not fit becomes an error for its pair alone.
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import torch

from .plan import batch_cost


def is_oom(error: BaseException) -> bool:
    oom_type = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom_type is not None and isinstance(error, oom_type):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def _release_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def run_batches(backend, sequences: Sequence[Sequence[int]], batches: Sequence[Sequence[int]],
                on_batch: Callable[[list[int], torch.Tensor, dict], None] | None = None):
    """Run every planned batch; returns (logits [N, C] float32 with NaN rows for failures, errors dict, stats).

    errors maps a sequence index to a message. `on_batch(indices, logits, errors)` is called after each
    finished batch, with the logits and errors of all sequences so far (rows of `indices` are final).
    """
    n_cand = None
    out: torch.Tensor | None = None
    errors: dict[int, str] = {}
    stats = {"batches": 0, "oom_splits": 0, "computed_tokens": 0, "seconds": 0.0}
    t0 = time.perf_counter()

    def run(indices: list[int]) -> None:
        nonlocal out, n_cand
        try:
            logits = backend.candidate_logits([sequences[i] for i in indices])
        except Exception as e:  # noqa: BLE001 - only OOM is handled; anything else is a bug and propagates
            if not is_oom(e):
                raise
            _release_memory(backend.device)
            if len(indices) == 1:
                errors[indices[0]] = f"out of memory on a single prompt of {len(sequences[indices[0]])} tokens"
                return
            stats["oom_splits"] += 1
            half = len(indices) // 2
            run(indices[:half])
            run(indices[half:])
            return
        if out is None:
            n_cand = logits.shape[1]
            out = torch.full((len(sequences), n_cand), float("nan"))
        out[torch.as_tensor(indices)] = logits.float()
        stats["batches"] += 1
        stats["computed_tokens"] += batch_cost([len(sequences[i]) for i in indices], backend.counts_padding)

    for batch in batches:
        run(list(batch))
        if on_batch is not None:
            if out is None:  # every prompt so far failed alone: no logits yet
                out = torch.full((len(sequences), 2), float("nan"))
            on_batch(list(batch), out, errors)
    stats["seconds"] = time.perf_counter() - t0
    if out is None:
        out = torch.full((len(sequences), 2), float("nan"))
    return out, errors, stats
