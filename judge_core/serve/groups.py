"""The group barrier: RL trainers that send one sample per request (verl's reward loop, OpenRLHF's
per-sample remote reward, slime's remote_rm) still get group rewards (round_robin, bootstrap).

A request names its group (`group_id`) and the group's size. Members wait, bounded by the group's
timeout (counted from its first member's arrival), until `size` members are present; the last one to
arrive starts ONE scoring of the whole group (judge_core.rewards.modes, the same arithmetic as
in-process), and every member reads its own SampleReward. Members are ordered by arrival; the
modes' results for a member do not depend on that order (bootstrap picks its reference by content).

On timeout every waiting member gets GroupTimeout (the route answers with an error, or with the
anchor fallback against the member's reference, by the request's `on_timeout`). A unique group id
(verl's uid) that completed or timed out is remembered (bounded) so a late or retried member gets an
answer at once instead of waiting for a group that will never fill; ids derived from the prompt text
(OpenRLHF, slime: they send no group id) start a new group instead, since the prompt comes back.
"""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from ..rewards.modes import RewardGroup, SampleReward

ScoreGroup = Callable[[RewardGroup], Awaitable[list[SampleReward]]]


class GroupTimeout(Exception):
    """The group did not fill within its timeout (or had already timed out)."""


class GroupMismatch(ValueError):
    """A member disagrees with its group (size, mode, instruction) or arrives after it completed."""


@dataclass
class _Group:
    group_id: str
    size: int
    mode: str
    instruction: str
    timeout_s: float
    started: float = field(default_factory=time.monotonic)
    responses: list[Any] = field(default_factory=list)
    outcome: asyncio.Future | None = None  # -> "complete" or "timeout"
    task: asyncio.Task | None = None       # the group's scoring, once complete
    timer: asyncio.TimerHandle | None = None


class GroupBarrier:
    """One per app; lives on the event loop (no locks: every method runs on the loop's thread).

    max_open_groups bounds the groups waiting at once (a new group beyond it is refused: the caller
    answers 503); remember bounds the finished group ids kept for late members.
    """

    def __init__(self, default_timeout_s: float = 60.0, max_open_groups: int = 4096, remember: int = 65536):
        if not default_timeout_s > 0:
            raise ValueError(f"default_timeout_s must be > 0, got {default_timeout_s!r}")
        self.default_timeout_s = default_timeout_s
        self.max_open_groups = max_open_groups
        self.remember = remember
        self._open: dict[str, _Group] = {}
        self._finished: collections.OrderedDict[str, str] = collections.OrderedDict()  # id -> "complete"/"timeout"
        self.completed = 0
        self.timed_out = 0

    @property
    def open_groups(self) -> int:
        return len(self._open)

    async def join(self, group_id: str, size: int, mode: str, instruction: str, response: Any,
                   score_group: ScoreGroup, timeout_s: float | None = None, reuse_ids: bool = False) -> SampleReward:
        """Wait for the group, score it once, return this member's SampleReward.
        reuse_ids: a finished id starts a new group (ids derived from the prompt text recur every epoch);
        otherwise (unique ids such as verl's uid) a late member of a finished group is answered at once.
        Raises GroupTimeout, GroupMismatch, OverflowError (too many open groups), or whatever
        `score_group` raised (for every member of the group)."""
        loop = asyncio.get_running_loop()
        group = self._open.get(group_id)
        if group is None:
            state = None if reuse_ids else self._finished.get(group_id)
            if state == "timeout":
                raise GroupTimeout(f"group {group_id!r} already timed out before it had {size} members")
            if state == "complete":
                raise GroupMismatch(f"group {group_id!r} is already complete: it had its {size} members")
            if len(self._open) >= self.max_open_groups:
                raise OverflowError(f"{len(self._open)} groups are waiting for members (max_open_groups="
                                    f"{self.max_open_groups})")
            timeout_s = self.default_timeout_s if timeout_s is None else timeout_s
            group = _Group(group_id, size, mode, instruction, timeout_s, outcome=loop.create_future())
            group.timer = loop.call_later(timeout_s, self._expire, group)
            self._open[group_id] = group
        else:
            for name, mine, theirs in (("group_size", size, group.size), ("mode", mode, group.mode),
                                       ("instruction", instruction, group.instruction)):
                if mine != theirs:
                    shown = (lambda v: repr(v[:60] + "..." if len(v) > 60 else v)) if name == "instruction" else repr
                    raise GroupMismatch(f"group {group_id!r}: this member's {name} {shown(mine)} differs from the "
                                        f"group's {shown(theirs)}")
        index = len(group.responses)
        group.responses.append(response)
        if len(group.responses) == group.size:
            self._close(group, "complete")
            group.task = asyncio.ensure_future(self._score(group, score_group))
        outcome = await asyncio.shield(group.outcome)
        if outcome == "timeout":
            raise GroupTimeout(f"group {group_id!r} got {len(group.responses)} of {group.size} members within "
                               f"{group.timeout_s:g} s")
        rewards = await asyncio.shield(group.task)
        return rewards[index]

    async def _score(self, group: _Group, score_group: ScoreGroup) -> list[SampleReward]:
        try:
            return await score_group(RewardGroup(group.instruction, tuple(group.responses), mode=group.mode))
        except BaseException:
            # Scoring failed (queue full, shutting down): retried members may form the group again.
            self._finished.pop(group.group_id, None)
            raise

    def _expire(self, group: _Group) -> None:
        if self._open.get(group.group_id) is group:
            self._close(group, "timeout")

    def _close(self, group: _Group, outcome: str) -> None:
        if group.timer is not None:
            group.timer.cancel()
        self._open.pop(group.group_id, None)
        self._finished[group.group_id] = outcome
        while len(self._finished) > self.remember:
            self._finished.popitem(last=False)
        if outcome == "complete":
            self.completed += 1
        else:
            self.timed_out += 1
        group.outcome.set_result(outcome)
