"""slime: the judge as a reward through `judge-core serve` (HTTP; nothing of slime is imported here).

1. slime's own remote RM (slime/rollout/rm_hub/__init__.py, `remote_rm`): it posts {"prompt",
   "response", "label"} to --rm-url and takes the JSON answer as the reward. The service's
   /slime_reward route answers with a number:

       --rm-type remote_rm --rm-url http://JUDGE_HOST:8000/slime_reward                       # anchor: label = reference
       --rm-type remote_rm --rm-url "http://JUDGE_HOST:8000/slime_reward?mode=round_robin&group_size=8"

   (group modes wait at the service's group barrier, keyed by the prompt: slime sends no group id).

2. Custom reward functions (`--custom-rm-path judge_core.integrations.slime.reward_func`), called as
   `await reward_func(args, sample, **kwargs)` per sample (`async_rm`), or with `--group-rm` as
   `await group_reward_func(args, samples, **kwargs)` with the n samples of one prompt
   (`batched_async_rm`, from sglang_rollout.generate_and_rm_group): one /v1/rewards request per
   group, no barrier. The server is JUDGE_CORE_URL, else `args.judge_url`, else --rm-url's scheme
   and host. Options: JUDGE_CORE_MODE (group: round_robin | bootstrap; default round_robin),
   JUDGE_CORE_API_KEY.

A sample's prompt may be a string or chat messages (the last user turn is the instruction); its
`label`, when non-empty, is the reference (anchor mode). A sample the judge cannot score gets NaN
from the functions (and a warning with the reason), never a made-up number; /slime_reward answers
it with 422 and the reason (strict JSON has no NaN).
"""

from __future__ import annotations

import logging
import os
from typing import Any
from urllib.parse import urlsplit

from ..rewards.chat import instruction_text, response_text

log = logging.getLogger(__name__)
_clients: dict = {}


def _client(args):
    from ..async_client import AsyncJudgeClient

    url = os.environ.get("JUDGE_CORE_URL") or getattr(args, "judge_url", None)
    if not url and getattr(args, "rm_url", None):
        parts = urlsplit(args.rm_url)
        url = f"{parts.scheme}://{parts.netloc}"
    if not url:
        raise RuntimeError("no judge server: set JUDGE_CORE_URL=http://HOST:PORT (or --rm-url)")
    key = (url, os.environ.get("JUDGE_CORE_API_KEY"))
    if key not in _clients:
        _clients[key] = AsyncJudgeClient(url, api_key=key[1])
    return _clients[key]


def _label(sample) -> str | None:
    label = getattr(sample, "label", None)
    return label if isinstance(label, str) and label else None


def _value(reward, where: str) -> float:
    if not reward.ok:
        log.warning("the judge could not score %s: %s", where, reward.error)
    return reward.reward  # NaN when not ok


async def reward_func(args, sample, **kwargs) -> float:
    """Per sample, anchor mode: P(sample.response beats sample.label)."""
    label = _label(sample)
    if label is None:
        raise ValueError("reward_func judges each response against its label (a reference text); this sample has "
                         "none: use --group-rm with judge_core.integrations.slime.group_reward_func for "
                         "reference-free group modes")
    [[reward]] = await _client(args).sample_rewards([{
        "instruction": instruction_text(sample.prompt), "responses": [response_text(sample.response)],
        "reference": label, "mode": "anchor"}])
    return _value(reward, f"sample {getattr(sample, 'index', '?')}")


async def group_reward_func(args, samples: list, **kwargs) -> list[float]:
    """--group-rm: the n samples of one prompt in one request, rewards in the samples' order."""
    if not samples:
        return []
    mode = os.environ.get("JUDGE_CORE_MODE") or "round_robin"
    group: dict[str, Any] = {"instruction": instruction_text(samples[0].prompt),
                             "responses": [response_text(s.response) for s in samples], "mode": mode}
    if mode == "anchor":
        raise ValueError("group_reward_func runs the group modes (round_robin, bootstrap); for anchor use reward_func")
    [rewards] = await _client(args).sample_rewards([group])
    return [_value(r, f"sample {getattr(s, 'index', k)}") for k, (r, s) in enumerate(zip(rewards, samples))]
