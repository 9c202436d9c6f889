"""Rewards in-process: groups -> pairs -> `judge.compare_many` (one call, so one set of batches) ->
SampleRewards. The service runs the same expansion and arithmetic (modes.py) around its scheduler."""

from __future__ import annotations

from typing import Sequence

from .modes import RewardGroup, SampleReward, expand_groups, group_rewards


def compute_rewards(judge, groups: Sequence[RewardGroup]) -> list[list[SampleReward]]:
    """judge: anything with `compare_many(pairs) -> [PairScore]` (a `Judge`). Per group, a
    SampleReward per response, in input order."""
    groups = list(groups)
    pairs, matchups = expand_groups(groups)
    scores = judge.compare_many(pairs) if pairs else []
    return group_rewards(groups, matchups, scores)
