"""Rewards in-process: groups -> pairs -> `judge.compare_many` (one call, so one set of batches) ->
SampleRewards. The service runs the same expansion and arithmetic (modes.py) around its scheduler."""

from __future__ import annotations

from typing import Sequence

from .modes import RewardGroup, SampleReward, expand_groups, group_rewards
from .pointwise import pointwise_rewards


def compute_rewards(judge, groups: Sequence[RewardGroup], **slots: str) -> list[list[SampleReward]]:
    """judge: anything with `compare_many(pairs) -> [PairScore]` (a `Judge`). Per group, a
    SampleReward per response, in input order. A Judge with a pointwise spec scores each response alone
    (pointwise.py; slots: criterion=, rubric= shared by every response)."""
    groups = list(groups)
    spec = getattr(judge, "spec", None)
    if spec is not None and not spec.pairwise:
        return pointwise_rewards(judge, groups, **slots)
    if slots:
        raise TypeError(f"slots {sorted(slots)} are for a pointwise spec; this judge compares pairs")
    pairs, matchups = expand_groups(groups)
    scores = judge.compare_many(pairs) if pairs else []
    return group_rewards(groups, matchups, scores)
