"""Rewards from a pointwise judge spec (judge_core/specs): each response scored on its own, no pairs.

A pointwise spec (a 1-5 rubric, a yes/no criterion, Pollux's 0-2 criterion score) reads one response at a
time, so a group needs no matchups: `judge.score_many` scores every response once, in one call.

    reward = the spec's score mapped to [0, 1]:
             aggregate `expected` or `argmax`: (score - lowest label value) / (highest - lowest)
                 (a 1-5 rubric: 1 -> 0, 3 -> 0.5, 5 -> 1; an expected 3.4 -> 0.6)
             aggregate `p_first`: the score as it is (P(first label), already a probability: P(yes))
    SampleReward: p_ab = p_ba = p_mean = reward (one pass: no order to average over), opponents 0;
             a response that cannot be scored gets reward NaN and its `error`, as in the pairwise modes.

Groups carry no mode (the pairwise modes compare responses; ValueError otherwise); a group's `reference`
fills the spec's {reference} slot when its messages use one. Slots every response shares (criterion=,
rubric=) are keyword arguments.
"""

from __future__ import annotations

import math
from typing import Sequence

from .modes import RewardGroup, SampleReward


def pointwise_reward(spec, score: float) -> float:
    """The spec's score (PointScore.score) as a reward in [0, 1] (module docstring)."""
    if spec.aggregate == "p_first":
        return score
    low, high = min(spec.label_values), max(spec.label_values)
    return (score - low) / (high - low) if high > low else math.nan


def pointwise_rewards(judge, groups: Sequence[RewardGroup], **slots: str) -> list[list[SampleReward]]:
    """judge: a Judge with a pointwise spec. Per group, a SampleReward per response, in input order."""
    spec = judge.spec
    if spec.pairwise:
        raise ValueError(f"spec {spec.name!r} is {spec.kind}: its rewards come from the pairwise modes "
                         "(compute_rewards)")
    used = set().union(*(m.slots() for m in spec.messages))
    items, owners = [], []
    for g, group in enumerate(groups):
        if group.mode is not None:
            raise ValueError(f"groups[{g}]: mode {group.mode!r} compares responses in pairs; a pointwise spec "
                             f"({spec.name!r}) scores each response alone: leave mode unset")
        shared = dict(slots)
        if group.reference is not None and "reference" in used:
            shared["reference"] = group.reference
        for r, response in enumerate(group.responses):
            items.append({**shared, "instruction": group.instruction, "response": response})
            owners.append((g, r))
    scores = judge.score_many(items) if items else []
    rewards: list[list[SampleReward]] = [[None] * len(group.responses) for group in groups]  # type: ignore[list-item]
    for (g, r), score in zip(owners, scores):
        if not score.ok:
            rewards[g][r] = SampleReward.failed(score.error)
            continue
        value = pointwise_reward(spec, score.score)
        rewards[g][r] = SampleReward(value, value, value, value, opponents=0)
    return rewards
