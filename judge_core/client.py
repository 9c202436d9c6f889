"""A small client for `judge-core serve` (standard library only).

    from judge_core.client import JudgeClient
    client = JudgeClient("http://127.0.0.1:8000", api_key=None)
    client.compare([{"instruction": "...", "response_1": "...", "response_2": "...", "id": "a"}])
    client.rewards([{"instruction": "...", "responses": ["...", "...", "..."]}])

Errors raise JudgeServerError with the server's status and message; a per-pair error stays an entry.
`retries=N` retries a 503 (queue full, request deadline, warming up, shutting down) up to N times,
waiting the server's Retry-After (at most `max_wait` seconds) each time.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any, Sequence

from .rewards.modes import SampleReward  # pure Python, standard library only


class JudgeServerError(RuntimeError):
    """The server answered with an error status (or could not be reached: status 0)."""

    def __init__(self, status: int, message: str, retry_after: float | None = None):
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


class JudgeClient:
    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 600.0, retries: int = 0,
                 max_wait: float = 60.0):
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be an int >= 0, got {retries!r}")
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.retries = retries
        self.max_wait = max_wait

    def compare(self, pairs: Sequence[Any]) -> list[dict]:
        """pairs: dicts {instruction, response_1, response_2, id?} or 3-tuples. -> results in order:
        {"id"?, "p1", "p2", "pass1", "pass2"} or {"id"?, "error"}."""
        items = [p if isinstance(p, dict) else dict(zip(("instruction", "response_1", "response_2"), p))
                 for p in pairs]
        return self._request("POST", "/v1/compare", {"pairs": items})["results"]

    def rewards(self, groups: Sequence[dict]) -> list[list[float | None]]:
        """groups: {instruction, responses: [...], reference?}. -> per group, each response's reward (0..1)."""
        return self._request("POST", "/v1/rewards", {"groups": list(groups)})["rewards"]

    def sample_rewards(self, groups: Sequence[dict], mode: str | None = None) -> list[list[SampleReward]]:
        """Like `rewards`, with p_ab, p_ba, p_mean per sample (judge_core.rewards.SampleReward; NaN reward
        and `error` for a sample the judge could not score). mode: the default for groups without one."""
        body: dict = {"groups": list(groups)}
        if mode is not None:
            body["mode"] = mode
        details = self._request("POST", "/v1/rewards", body)["details"]
        return [[SampleReward.from_dict(d) for d in row] for row in details]

    def group_reward(self, group_id: str, group_size: int, instruction: str, response: str, *,
                     reference: str | None = None, mode: str | None = None, on_timeout: str | None = None,
                     group_timeout_s: float | None = None) -> SampleReward:
        """One sample of a group (/v1/group_reward): the server waits for the group's other members
        (the group barrier) and scores the group in `mode` (default round_robin)."""
        body = {"group_id": group_id, "group_size": group_size, "instruction": instruction, "response": response,
                "reference": reference, "mode": mode, "on_timeout": on_timeout, "group_timeout_s": group_timeout_s}
        return SampleReward.from_dict(self._request("POST", "/v1/group_reward",
                                                    {k: v for k, v in body.items() if v is not None}))

    def health(self) -> dict:
        """The /health body; raises JudgeServerError(503) while the model loads or warms up."""
        return self._request("GET", "/health")

    def _request(self, method: str, path: str, body: Any = None) -> dict:
        for attempt in range(self.retries + 1):
            try:
                return self._request_once(method, path, body)
            except JudgeServerError as e:
                if e.status != 503 or attempt == self.retries:
                    raise
                time.sleep(min(self.max_wait, e.retry_after if e.retry_after is not None else 1.0))
        raise AssertionError("unreachable")

    def _request_once(self, method: str, path: str, body: Any = None) -> dict:
        data = None if body is None else json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json"} if data is not None else {}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.base_url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                message = json.loads(raw).get("error", raw.decode("utf-8", "replace"))
            except (ValueError, AttributeError):
                message = raw.decode("utf-8", "replace") or e.reason
            retry = e.headers.get("Retry-After") if e.headers else None
            try:
                retry_after = float(retry) if retry else None
            except ValueError:  # an HTTP date: not sent by judge-core serve
                retry_after = None
            raise JudgeServerError(e.code, str(message), retry_after) from None
        except urllib.error.URLError as e:
            raise JudgeServerError(0, f"cannot reach {self.base_url}: {e.reason}") from None
