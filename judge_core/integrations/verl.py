"""verl: the judge as a reward through `judge-core serve` (HTTP; no model in verl's reward workers).

1. An async `compute_score` for verl's custom reward function (anchor mode: the response against the
   row's `ground_truth` as the reference text):

       custom_reward_function.path=pkg://judge_core.integrations.verl
       custom_reward_function.name=compute_score
       +custom_reward_function.reward_kwargs.judge_url=http://JUDGE_HOST:8000

   verl calls it per sample as `await compute_score(data_source=..., solution_str=..., ground_truth=...,
   extra_info=...)` (verl/experimental/reward_loop/reward_manager/naive.py, NaiveRewardManager.run_single;
   reward_kwargs merged in by verl/trainer/ppo/reward.py, get_custom_reward_fn; the module found by
   verl/utils/import_utils.py, load_module: "pkg://" or a file path, so this file uses absolute
   imports). verl passes the response only: the instruction is read from `extra_info` (keys
   "instruction", "question", "prompt": put it there in the dataset's preprocessing).

2. `JudgeGroupRewardManager`, a reward-loop manager that forwards verl's `uid` (the id GRPO shares
   across the rollout.n samples of a prompt, verl/trainer/ppo/ray_trainer.py) as the group id, so the
   service's group barrier scores each group in round_robin or bootstrap mode:

       +reward_model.reward_loop_source=importlib
       +reward_model.reward_loop_module_path=pkg://judge_core.integrations.verl
       +reward_model.reward_loop_class_name=JudgeGroupRewardManager
       +custom_reward_function.reward_kwargs.judge_url=http://JUDGE_HOST:8000
       +custom_reward_function.reward_kwargs.judge_mode=round_robin

   verl builds it as `cls(config, tokenizer, compute_score, reward_router_address, reward_model_tokenizer)`
   and awaits `run_single(data)` with one sample, expecting {"reward_score", "reward_extra_info"}
   (verl/experimental/reward_loop/reward_loop.py, RewardLoopWorker._init_reward_fn and compute_score).
   The group size is `actor_rollout_ref.rollout.n`.

Options (reward_kwargs, or the environment): judge_url (JUDGE_CORE_URL), judge_mode, judge_on_timeout
("error" | "anchor": fall back to ground_truth), judge_group_timeout_s, judge_api_key (JUDGE_CORE_API_KEY),
judge_failed_score (the score of a sample the judge could not score; default NaN, so it cannot pass
unnoticed). Each reward comes with judge_p_ab, judge_p_ba, judge_p_mean and judge_failed in verl's
reward_extra_info. verl itself is never imported here.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any

from judge_core.rewards.modes import SampleReward

log = logging.getLogger(__name__)
INSTRUCTION_KEYS = ("instruction", "question", "prompt")
_clients: dict = {}


def _option(kwargs: dict, name: str, env: str | None = None, default=None):
    value = kwargs.get(name)
    if value is None and env is not None:
        value = os.environ.get(env)
    return default if value is None else value


def _client(kwargs: dict):
    from judge_core.async_client import AsyncJudgeClient

    url = _option(kwargs, "judge_url", "JUDGE_CORE_URL")
    if not url:
        raise ValueError("no judge server: set custom_reward_function.reward_kwargs.judge_url=http://HOST:PORT "
                         "or JUDGE_CORE_URL")
    key = (url, _option(kwargs, "judge_api_key", "JUDGE_CORE_API_KEY"))
    if key not in _clients:
        _clients[key] = AsyncJudgeClient(url, api_key=key[1], timeout=float(_option(kwargs, "judge_timeout_s",
                                                                                     default=600)))
    return _clients[key]


def instruction_from(extra_info: Any) -> str:
    if isinstance(extra_info, dict):
        for key in INSTRUCTION_KEYS:
            if isinstance(extra_info.get(key), str):
                return extra_info[key]
    keys = sorted(extra_info) if isinstance(extra_info, dict) else type(extra_info).__name__
    raise ValueError(f"verl passes only the response: put the instruction in extra_info under one of "
                     f"{INSTRUCTION_KEYS} (extra_info has {keys})")


def _result(sample: SampleReward, kwargs: dict) -> dict:
    if not sample.ok:
        log.warning("judge could not score a sample: %s", sample.error)
    failed = float(_option(kwargs, "judge_failed_score", default=math.nan))
    return {"score": sample.reward if sample.ok else failed, "judge_p_ab": sample.p_ab, "judge_p_ba": sample.p_ba,
            "judge_p_mean": sample.p_mean, "judge_failed": 0.0 if sample.ok else 1.0}


async def compute_score(data_source=None, solution_str=None, ground_truth=None, extra_info=None, **kwargs) -> dict:
    """verl's custom reward function (async): P(solution beats ground_truth), anchor mode.
    -> {"score", "judge_p_ab", "judge_p_ba", "judge_p_mean", "judge_failed"}."""
    if not isinstance(ground_truth, str) or not ground_truth:
        raise ValueError(f"compute_score judges the response against ground_truth as the reference text; got "
                         f"{type(ground_truth).__name__} {ground_truth!r:.60} (use JudgeGroupRewardManager for "
                         f"reference-free group modes)")
    client = _client(kwargs)
    results = await client.sample_rewards([{"instruction": instruction_from(extra_info), "responses": [solution_str],
                                            "reference": ground_truth, "mode": "anchor"}])
    return _result(results[0][0], kwargs)


class JudgeGroupRewardManager:
    """verl reward-loop manager: each sample joins its `uid` group at the service's barrier."""

    def __init__(self, config, tokenizer, compute_score=None, reward_router_address=None, reward_model_tokenizer=None):
        self.config = config
        self.tokenizer = tokenizer
        crf = _get(config, "custom_reward_function") or {}
        self.options = dict(_get(crf, "reward_kwargs") or {})
        self.mode = _option(self.options, "judge_mode", default="round_robin")
        self.group_size = int(_get(_get(_get(config, "actor_rollout_ref"), "rollout"), "n") or 1)
        self.client = _client(self.options)

    async def run_single(self, data) -> dict:
        if len(data) != 1:
            raise ValueError(f"run_single takes one sample, got {len(data)}")
        item = data[0]
        responses = item.batch["responses"]
        valid = int(item.batch["attention_mask"][-responses.shape[-1]:].sum())
        response = self.tokenizer.decode(responses[:valid], skip_special_tokens=True)
        extra_info = dict(item.non_tensor_batch.get("extra_info") or {})
        ground_truth = (item.non_tensor_batch.get("reward_model") or {}).get("ground_truth")
        uid = str(item.non_tensor_batch["uid"])
        reference = ground_truth if isinstance(ground_truth, str) and ground_truth else None
        sample = await self.client.group_reward(
            uid, self.group_size, instruction_from(extra_info), response, reference=reference, mode=self.mode,
            on_timeout=_option(self.options, "judge_on_timeout"),
            group_timeout_s=_option(self.options, "judge_group_timeout_s"))
        info = _result(sample, self.options)
        return {"reward_score": info["score"], "reward_extra_info": info}


def _get(obj, name: str):
    """A field of verl's OmegaConf config (attribute or key access), None when absent."""
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(name)
    try:
        return obj.get(name) if hasattr(obj, "get") else getattr(obj, name, None)
    except Exception:  # noqa: BLE001 - struct configs raise on a missing key
        return getattr(obj, name, None)
