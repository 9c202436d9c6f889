"""RL routes beside /v1/rewards: one sample per request, grouped by the barrier (groups.py).

- POST /v1/group_reward   {"group_id", "group_size", "instruction", "response", "reference"?, "mode"?,
                          "on_timeout"?, "group_timeout_s"?} -> {"reward", "p_ab", "p_ba", "p_mean", ...}
- POST /slime_reward      slime's remote_rm body {"prompt", "response", "label"} -> a JSON number
- /get_reward (app.py) with `?group_size=N`: OpenRLHF's per-sample requests, grouped by prompt.
Query parameters (all three routes; the body wins on /v1/group_reward): mode (anchor | round_robin |
bootstrap), group_size, on_timeout (error | anchor), group_timeout_s.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from typing import Any, Mapping

from fastapi import Request
from fastapi.responses import Response

from ..rewards.chat import instruction_text
from ..rewards.modes import MODES, RewardGroup, SampleReward, count_matchups, expand_groups, group_rewards
from .groups import GroupBarrier, GroupMismatch, GroupTimeout
from .requests import RequestError, check_pair_count
from .rewards import openrlhf_body

ON_TIMEOUT = ("error", "anchor")


@dataclass(frozen=True)
class RLOptions:
    mode: str | None = None
    group_size: int | None = None
    on_timeout: str = "error"
    group_timeout_s: float | None = None


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
        raise RequestError(422, f"{where} must be a positive integer, got {value!r}")
    return value


def rl_options(params: Mapping[str, Any], where: str = "query parameter") -> RLOptions:
    """mode / group_size / on_timeout / group_timeout_s from query parameters or a body; 422 naming the bad one."""
    mode = params.get("mode")
    if mode is not None and mode not in MODES:
        raise RequestError(422, f"{where} 'mode' must be one of {', '.join(MODES)}, got {mode!r}")
    size = params.get("group_size")
    if size is not None:
        size = _int(size, f"{where} 'group_size'")
        if size < 1:
            raise RequestError(422, f"{where} 'group_size' must be >= 1, got {size}")
    on_timeout = params.get("on_timeout", "error")
    if on_timeout not in ON_TIMEOUT:
        raise RequestError(422, f"{where} 'on_timeout' must be one of {', '.join(ON_TIMEOUT)}, got {on_timeout!r}")
    timeout = params.get("group_timeout_s")
    if timeout is not None:
        try:
            timeout = float(timeout)
        except (TypeError, ValueError):
            timeout = math.nan
        if not (timeout > 0 and math.isfinite(timeout)):
            raise RequestError(422, f"{where} 'group_timeout_s' must be a positive number of seconds, got "
                                    f"{params.get('group_timeout_s')!r}")
    return RLOptions(mode, size, on_timeout, timeout)


class RLRoutes:
    """The barrier-backed scoring shared by the three routes. score: app.py's `score(request, pairs,
    started)` coroutine (called with request None: a group is scored for several clients at once)."""

    def __init__(self, score, limits, barrier: GroupBarrier, guard=None):
        self.score = score
        self.limits = limits
        self.barrier = barrier
        # guard(data, route) -> data: the app's check that the served spec judges pairs (400 otherwise)
        self.guard = guard or (lambda data, route: data)

    async def score_group(self, group: RewardGroup) -> list[SampleReward]:
        pairs, matchups = expand_groups([group])
        scores, _ = await self.score(None, pairs, time.perf_counter())
        return group_rewards([group], matchups, scores)[0]

    async def member(self, group_id: str | None, options: RLOptions, instruction: Any, response: Any,
                     reference: Any, reuse_ids: bool = False) -> tuple[SampleReward, str | None]:
        """-> (this sample's reward, "anchor" when it came from the timeout fallback, else None)."""
        mode = options.mode or ("anchor" if options.group_size is None else "round_robin")
        if mode == "anchor":
            if not isinstance(reference, str):
                raise RequestError(422, "mode 'anchor' needs a reference (label) string to judge the response against")
            return (await self.score_group(RewardGroup(instruction, (response,), reference, "anchor")))[0], None
        if options.group_size is None or group_id is None:
            raise RequestError(422, f"mode {mode!r} needs group_id and group_size (the barrier waits for the group)")
        need = count_matchups(RewardGroup("", ("",) * options.group_size, mode=mode))
        check_pair_count(need, f"a group of {options.group_size} in mode {mode!r}", self.limits)
        # A member must be answered within the request timeout: the group's wait is capped below it.
        timeout = min(options.group_timeout_s or self.barrier.default_timeout_s, self.limits.request_timeout_s / 2)
        try:
            return await self.barrier.join(group_id, options.group_size, mode, instruction, response,
                                           self.score_group, timeout, reuse_ids), None
        except GroupMismatch as e:
            raise RequestError(422, str(e)) from None
        except OverflowError as e:
            raise RequestError(503, str(e), {"Retry-After": str(self.limits.retry_after_s)}) from None
        except GroupTimeout as e:
            if options.on_timeout == "error":
                return SampleReward.failed(f"{e} (on_timeout='anchor' with a reference falls back to it)"), None
            if not isinstance(reference, str):
                return SampleReward.failed(f"{e}; on_timeout='anchor' but no reference to fall back on"), None
            fallback = RewardGroup(instruction, (response,), reference, "anchor")
            return (await self.score_group(fallback))[0], "anchor"

    async def openrlhf_grouped(self, request: Request, items, options: RLOptions) -> dict:
        """/get_reward?group_size=N: each item joins the group of its prompt (OpenRLHF sends no group id).
        items: requests.OpenRLHFItems; a bad item is answered with its error and joins no group."""
        async def one(i: int) -> SampleReward:
            if i in items.errors:
                return SampleReward.failed(items.errors[i])
            p = items.prompts[i]
            return (await self.member(f"openrlhf\0{p}", options, p, items.responses[i], items.labels[i],
                                      reuse_ids=True))[0]

        return openrlhf_body(await asyncio.gather(*[one(i) for i in range(len(items))]))


def _str_field(data: dict, name: str, required: bool = True):
    if name not in data or data[name] is None:
        if required:
            raise RequestError(422, f"missing field {name!r} (a string)")
        return None
    if not isinstance(data[name], str):
        raise RequestError(422, f"field {name!r} must be a string, got {type(data[name]).__name__}")
    return data[name]


def register_rl_routes(app, handle, rl: RLRoutes) -> None:
    """handle(endpoint, request, validate, answer): the app's auth, body, errors and metrics."""
    @app.post("/v1/group_reward")
    async def group_reward(request: Request) -> Response:
        async def answer(request, data, started):
            if not isinstance(data, dict):
                raise RequestError(422, f"request body must be a JSON object, got {type(data).__name__}")
            options = rl_options({**request.query_params, **data}, "field")
            group_id = data.get("group_id")
            if group_id is not None and not isinstance(group_id, (str, int)):
                raise RequestError(422, f"field 'group_id' must be a string or integer, got {type(group_id).__name__}")
            sample, fallback = await rl.member(None if group_id is None else str(group_id), options,
                                               _str_field(data, "instruction"), _str_field(data, "response"),
                                               _str_field(data, "reference", required=False))
            body = {**sample.to_dict(), "group_id": group_id, "fallback": fallback}
            return body, int(sample.ok), int(not sample.ok)

        return await handle("/v1/group_reward", request, lambda data: rl.guard(data, "/v1/group_reward"), answer)

    @app.post("/slime_reward")
    async def slime_reward(request: Request) -> Response:
        async def answer(request, data, started):
            if not isinstance(data, dict):
                raise RequestError(422, f"request body must be a JSON object, got {type(data).__name__}")
            options = rl_options(request.query_params)
            instruction = instruction_text(data.get("prompt"))
            if not isinstance(instruction, str):
                raise RequestError(422, "field 'prompt' must be a string or a chat (a list of messages with a user turn)")
            response = _str_field(data, "response")
            label = data.get("label")
            label = label if isinstance(label, str) and label else None
            sample, _ = await rl.member(f"slime\0{instruction}", options, instruction, response, label,
                                       reuse_ids=True)
            if not sample.ok:
                # slime expects a number; a sample the judge cannot score is a loud error, not a made-up value.
                raise RequestError(422, f"cannot score this sample: {sample.error}")
            return sample.reward, 1, 0

        return await handle("/slime_reward", request, lambda data: rl.guard(data, "/slime_reward"), answer)
