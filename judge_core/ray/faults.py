"""What a replica does when its process cannot go on: exit, so that Ray restarts it and retries the batch.

A CUDA error that is not an out-of-memory (an illegal address, a device-side assert, a lost device)
leaves the CUDA context unusable: every later call in this process fails too. Raising it into Ray
would fail the batch on an actor that stays broken; exiting the process instead makes Ray restart the
actor (a fresh context, the model loaded again) and retry the batch on it, as vLLM's Ray stage does.
Out-of-memory is not fatal: the runner already splits the batch and retries (judge_core/runner.py).
"""

from __future__ import annotations

import os
import sys

# Exit status of a replica that gave up its process after a fatal device error (distinct from a crash).
EXIT_FATAL_DEVICE = 75
# Test hooks, forwarded to the replicas of a job (dataset.py). CRASH_ONCE: a path; the first replica call
# that finds no file there creates it and hard-exits, once. BATCH_SECONDS: each call sleeps that long
# first, so that a test can stop a run half-way without racing it.
CRASH_ONCE_ENV = "JUDGE_CORE_RAY_TEST_CRASH_ONCE"
BATCH_SECONDS_ENV = "JUDGE_CORE_RAY_TEST_BATCH_SECONDS"
TEST_HOOKS = (CRASH_ONCE_ENV, BATCH_SECONDS_ENV)

_FATAL_MARKERS = ("cuda error", "illegal memory access", "device-side assert", "cudnn_status", "cublas_status",
                  "an illegal instruction", "unspecified launch failure", "cuda driver", "nccl error",
                  "uncorrectable ecc", "device not ready", "misaligned address")


def is_fatal_device_error(error: BaseException) -> bool:
    """True for an error after which this process's CUDA context cannot be trusted (not an OOM)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    if isinstance(error, torch.OutOfMemoryError):
        return False
    accelerator_error = getattr(torch, "AcceleratorError", None)  # torch >= 2.8 raises it for CUDA errors
    if accelerator_error is not None and isinstance(error, accelerator_error):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and any(marker in text for marker in _FATAL_MARKERS)


def exit_for_restart(error: BaseException) -> None:
    """Leave the process at once (no cleanup that could touch the broken device): Ray restarts the actor."""
    print(f"judge_core replica (pid {os.getpid()}): fatal device error, exiting so that Ray restarts this "
          f"replica and retries its batch: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
    os._exit(EXIT_FATAL_DEVICE)


def run_test_hooks() -> None:
    """The tests' hooks, run at the start of each replica call (nothing unless their variables are set)."""
    delay = os.environ.get(BATCH_SECONDS_ENV)
    if delay:
        import time

        time.sleep(float(delay))
    maybe_crash_for_test()


def maybe_crash_for_test() -> None:
    """The fault-injection hook of the tests: hard-exit once per marker path (O_EXCL: one process wins)."""
    marker = os.environ.get(CRASH_ONCE_ENV)
    if not marker:
        return
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return
    os.write(fd, f"{os.getpid()}\n".encode())
    os.close(fd)
    os._exit(1)
