"""Run one call per item on its own thread, all at once (as RL workers send samples); results in order."""

from __future__ import annotations

import threading


def concurrently(fn, items, timeout: float = 120.0) -> list:
    out: list = [None] * len(items)

    def run(k):
        out[k] = fn(items[k])

    threads = [threading.Thread(target=run, args=(k,)) for k in range(len(items))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    return out
