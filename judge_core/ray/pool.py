"""RayJudgePool: `compare_many` over N long-lived replica actors, for callers that judge round by round.

A tournament (`judge-core rank`) asks for a few hundred pairs per Swiss round and decides the next round
from the verdicts, so it cannot hand Ray Data one dataset up front, and a Ray Data job per round would
load the model again each round. The pool keeps N JudgeReplica actors alive for its lifetime and feeds
each call's token-sized blocks to whichever replica is free. Ray restarts a replica whose process died
(max_restarts=-1) and retries its block (max_task_retries), so a call still returns every pair.
"""

from __future__ import annotations

import os
from typing import Any, Iterable

from ..pairs import PairError, normalize_pair
from ..scoring import PairScore
from .blocks import block_tokens_for, token_blocks
from .faults import TEST_HOOKS
from .replica import JudgeReplica

# A block retried this often (its replica died each time) fails the call instead of looping forever.
MAX_TASK_RETRIES = 3


class RayJudgePool:
    """compare_many(pairs) -> list[PairScore] in input order, on `replicas` Ray actors (one Judge each)."""

    def __init__(self, model: str, *, replicas: int, num_gpus: float | None = None, num_cpus: float | None = None,
                 device: str | None = None, block_tokens: int | None = None, **judge_options: Any):
        import ray

        from .dataset import check_judge_options, cluster_gpus

        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
            raise ValueError(f"replicas must be a positive integer, got {replicas!r}")
        check_judge_options(judge_options)
        self.block_tokens = block_tokens or block_tokens_for(judge_options.get("token_budget", 32768))
        if num_gpus is None:
            num_gpus = 1 if cluster_gpus() > 0 else 0
        options: dict = {"max_restarts": -1, "max_task_retries": MAX_TASK_RETRIES, "num_gpus": num_gpus}
        if num_cpus is not None:
            options["num_cpus"] = num_cpus
        hooks = {name: os.environ[name] for name in TEST_HOOKS if os.environ.get(name)}
        if hooks:
            options["runtime_env"] = {"env_vars": hooks}
        actor = ray.remote(JudgeReplica).options(**options)
        self.actors = [actor.remote(str(model), judge_options, None, device) for _ in range(replicas)]

    def compare_many(self, pairs: Iterable[Any], *, progress=False) -> list[PairScore]:
        import ray

        pairs = list(pairs)
        results: list[PairScore | None] = [None] * len(pairs)
        good = []
        for i, pair in enumerate(pairs):
            try:
                good.append((i, normalize_pair(pair)))
            except PairError as e:
                results[i] = PairScore.failed(str(e))
        blocks = token_blocks(*zip(*[p for _, p in good]), self.block_tokens) if good else []
        todo = [[good[k][0] for k in block] for block in reversed(blocks)]  # popped from the end: in order
        running: dict = {}
        bar = _bar(progress, len(pairs))
        try:
            for actor in self.actors:  # one block in flight per replica; the next goes to the first one free
                if todo:
                    self._submit(actor, todo.pop(), pairs, running)
            while running:
                done, _ = ray.wait(list(running), num_returns=1)
                actor, indices = running.pop(done[0])
                for i, score in zip(indices, ray.get(done[0])):
                    results[i] = score
                if bar is not None:
                    bar.update(len(indices))
                if todo:
                    self._submit(actor, todo.pop(), pairs, running)
        finally:
            if bar is not None:
                bar.close()
        return results  # type: ignore[return-value]

    @staticmethod
    def _submit(actor, indices: list[int], pairs: list, running: dict) -> None:
        running[actor.compare_many.remote([pairs[i] for i in indices])] = (actor, indices)

    def close(self) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor)
        self.actors = []


def _bar(progress, total: int):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="pair", desc="judging", dynamic_ncols=True)
