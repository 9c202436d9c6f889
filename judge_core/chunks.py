"""Pairs -> prepared chunks: which pairs are tokenized and planned together, and the tokenizing of chunk
k+1 on a host thread while the device runs chunk k.

Why: tokenizing is the host's biggest job. The Rust tokenizer does ~0.5 M judge-prompt tokens/s on
two CPU cores (64 dev-data pairs, 498k tokens: 0.8-1.3 s), so a 4096-pair chunk (~30 M tokens) is
tens of seconds in which a GPU at 80k tokens/s would wait. Two levers, both here:
- chunk sizes ramp up (FIRST_CHUNK_PAIRS, doubling to CHUNK_PAIRS), so the device starts after a
  small first chunk instead of after the whole first 4096 pairs;
- with `prefetch`, the next chunk is prepared (rendered, tokenized, checked) on a daemon thread while
  the caller runs the current one (the runner streams every chunk's batches through one pipeline, so
  the device also runs across a chunk boundary): the tokenizer releases the GIL for its Rust work, and torch
  releases it inside its ops, so the two overlap.
Items are taken lazily (ramp_chunks), so the command line streams a file of any size through one
call: one ramp and one prefetch for the whole run, not one per 4,096 rows.
The boundaries depend only on the number of pairs, so prefetching changes no number: the same chunks,
the same batches, the same results as preparing each chunk in turn.
"""

from __future__ import annotations

import threading
from itertools import islice
from typing import Any, Iterable, Iterator, Sequence

from .prepare import PreparedPairs, prepare_pairs

# The first chunk: small enough to tokenize in well under a second, big enough (128 prompts of ~3.9k
# tokens: ~15 batches at the 32k budget) that its one partly filled last batch costs little.
FIRST_CHUNK_PAIRS = 64
# The largest chunk: bounds host memory on huge inputs while leaving the length sort enough prompts to
# make batches with little padding.
CHUNK_PAIRS = 4096


def chunk_bounds(n_pairs: int) -> list[tuple[int, int]]:
    """[(start, end)] covering range(n_pairs) in order: FIRST_CHUNK_PAIRS, then doubling to CHUNK_PAIRS."""
    bounds, start, size = [], 0, FIRST_CHUNK_PAIRS
    while start < n_pairs:
        end = min(n_pairs, start + size)
        bounds.append((start, end))
        start, size = end, min(2 * size, CHUNK_PAIRS)
    return bounds


class _Ahead:
    """prepare_pairs running on a daemon thread (a daemon, so Ctrl-C never waits for a tokenizer)."""

    def __init__(self, judge, pairs: Sequence[Any]):
        self._result: PreparedPairs | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(judge, pairs), name="judge-core-prepare",
                                        daemon=True)
        self._thread.start()

    def _run(self, judge, pairs) -> None:
        try:
            self._result = prepare_pairs(judge, pairs)
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread by result()
            self._error = e

    def result(self) -> PreparedPairs:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result


def ramp_chunks(items: Iterable[Any]) -> Iterator[list]:
    """Consecutive items in lists of chunk_bounds' sizes (FIRST_CHUNK_PAIRS, doubling to CHUNK_PAIRS), taken
    from the iterable only as each list is asked for: a generator over a huge file is never read whole."""
    it, size = iter(items), FIRST_CHUNK_PAIRS
    while chunk := list(islice(it, size)):
        yield chunk
        size = min(2 * size, CHUNK_PAIRS)


def prepared_chunks(judge, items: Iterable[Any], *, prefetch: bool) -> Iterator[tuple[int, PreparedPairs]]:
    """(start, prepared chunk) for ramp_chunks(items), in order; with `prefetch`, chunk k+1 is being
    prepared on a host thread while the caller works on chunk k. Items are always taken from `items` on
    the caller's thread (a caller's generator may write as it yields), only the tokenizing moves."""
    chunks, start = ramp_chunks(items), 0
    if not prefetch:
        for chunk in chunks:
            yield start, prepare_pairs(judge, chunk)
            start += len(chunk)
        return
    first = next(chunks, None)
    if first is None:
        return
    ahead, size = _Ahead(judge, first), len(first)
    for chunk in chunks:  # read the next chunk's items while `ahead` tokenizes this one
        prepared = ahead.result()
        ahead = _Ahead(judge, chunk)
        yield start, prepared
        start, size = start + size, len(chunk)
    yield start, ahead.result()
