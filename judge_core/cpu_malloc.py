"""Keep the CPU forward's freed activations for reuse instead of handing them back to the kernel.

glibc serves every allocation above its mmap threshold (at most 32 MiB) with a fresh `mmap` and
`munmap`s it on free. A CPU forward allocates and frees dozens of activations of [tokens, 1024] floats
(64 MiB at 16k tokens) per layer, so every elementwise op first page-faults its whole output in: measured
on the 2-core dev machine (bench/RESULTS.md, issue 22), `x * w` on a [15700, 1024] float32 tensor took
50 ms with a fresh output and 7 ms into reused memory; a whole forward of 15,700 tokens went from ~100k
page faults to none and ran 7-12% faster at 1 thread (`python -m bench.cpu_malloc_ab`). vLLM's CPU build
gets the same effect by preloading tcmalloc.

`keep_freed_memory()` sets glibc's malloc (process-wide, once) to serve large blocks from its heap
(M_MMAP_MAX = 0) and not to trim the heap's free top below 1 GiB (M_TRIM_THRESHOLD), so a freed block
is reused by the next allocation of its size. The cost: the process keeps its peak heap (it does not
shrink after a big batch), ~11% above system malloc's peak with batches of varied sizes (RESULTS). `JUDGE_CORE_CPU_MALLOC=system` leaves malloc as it is. Anything but Linux
with glibc (musl, macOS, Windows) is left alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
import platform

log = logging.getLogger(__name__)

ENV = "JUDGE_CORE_CPU_MALLOC"
CHOICES = ("keep", "system")
# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
TRIM_THRESHOLD_BYTES = 1 << 30


def malloc_choice(env=None) -> str:
    """The JUDGE_CORE_CPU_MALLOC setting: "keep" (default) or "system"; a bad value raises naming it."""
    value = ((os.environ if env is None else env).get(ENV) or "keep").strip()
    if value not in CHOICES:
        raise ValueError(f"{ENV}={value!r}: expected one of {CHOICES}")
    return value


def _glibc():
    """glibc's handle, or None on another C library or OS."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


@functools.cache
def _apply() -> bool:
    libc = _glibc()
    if libc is None or not hasattr(libc, "mallopt"):
        log.info("CPU malloc left as it is: not glibc")
        return False
    ok = bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
    if ok:
        log.info("glibc malloc keeps freed blocks for reuse (M_MMAP_MAX=0, M_TRIM_THRESHOLD=1 GiB; %s=system "
                 "to leave it)", ENV)
    else:
        log.warning("glibc mallopt refused the settings: CPU activations are page-faulted in afresh (slower)")
    return ok


def keep_freed_memory(env=None) -> bool:
    """Apply the setting unless JUDGE_CORE_CPU_MALLOC=system; True when glibc now keeps freed blocks."""
    if malloc_choice(env) == "system":
        return False
    return _apply()
