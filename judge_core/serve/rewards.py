"""HTTP shaping of RL rewards. The arithmetic lives in judge_core.rewards.modes (the same for every surface);
this file turns its SampleRewards into the JSON of /v1/rewards and OpenRLHF's /get_reward, and groups
OpenRLHF's flat items by prompt.
"""

from __future__ import annotations

import math
from typing import Sequence

from ..rewards.modes import (NEUTRAL_REWARD, Matchup, RewardGroup, SampleReward, count_matchups, expand_groups,
                             group_rewards)

__all__ = ["NEUTRAL_REWARD", "Matchup", "RewardGroup", "count_matchups", "expand_groups", "failed_pairs",
           "openrlhf_body", "openrlhf_groups", "rewards_body", "split_query"]


def failed_pairs(matchups: Sequence[Matchup], scores: Sequence) -> list[dict]:
    """One entry per pair the judge could not score: {"group", "responses", "reference", "error"}."""
    errors = []
    for m, s in zip(matchups, scores):
        if s.error is not None:
            involved = [m.i] if m.j is None else [m.i, m.j]
            errors.append({"group": m.group, "responses": involved, "reference": m.j is None, "error": s.error})
    return errors


def rewards_body(groups: Sequence[RewardGroup], matchups: Sequence[Matchup], scores: Sequence) -> dict:
    """/v1/rewards: `rewards` (null where NaN), `details` (p_ab, p_ba, p_mean, ... per sample), `errors`."""
    samples = group_rewards(groups, matchups, scores)
    details = [[s.to_dict() for s in row] for row in samples]
    return {"rewards": [[d["reward"] for d in row] for row in details], "details": details,
            "errors": failed_pairs(matchups, scores)}


def openrlhf_body(samples: Sequence[SampleReward]) -> dict:
    """/get_reward: OpenRLHF needs a number per item, so an unscorable item gets the neutral 0.5 with
    `judge_failed` 1.0 in extra_logs (logged by OpenRLHF); p_ab, p_ba and p_mean are logged beside it."""
    values = [s.reward if not math.isnan(s.reward) else NEUTRAL_REWARD for s in samples]

    def log(x: float) -> float:
        return x if not math.isnan(x) else NEUTRAL_REWARD

    # OpenRLHF calls torch.tensor(rewards): a number per item, the reason for each neutral one in `errors`.
    errors = [{"index": i, "error": s.error} for i, s in enumerate(samples) if not s.ok]
    return {"rewards": values, "scores": values, "errors": errors,
            "extra_logs": {"judge_failed": [0.0 if s.ok else 1.0 for s in samples],
                           "judge_p_ab": [log(s.p_ab) for s in samples],
                           "judge_p_ba": [log(s.p_ba) for s in samples],
                           "judge_p_mean": [log(s.p_mean) for s in samples]}}


def openrlhf_groups(items, mode: str | None = None) -> tuple[list[RewardGroup], list[tuple[int, int] | None]]:
    """items: requests.OpenRLHFItems (responses already split off their queries, bad items in `errors`).
    -> (groups, where[i] = (group, response) of item i, None for a bad item).

    mode None: a labelled item plays its label (anchor); unlabelled items sharing a prompt play a round
    robin. mode "anchor": every item plays its label. "round_robin" / "bootstrap": items sharing a
    prompt form a group in that mode and labels are not used.
    """
    groups: list[RewardGroup] = []
    where: list[tuple[int, int] | None] = [None] * len(items)
    by_prompt: dict[str, list[int]] = {}
    for i in range(len(items)):
        if i in items.errors:
            continue
        prompt, label = items.prompts[i], items.labels[i]
        if mode in (None, "anchor") and label is not None:
            where[i] = (len(groups), 0)
            groups.append(RewardGroup(prompt, (items.responses[i],), label, "anchor"))
        elif mode == "anchor":
            raise ValueError(f"mode 'anchor' needs a label for every item: labels[{i}] is empty")
        else:
            by_prompt.setdefault(prompt, []).append(i)
    for prompt, members in by_prompt.items():
        for r, i in enumerate(members):
            where[i] = (len(groups), r)
        groups.append(RewardGroup(prompt, tuple(items.responses[i] for i in members), mode=mode or "round_robin"))
    return groups, where


def split_query(query: str, prompt: str) -> str | None:
    """OpenRLHF sends query = prompt + response (the prompt as the trainer templated it): the response
    is the query minus that prefix; None when the query does not start with its prompt."""
    return query[len(prompt):] if query.startswith(prompt) else None
