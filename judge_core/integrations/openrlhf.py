"""OpenRLHF (0.11): the judge as a remote reward, always a thin HTTP client of `judge-core serve`
(the judge never runs on a GPU inside OpenRLHF's vLLM actors).

1. URL form (recommended):

       --reward.remote_url http://JUDGE_HOST:8000/get_reward
       --reward.remote_url "http://JUDGE_HOST:8000/get_reward?mode=round_robin&group_size=8"   # group modes

   OpenRLHF's SingleTurnAgentExecutor posts {"query": [prompt + response], "prompts": [prompt],
   "labels": [label]} once per sample (openrlhf/utils/agent.py, `_fetch_rewards_via_http`; 180 s
   timeout, 5 tries) and reads "rewards", "scores" and "extra_logs". A non-empty label is the
   reference (anchor). `group_size` (= --rollout.n_samples_per_prompt) makes the service wait for the
   prompt's other samples (the group barrier, keyed by the prompt text: OpenRLHF sends no group id)
   and score them together in `mode` (round_robin | bootstrap); `on_timeout=anchor` falls back to the
   label when a group does not fill within `group_timeout_s`. `remote_url(...)` builds the URL.

2. File form: `--reward.remote_url /path/to/reward_func.py`, a file OpenRLHF loads and calls as
   `reward_func(queries, prompts, labels)` on a worker thread (`_fetch_rewards_via_func`). This module
   is such a file:

       --reward.remote_url $(python -c 'import judge_core.integrations.openrlhf as m; print(m.__file__)')

   with JUDGE_CORE_URL=http://JUDGE_HOST:8000 (and optionally JUDGE_CORE_MODE, JUDGE_CORE_GROUP_SIZE,
   JUDGE_CORE_ON_TIMEOUT, JUDGE_CORE_GROUP_TIMEOUT_S, JUDGE_CORE_API_KEY) in the Ray runtime env.
   Each call blocks one of OpenRLHF's worker threads for the request; with a group barrier every
   member of a group holds a thread until the group fills, so for group modes prefer the URL form
   (OpenRLHF's aiohttp requests hold no thread). OpenRLHF loads the file by path, outside its
   package: this file uses absolute imports only.
"""

from __future__ import annotations

import os
from urllib.parse import urlencode

ENV_OPTIONS = {"mode": "JUDGE_CORE_MODE", "group_size": "JUDGE_CORE_GROUP_SIZE",
               "on_timeout": "JUDGE_CORE_ON_TIMEOUT", "group_timeout_s": "JUDGE_CORE_GROUP_TIMEOUT_S"}


def remote_url(base_url: str, *, mode: str | None = None, group_size: int | None = None,
               on_timeout: str | None = None, group_timeout_s: float | None = None) -> str:
    """The value for OpenRLHF's --reward.remote_url: base_url + /get_reward + the options as query parameters."""
    params = {k: v for k, v in (("mode", mode), ("group_size", group_size), ("on_timeout", on_timeout),
                                ("group_timeout_s", group_timeout_s)) if v is not None}
    return base_url.rstrip("/") + "/get_reward" + (f"?{urlencode(params)}" if params else "")


def _env_client():
    from judge_core.client import JudgeClient

    url = os.environ.get("JUDGE_CORE_URL")
    if not url:
        raise RuntimeError("judge_core.integrations.openrlhf.reward_func needs JUDGE_CORE_URL=http://HOST:PORT in the "
                           "environment of OpenRLHF's vLLM actors (Ray runtime env)")
    return JudgeClient(url, api_key=os.environ.get("JUDGE_CORE_API_KEY"),
                       timeout=float(os.environ.get("JUDGE_CORE_TIMEOUT_S", "170")))


def reward_func(queries, prompts, labels) -> dict:
    """OpenRLHF's file form: -> {"rewards": [...], "scores": [...], "extra_logs": {...}}, the same body
    the URL form gets from /get_reward (the judge's p_ab, p_ba, p_mean and judge_failed in extra_logs)."""
    client = _env_client()
    params = {k: os.environ[env] for k, env in ENV_OPTIONS.items() if os.environ.get(env)}
    path = "/get_reward" + (f"?{urlencode(params)}" if params else "")
    body = {"query": list(queries), "prompts": list(prompts),
            "labels": [None if label is None else str(label) for label in labels]}
    return client._request("POST", path, body)
