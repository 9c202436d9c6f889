"""TRL (1.x) reward functions: the judge in `GRPOTrainer(reward_funcs=[...])` and OnlineDPO.

    from judge_core import Judge
    from judge_core.integrations.trl import judge_reward_func
    reward = judge_reward_func(Judge.from_pretrained(PATH), mode="round_robin")
    trainer = GRPOTrainer(model=..., reward_funcs=[reward], args=GRPOConfig(num_generations=8), ...)

TRL calls a reward function as `f(prompts=..., completions=..., completion_ids=..., **columns)` with
one entry per completion (trl/trainer/grpo_trainer.py, GRPOTrainer._calculate_rewards) and wants one
float per completion back (None/NaN: unscorable, left out of the group baseline). Prompts and
completions are strings, or chat messages in the conversational format (judge_core.rewards.chat).
TRL 1.x dropped its judge classes: these are plain reward functions.

Groups: TRL repeats each prompt `num_generations` times in a row (RepeatSampler), so a group is a
run of consecutive equal prompts (and equal references). A process that holds only part of a group
(several GPUs) scores the part it has: the modes are defined for any group size.
The reference (mode "anchor") comes from a dataset column, passed by TRL as a keyword argument:
`reference_column="reference"`.

Four functions, the same numbers (judge_core.rewards.modes):
- judge_reward_func(judge, ...):      in-process, a `Judge`.
- http_reward_func(url, ...):         over HTTP to `judge-core serve` (judge_core.client.JudgeClient).
- async_http_reward_func(url, ...):   the async twin: TRL runs async reward functions on its own event
                                      loop, concurrently with the other reward functions.
- online_dpo_reward_func(judge|url):  OnlineDPO's layout (see its docstring).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

from ..rewards.chat import instruction_text, response_text
from ..rewards.compute import compute_rewards
from ..rewards.modes import RewardGroup, SampleReward, check_mode


def trl_groups(prompts: Sequence[Any], completions: Sequence[Any], references: Sequence[Any] | None,
               mode: str | None) -> list[RewardGroup]:
    """Consecutive runs of the same prompt (and reference) -> RewardGroups, completions in order."""
    groups: list[RewardGroup] = []
    start = 0
    for k in range(1, len(prompts) + 1):
        if k < len(prompts) and prompts[k] == prompts[start] and (
                references is None or references[k] == references[start]):
            continue
        reference = None if references is None else references[start]
        groups.append(RewardGroup(instruction_text(prompts[start]),
                                  tuple(response_text(c) for c in completions[start:k]), reference, mode))
        start = k
    return groups


def _references(kwargs: dict, column: str | None, n: int):
    if column is None:
        return None
    if column not in kwargs:
        raise KeyError(f"reference_column={column!r} is not among the columns TRL passed: {sorted(kwargs)}")
    values = list(kwargs[column])
    if len(values) != n:
        raise ValueError(f"column {column!r} has {len(values)} values for {n} completions")
    return values


def _log(kwargs: dict, samples: list[SampleReward]) -> None:
    """TRL >= 1.x passes log_extra(column, values) and log_metric(name, value) to reward functions."""
    log_extra = kwargs.get("log_extra")
    if callable(log_extra):
        log_extra("judge_p_ab", [s.p_ab for s in samples])
        log_extra("judge_p_ba", [s.p_ba for s in samples])
    log_metric = kwargs.get("log_metric")
    if callable(log_metric) and samples:
        log_metric("judge/failed_fraction", sum(not s.ok for s in samples) / len(samples))


class _RewardFunc:
    """Shared by the three GRPO reward functions: prompts -> groups -> SampleRewards (by `score`) -> floats."""

    def __init__(self, score: Callable[[list[RewardGroup]], list[list[SampleReward]]], mode: str | None,
                 reference_column: str | None, name: str):
        self.mode = check_mode(mode) or ("anchor" if reference_column else "round_robin")
        if self.mode == "anchor" and reference_column is None:
            raise ValueError("mode 'anchor' needs reference_column: the dataset column holding each prompt's reference")
        self.reference_column = reference_column
        self.score = score
        self.__name__ = name  # TRL names the reward's metrics after the function
        self.last_groups: list[RewardGroup] = []    # the last call's groups and SampleRewards, for inspection
        self.last_samples: list[SampleReward] = []

    def groups(self, prompts, completions, kwargs) -> list[RewardGroup]:
        if len(prompts) != len(completions):
            raise ValueError(f"got {len(prompts)} prompts for {len(completions)} completions")
        refs = _references(kwargs, self.reference_column if self.mode == "anchor" else None, len(prompts))
        self.last_groups = trl_groups(prompts, completions, refs, self.mode)
        return self.last_groups

    def finish(self, rows: list[list[SampleReward]], kwargs) -> list[float]:
        self.last_samples = [s for row in rows for s in row]
        _log(kwargs, self.last_samples)
        return [s.reward for s in self.last_samples]

    def __call__(self, prompts, completions, completion_ids=None, **kwargs) -> list[float]:
        return self.finish(self.score(self.groups(prompts, completions, kwargs)), kwargs)


def judge_reward_func(judge, *, mode: str | None = None, reference_column: str | None = None,
                      name: str | None = None) -> Callable[..., list[float]]:
    """A GRPO reward function over an in-process `Judge` (one compare_many call per TRL batch).
    mode: round_robin (default), bootstrap, or anchor (default when reference_column is given)."""
    fn = _RewardFunc(lambda groups: compute_rewards(judge, groups), mode, reference_column, "")
    fn.__name__ = name or f"judge_{fn.mode}"
    return fn


def _client(url_or_client, timeout: float):
    from ..client import JudgeClient

    return url_or_client if isinstance(url_or_client, JudgeClient) else JudgeClient(url_or_client, timeout=timeout)


def _groups_body(groups: list[RewardGroup]) -> list[dict]:
    return [{"instruction": g.instruction, "responses": list(g.responses), "mode": g.resolved_mode,
             **({"reference": g.reference} if g.reference is not None else {})} for g in groups]


def _http_score(client) -> Callable[[list[RewardGroup]], list[list[SampleReward]]]:
    def score(groups: list[RewardGroup]) -> list[list[SampleReward]]:
        return client.sample_rewards(_groups_body(groups)) if groups else []

    return score


def http_reward_func(url_or_client, *, mode: str | None = None, reference_column: str | None = None,
                     name: str | None = None, timeout: float = 600.0) -> Callable[..., list[float]]:
    """The same reward function over HTTP (`judge-core serve`, /v1/rewards): one request per TRL batch."""
    fn = _RewardFunc(_http_score(_client(url_or_client, timeout)), mode, reference_column, "")
    fn.__name__ = name or f"judge_http_{fn.mode}"
    return fn


def async_http_reward_func(url: str, *, mode: str | None = None, reference_column: str | None = None,
                           name: str | None = None, timeout: float = 600.0, api_key: str | None = None):
    """The async twin of `http_reward_func` (TRL awaits async reward functions on its own loop, so
    the HTTP wait overlaps other reward functions): judge_core.async_client, no thread."""
    from ..async_client import AsyncJudgeClient

    client = AsyncJudgeClient(url, api_key=api_key, timeout=timeout)
    shape = _RewardFunc(lambda groups: [], mode, reference_column, "")  # grouping and logging only

    async def reward(prompts, completions, completion_ids=None, **kwargs) -> list[float]:
        groups = shape.groups(prompts, completions, kwargs)
        rows = await client.sample_rewards(_groups_body(groups)) if groups else []
        return shape.finish(rows, kwargs)

    reward.__name__ = name or f"judge_http_async_{shape.mode}"
    reward.details = shape  # .last_samples: the last call's SampleRewards
    return reward


def online_dpo_reward_func(judge=None, *, url=None, name: str = "judge_pairwise", timeout: float = 600.0):
    """OnlineDPO (trl.experimental.online_dpo) calls reward functions with `prompts = 2 * prompts` and
    `completions = [first completions | second completions]` and splits the rewards in halves
    (OnlineDPOTrainer.training_step: `rewards.split(batch_size)`, chosen = the higher). This judges
    each (first, second) pair once, both orders, and returns P(first better) for the first half and
    1 - P for the second: the chosen one is the one the judge prefers. Give `judge` or `url`."""
    if (judge is None) == (url is None):
        raise ValueError("give exactly one of judge (a Judge) or url (a judge-core serve address)")
    client = None if url is None else _client(url, timeout)

    def reward(prompts, completions, completion_ids=None, **kwargs) -> list[float]:
        n = len(prompts)
        if n % 2 or len(completions) != n:
            raise ValueError(f"OnlineDPO sends 2B prompts and 2B completions; got {n} and {len(completions)}")
        half = n // 2
        pairs = [(instruction_text(prompts[k]), response_text(completions[k]), response_text(completions[k + half]))
                 for k in range(half)]
        if client is not None:
            results = client.compare(pairs)
            p = [r["p1"] / 100.0 if "p1" in r else math.nan for r in results]
        else:
            p = [s.p1 / 100.0 for s in judge.compare_many(pairs)]
        return p + [1.0 - x for x in p]

    reward.__name__ = name
    return reward
