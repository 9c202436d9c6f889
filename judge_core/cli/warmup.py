"""`judge-core warmup MODEL`: tune every kernel for this machine once and keep the choices on disk.

Runs the load-time warm-up (judge_core/warmup.py) with the persistent Triton / fla autotune caches
switched on, so that later processes on this machine start with tuned kernels (MEASURED.md: ~85 s
of autotuning in the first call of a fresh process otherwise). On the CPU nothing is tuned; the
command then only checks that the model loads and runs.
"""

from __future__ import annotations

HELP = "fill the on-disk kernel autotune cache for MODEL on this machine (run once per machine)"


def add_arguments(parser) -> None:
    from .model_arg import add_judge_arguments

    add_judge_arguments(parser)


def run(args) -> int:
    from ..warmup import configure_kernel_caches, warmup
    from ..wording import plural

    caches = configure_kernel_caches()  # before the backend imports any Triton kernel
    from .model_arg import judge_from_args

    judge = judge_from_args(args, warmup=False)  # warmed up below, with a progress bar
    stats = warmup(judge.backend, judge.token_budget, judge.max_context, progress=True)
    print(f"warmed up {judge.backend.name} on {judge.backend.device} at a {judge.token_budget}-token budget: "
          f"{plural(stats['packs'], 'pack')}, {stats['tokens']:,} tokens in {stats['seconds']:.1f} s; "
          f"kernel cache: {caches['TRITON_CACHE_DIR']}")
    return 0
