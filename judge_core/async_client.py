"""An asyncio client for `judge-core serve` (standard library only), for trainers' async reward hooks.

    client = AsyncJudgeClient("http://127.0.0.1:8000")
    reward = await client.group_reward("uid-7", 8, instruction, response)     # a SampleReward

Why not a thread around JudgeClient: a group barrier keeps each member's request open until the
group is complete, so a bounded thread pool could fill with members waiting for members queued
behind them. Here every request is a coroutine on the caller's loop, one connection each
(`Connection: close`), so any number can wait at once.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any, Sequence
from urllib.parse import urlsplit

from .client import JudgeServerError
from .rewards.modes import SampleReward


class AsyncJudgeClient:
    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 600.0):
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be http://HOST[:PORT] or https://..., got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.tls = parts.scheme == "https"
        self.prefix = parts.path.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout

    async def sample_rewards(self, groups: Sequence[dict], mode: str | None = None) -> list[list[SampleReward]]:
        body: dict = {"groups": list(groups)}
        if mode is not None:
            body["mode"] = mode
        details = (await self.post("/v1/rewards", body))["details"]
        return [[SampleReward.from_dict(d) for d in row] for row in details]

    async def group_reward(self, group_id: str, group_size: int, instruction: str, response: str, *,
                           reference: str | None = None, mode: str | None = None, on_timeout: str | None = None,
                           group_timeout_s: float | None = None) -> SampleReward:
        body = {"group_id": group_id, "group_size": group_size, "instruction": instruction, "response": response,
                "reference": reference, "mode": mode, "on_timeout": on_timeout, "group_timeout_s": group_timeout_s}
        return SampleReward.from_dict(await self.post("/v1/group_reward", {k: v for k, v in body.items()
                                                                            if v is not None}))

    async def post(self, path: str, body: Any) -> Any:
        return await asyncio.wait_for(self._post(path, body), self.timeout)

    async def _post(self, path: str, body: Any) -> Any:
        data = json.dumps(body).encode("utf-8")
        head = [f"POST {self.prefix}{path} HTTP/1.1", f"Host: {self.host}:{self.port}",
                "Content-Type: application/json", f"Content-Length: {len(data)}", "Connection: close"]
        if self.api_key:
            head.append(f"Authorization: Bearer {self.api_key}")
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port,
                                                           ssl=ssl.create_default_context() if self.tls else None)
        except OSError as e:
            raise JudgeServerError(0, f"cannot reach {self.base_url}: {e}") from None
        try:
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + data)
            await writer.drain()
            status_line = await reader.readline()
            headers: dict[str, str] = {}
            while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            if "content-length" in headers:
                raw = await reader.readexactly(int(headers["content-length"]))
            elif headers.get("transfer-encoding", "").lower() == "chunked":
                raw = await _read_chunked(reader)
            else:
                raw = await reader.read()
        finally:
            writer.close()
        try:
            status = int(status_line.split()[1])
        except (IndexError, ValueError):
            raise JudgeServerError(0, f"{self.base_url} sent no HTTP status line: {status_line[:80]!r}") from None
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = None
        if status >= 400:
            message = payload.get("error", raw.decode("utf-8", "replace")) if isinstance(payload, dict) else \
                raw.decode("utf-8", "replace")
            retry = headers.get("retry-after")
            raise JudgeServerError(status, str(message), float(retry) if retry else None)
        return payload


async def _read_chunked(reader) -> bytes:
    out = bytearray()
    while True:
        size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
        if size == 0:
            await reader.readline()
            return bytes(out)
        out += await reader.readexactly(size)
        await reader.readline()
