"""An instant, deterministic stand-in for Judge in the score CLI's I/O tests: p from response lengths,
verdicts reported out of input order (as batches of a length-sorted plan would report them)."""

from __future__ import annotations

from itertools import islice

from judge_core.pairs import PairError, normalize_pair
from judge_core.scoring import PairScore, combine_passes

ORDERS = {
    "reversed": lambda n: range(n - 1, -1, -1),
    "evens_first": lambda n: [*range(0, n, 2), *range(1, n, 2)],
}


class LengthJudge:
    CHUNK = 64  # as judge_core.chunks.FIRST_CHUNK_PAIRS
    def __init__(self, order: str = "reversed"):
        self.order = ORDERS[order]
        self.judged: list = []

    def judge_stream(self, items, on_result, *, progress=False):
        """Judge.judge_stream's contract (the score CLI's call): items taken lazily, CHUNK at a time, each
        chunk reported out of order."""
        it, start = iter(items), 0
        while chunk := list(islice(it, self.CHUNK)):
            self.compare_many(chunk, on_result=lambda i, score, start=start: on_result(start + i, score))
            start += len(chunk)

    def compare_many(self, pairs, *, progress=False, on_result=None):
        self.judged += list(pairs)
        results = [None] * len(pairs)
        for i in self.order(len(pairs)):
            try:
                _, a, b = normalize_pair(pairs[i])
            except PairError as e:
                results[i] = PairScore.failed(str(e))
            else:
                results[i] = combine_passes((len(a) / 9, len(b) / 9), (len(b) / 9, len(a) / 9))
            if on_result is not None:
                on_result(i, results[i])
        return results
