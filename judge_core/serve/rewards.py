"""Group rewards for RL (GRPO-style) from pairwise verdicts. Pure Python.

Without a reference, a group of n responses plays a round robin: each unordered pair (i, j) is judged
once with the dual pass, P(i beats j) = p1 / 100 and P(j beats i) = p2 / 100, and a response's reward
is its mean probability of beating the n - 1 others (0..1; the group's rewards average 0.5).
With a reference, a response's reward is its probability of beating the reference.
A single response with no reference has nobody to beat: its reward is 0.5 (neutral; a group-relative
advantage is zero for it anyway).
A pair the judge cannot score (e.g. over the model's context) leaves the rewards of the responses it
involves as None, with an entry in `errors`; nothing is averaged over a missing verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

SINGLE_RESPONSE_REWARD = 0.5


@dataclass(frozen=True)
class RewardGroup:
    instruction: str
    responses: tuple[str, ...]
    reference: str | None = None


@dataclass(frozen=True)
class Matchup:
    """Pair k of the expansion: response i of group g against response j, or the reference (j None)."""

    group: int
    i: int
    j: int | None


def count_matchups(group: RewardGroup) -> int:
    n = len(group.responses)
    return n if group.reference is not None else n * (n - 1) // 2


def expand_groups(groups: Sequence[RewardGroup]) -> tuple[list[tuple[str, str, str]], list[Matchup]]:
    """-> (pairs to judge as (instruction, response_1, response_2), what each pair is)."""
    pairs: list[tuple[str, str, str]] = []
    matchups: list[Matchup] = []
    for g, group in enumerate(groups):
        n = len(group.responses)
        if group.reference is not None:
            for i in range(n):
                pairs.append((group.instruction, group.responses[i], group.reference))
                matchups.append(Matchup(g, i, None))
        else:
            for i in range(n):
                for j in range(i + 1, n):
                    pairs.append((group.instruction, group.responses[i], group.responses[j]))
                    matchups.append(Matchup(g, i, j))
    return pairs, matchups


def group_rewards(groups: Sequence[RewardGroup], matchups: Sequence[Matchup], scores: Sequence) -> tuple[
        list[list[float | None]], list[dict]]:
    """scores: a PairScore per matchup. -> (rewards per group, errors)."""
    wins = [[0.0] * len(group.responses) for group in groups]
    broken = [[False] * len(group.responses) for group in groups]
    errors: list[dict] = []
    for m, score in zip(matchups, scores):
        involved = [m.i] if m.j is None else [m.i, m.j]
        if score.error is not None:
            for r in involved:
                broken[m.group][r] = True
            errors.append({"group": m.group, "responses": involved, "reference": m.j is None, "error": score.error})
            continue
        wins[m.group][m.i] += score.p1 / 100.0
        if m.j is not None:
            wins[m.group][m.j] += score.p2 / 100.0
    rewards: list[list[float | None]] = []
    for g, group in enumerate(groups):
        n = len(group.responses)
        opponents = 1 if group.reference is not None else n - 1
        row: list[float | None] = []
        for r in range(n):
            if broken[g][r]:
                row.append(None)
            elif opponents == 0:
                row.append(SINGLE_RESPONSE_REWARD)
            else:
                row.append(wins[g][r] / opponents)
        rewards.append(row)
    return rewards, errors


def split_query(query: str, prompt: str) -> str | None:
    """OpenRLHF sends query = prompt + response (the prompt as the trainer templated it): the response
    is the query minus that prefix; None when the query does not start with its prompt."""
    return query[len(prompt):] if query.startswith(prompt) else None
