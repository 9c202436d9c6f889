"""How many CPU threads torch runs the model with: a number asked for, or no more than the free cores.

torch starts with one intra-op thread per core. On a shared machine that oversubscribes: issue 21
reports `score` 3x slower with torch's default than with one thread on a 2-core box shared with other
jobs (nearly all the time in `solve_triangular`, whose threads wait on each other). "auto" therefore caps
the count at the free cores: the CPUs this process may run on (sched_getaffinity) less the cores busy
right now (a 0.2 s sample of /proc/stat; the 1-minute load average where there is none), at least 1.
Only the CPU is touched: a model on a GPU leaves torch's setting alone.
"""

from __future__ import annotations

import os
import time

import torch

AUTO = "auto"


def busy_cores(sample_seconds: float = 0.2) -> float | None:
    """How many cores the machine's other work keeps busy right now: the busy share of all CPU time in
    /proc/stat over a short sample, times the CPU count (None where /proc/stat is absent).

    Sampled rather than read from the load average: the 1-minute load average still counts a run that
    has just finished (a second `score` started right after a first one saw load 2 on a quiet 2-core
    machine and ran on one thread, at half speed)."""
    def times():
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)          # idle + iowait
        return sum(fields[:8]), idle                                      # guest time is inside user
    try:
        total0, idle0 = times()
        time.sleep(sample_seconds)
        total1, idle1 = times()
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    return (1.0 - (idle1 - idle0) / (total1 - total0)) * (os.cpu_count() or 1)


def free_cores(cpus: int | None = None, load: float | None = None) -> int:
    """CPUs this process may use less the cores busy with other work (rounded), at least 1. load: the
    busy cores (default: sampled now, busy_cores(); the 1-minute load average where that is unavailable)."""
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if load is None:
        load = busy_cores()
    if load is None:
        try:
            load = os.getloadavg()[0]
        except OSError:  # not available on this platform
            load = 0.0
    return max(1, cpus - round(load))


def check_threads(threads) -> int | str | None:
    """None, "auto" or a positive int; raises ValueError naming the value otherwise."""
    if threads is None or threads == AUTO:
        return threads
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive int, 'auto' or None, got {threads!r}")
    return threads


def parse_threads(text: str) -> int | str:
    """A --threads value: "auto" or a positive integer."""
    if text == AUTO:
        return AUTO
    try:
        return check_threads(int(text))
    except ValueError:
        raise ValueError("expected a positive integer or 'auto'") from None


def auto_threads() -> int:
    """torch's current count, capped at the free cores; an OMP_NUM_THREADS the user set is kept as it is."""
    if os.environ.get("OMP_NUM_THREADS", "").strip():
        return torch.get_num_threads()
    return max(1, min(torch.get_num_threads(), free_cores()))


def configure_threads(threads: int | str | None, device: torch.device | str) -> int | None:
    """torch.set_num_threads for a model on `device`. threads: a number, "auto" or None (leave torch's
    setting). Returns the count in effect on the CPU; None on another device, where nothing changes.

    OpenMP keeps the count per thread: call this on the thread that runs the model (the scoring
    service's scheduler does: it loads the judge on its worker thread)."""
    check_threads(threads)
    if torch.device(device).type != "cpu":
        return None
    if threads is not None:
        wanted = auto_threads() if threads == AUTO else threads
        if wanted != torch.get_num_threads():
            torch.set_num_threads(wanted)
    return torch.get_num_threads()
