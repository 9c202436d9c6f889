"""No cold start: persistent kernel caches, and one warm-up over every batch shape the planner can make.

Why (MEASURED.md, "Cold start"): the first call in a fresh process on an H100 spent ~85 s of 98.6 s
in Triton autotuning (fla's chunk kernels tune once per process, 1-15 s each; fla's l2norm re-tunes
~11 s for every new value of ceil(tokens x heads / 65536)), and a new set of pairs in a warm process
paid it again for each new shape bucket. Two levers, both here:

1. `configure_kernel_caches()`: Triton keeps autotune *choices* on disk only when
   TRITON_CACHE_AUTOTUNING=1 (off by default), and fla caches its own (`FLA_CACHE_RESULTS`, on by
   default) under TRITON_CACHE_DIR. We switch both on and put TRITON_CACHE_DIR under the judge_core
   cache ($JUDGE_CORE_CACHE/triton, ~/.cache/judge_core/triton) unless the user already chose one,
   so a second process on the same machine re-uses every tuned choice. Both flags are read when an
   autotuned kernel is *decorated* (fla reads FLA_CACHE_RESULTS at import, Triton's Autotuner reads
   TRITON_CACHE_AUTOTUNING in its constructor), so this must run before fla or our Triton kernel
   modules are imported: the backends call it first thing at load.
2. `warmup(backend, token_budget, max_context)`: run packs whose shapes cover the autotune keys the
   planner can hit at this budget (a full-budget pack, a ladder of pack sizes across every
   2048-token bucket, many short prompts, one long prompt), once at load, so no tuning happens while
   scoring. `judge-core warmup MODEL` does this once per machine to fill the on-disk cache.

Nothing here changes a result: warm-up outputs are discarded, and kernels choose among configs that
compute the same thing (tests/test_warmup.py checks logits before and after are identical).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

# fla's l2norm keys its tuning on NB = ceil(tokens x heads / 65536); with 32 heads a bucket is 2048
# tokens wide (4096 with 16). A ladder of pack sizes in 2048-token steps hits every bucket up to the
# budget. Other keys (chunk counts, prompt counts) are covered by the pack mixes below.
LADDER_STEP_TOKENS = 2048
# Judge prompts are ~2-8k tokens (DESIGN §7): the ladder's packs are made of prompts this long.
TYPICAL_PROMPT_TOKENS = 4096
SHORT_PROMPT_TOKENS = 256
WARMUP_TOKEN_ID = 220  # any valid id; the values never matter, only the shapes

_configured: dict[str, str] | None = None


def kernel_cache_dir() -> Path:
    """Where Triton (and fla) keep compiled kernels and autotune choices for judge_core."""
    from .embedded.tokenizer import cache_dir

    return cache_dir() / "triton"


def configure_kernel_caches() -> dict[str, str]:
    """Switch on persistent autotune caches; returns the variables as they now stand. Idempotent.

    Sets (only where not already set by the user): TRITON_CACHE_DIR = kernel_cache_dir(),
    TRITON_CACHE_AUTOTUNING = 1, FLA_CACHE_RESULTS = 1. Call before importing fla or any module that
    defines a `triton.autotune` kernel (see the module doc for why).
    """
    global _configured
    if _configured is None:
        os.environ.setdefault("TRITON_CACHE_DIR", str(kernel_cache_dir()))
        os.environ.setdefault("TRITON_CACHE_AUTOTUNING", "1")
        os.environ.setdefault("FLA_CACHE_RESULTS", "1")
        try:
            Path(os.environ["TRITON_CACHE_DIR"]).mkdir(parents=True, exist_ok=True)
        except OSError:
            pass  # Triton creates it itself, or reports the real problem when it writes
        _configured = {k: os.environ[k] for k in ("TRITON_CACHE_DIR", "TRITON_CACHE_AUTOTUNING", "FLA_CACHE_RESULTS")}
    return dict(_configured)


def _split(total: int, prompt_tokens: int) -> list[int]:
    """`total` tokens as prompts of `prompt_tokens` (the last one shorter)."""
    full, rest = divmod(total, prompt_tokens)
    return [prompt_tokens] * full + ([rest] if rest else [])


def warmup_shapes(token_budget: int, max_context: int, *, counts_padding: bool = False) -> list[list[int]]:
    """Prompt lengths of each warm-up pack: shapes covering what the planner makes at this budget.

    counts_padding (the hf backend): a batch costs rows x longest, so packs are rows of equal length.
    """
    if token_budget < 1 or max_context < 1:
        raise ValueError(f"token_budget and max_context must be positive, got {token_budget} and {max_context}")
    longest = min(max_context, token_budget)
    typical = min(TYPICAL_PROMPT_TOKENS, longest)
    short = min(SHORT_PROMPT_TOKENS, longest)
    shapes: list[list[int]] = []
    if counts_padding:
        # Padded batches: the shape is (rows, width); cover the widths judge prompts take at full rows.
        for width in sorted({short, typical, longest}):
            shapes.append([width] * max(1, token_budget // width))
        return shapes
    shapes.append(_split(token_budget, typical))                 # the maximum-size pack
    shapes.append([longest])                                     # one prompt as long as allowed
    shapes.append(_split(token_budget, short))                   # many short prompts
    step = min(LADDER_STEP_TOKENS, token_budget)
    for total in range(step, token_budget, step):                # every size bucket below the full pack
        shapes.append(_split(total, typical))
    return shapes


def warmup(backend, token_budget: int, max_context: int | None = None, *, progress: bool = False) -> dict:
    """Run the warm-up packs through `backend.candidate_logits`; outputs are discarded.

    Returns {"packs", "tokens", "seconds"}. Call once after load (the Judge does, unless told not to)
    or via `judge-core warmup MODEL` to fill the on-disk cache for later processes.
    """
    import torch

    max_context = int(max_context or backend.max_context)
    padded = bool(getattr(backend, "counts_padding", False))
    shapes = warmup_shapes(int(token_budget), max_context, counts_padding=padded)
    t0 = time.perf_counter()
    it = shapes
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(shapes, desc="warm-up", unit="pack")
    tokens = 0
    for lengths in it:
        backend.candidate_logits([[WARMUP_TOKEN_ID] * n for n in lengths])
        tokens += sum(lengths)
    device = getattr(backend, "device", None)
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
    return {"packs": len(shapes), "tokens": tokens, "seconds": time.perf_counter() - t0}


def maybe_warmup(backend, token_budget: int, max_context: int | None = None, *, enabled: bool | None = None,
                 progress: bool = False) -> dict | None:
    """The load-time warm-up: on by default on CUDA (kernels tune there), off on the CPU (nothing tunes).

    enabled: True / False force it; None = CUDA only. JUDGE_CORE_NO_WARMUP=1 turns the default off.
    """
    import torch

    if enabled is None:
        device = torch.device(getattr(backend, "device", "cpu"))
        enabled = device.type == "cuda" and os.environ.get("JUDGE_CORE_NO_WARMUP", "") not in ("1", "true", "yes")
    if not enabled:
        return None
    return warmup(backend, token_budget, max_context, progress=progress)
