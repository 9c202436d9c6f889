"""judge_core.ray: scale-out on Ray Data, one Judge per actor (`pip install judge_core[ray]`).

    from judge_core.ray import score_dataset, pairs_dataset, JudgeReplica, RayJudgePool

Nothing here imports ray until it is used: `import judge_core` never does.
"""

from __future__ import annotations

__all__ = ["JudgeReplica", "RayJudgePool", "score_dataset", "pairs_dataset"]


def __getattr__(name):
    if name == "JudgeReplica":
        from .replica import JudgeReplica

        return JudgeReplica
    if name == "RayJudgePool":
        from .pool import RayJudgePool

        return RayJudgePool
    if name in ("score_dataset", "pairs_dataset"):
        from . import dataset

        return getattr(dataset, name)
    raise AttributeError(f"module 'judge_core.ray' has no attribute {name!r}")
