"""Pairs -> prompt token ids (on a request thread, beside the model) and logits -> PairScores.

The same steps and messages as `Judge._score_chunk`, split around the scheduler: rejected pairs and
prompts over the model's context are answered here without reaching the model.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Sequence

from ..pairs import PairError, normalize_pair
from ..plan import dual_pass
from ..scoring import PairScore, combine_passes

# The fast tokenizer is a Rust object shared by every request thread; one call at a time keeps it
# safe (each call already runs a whole request's prompts in one batch).
TOKENIZER_LOCK = threading.Lock()


@dataclass
class PreparedPairs:
    """results[i]: set for pairs answered without the model; sequences: 2 per runnable pair (pass 1,
    pass 2), runnable[m] = index of the pair that sequences[2m], sequences[2m+1] belong to."""

    results: list[PairScore | None]
    sequences: list[list[int]] = field(default_factory=list)
    runnable: list[int] = field(default_factory=list)

    @property
    def prompt_tokens(self) -> int:
        return sum(len(s) for s in self.sequences)


def prepare_pairs(judge, pairs: Sequence[Any]) -> PreparedPairs:
    results: list[PairScore | None] = [None] * len(pairs)
    texts: list[str] = []
    owner: list[int] = []
    for i, raw in enumerate(pairs):
        try:
            pair = normalize_pair(raw)
        except PairError as e:
            results[i] = PairScore.failed(str(e))
            continue
        for shown in dual_pass(pair):
            texts.append(judge.prompt(*shown))
            owner.append(i)
    with TOKENIZER_LOCK:
        tokens = judge.tokenize(texts)
    prepared = PreparedPairs(results)
    for k in range(0, len(tokens), 2):
        i = owner[k]
        longest = max(len(tokens[k]), len(tokens[k + 1]))
        if longest > judge.max_context:
            results[i] = PairScore.failed(
                f"prompt of {longest} tokens exceeds the model's context of {judge.max_context} tokens",
                tokens=(len(tokens[k]), len(tokens[k + 1])))
            continue
        prepared.sequences += [tokens[k], tokens[k + 1]]
        prepared.runnable.append(i)
    return prepared


def finish_pairs(prepared: PreparedPairs, job) -> list[PairScore]:
    """Combine each runnable pair's two passes from the finished job; results in input order."""
    results = list(prepared.results)
    for m, i in enumerate(prepared.runnable):
        k = 2 * m
        tokens = (len(prepared.sequences[k]), len(prepared.sequences[k + 1]))
        failure = job.errors.get(k) or job.errors.get(k + 1)
        if failure:
            results[i] = PairScore.failed(failure, tokens=tokens)
        else:
            results[i] = combine_passes(job.logits[k], job.logits[k + 1], tokens)
    return results  # type: ignore[return-value]
