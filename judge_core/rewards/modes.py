"""Reward modes for RL: a group of sampled responses to one instruction -> one reward per response.

Pure Python (no torch): the library, the service, the HTTP client and every trainer adapter use this
one module, so a reward means the same thing on every surface.

Each pair of texts is judged with the dual pass (scoring.py): the sample shown as A (pass "ab") and
shown as B (pass "ba"). For a sample, `p_ab` is its probability of winning when shown first, `p_ba`
when shown second, and `reward = p_mean = (p_ab + p_ba) / 2`, a probability in 0..1. Over several
opponents, `p_ab` and `p_ba` are the means over the opponents.

Modes (`RewardGroup.mode`; None picks anchor when a reference is given, else round_robin):
- anchor:      each sample against the group's reference text (n pairs).
               reward = P(sample beats the reference). Preference-against-reference, as in PAR (arXiv 2502.18770).
- round_robin: every sample against every other (each unordered pair once in both orders, so every
               ordered pair; n(n-1)/2 pairs). reward = mean win probability over the n - 1 others; a
               group's rewards average 0.5. As in Pref-GRPO (arXiv 2508.20751).
- bootstrap:   one member of the group is the temporary reference and every other member is judged
               against it (n - 1 pairs), as in BRPO / Writing-Zero (arXiv 2506.00103). Which member:
               the one whose sha256(seed, instruction, response) is smallest (`bootstrap_pick`): a
               pseudo-random pick that is reproducible, independent of the order the members arrive in
               (so a served group and an in-process group pick the same member) and changes with `seed`.
               The reference member's own reward is 0.5 (a tie with itself; its group-relative
               advantage is the baseline), with opponents = 0 and `reference_index` naming it.
A group of one sample in round_robin (or bootstrap) has nobody to beat: reward 0.5, opponents 0.

A pair the judge cannot score (a response that is not a string, a prompt over the model's context)
is left out of the means of the samples it involves and counted in their `missing`; a sample with no
verdict at all gets reward NaN and `error` (the first failure's message). Nothing disappears: there is
one SampleReward per sample, in input order.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Sequence

MODES = ("anchor", "round_robin", "bootstrap")
NEUTRAL_REWARD = 0.5


def check_mode(mode) -> str | None:
    if mode is not None and mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)} (or None: anchor with a reference, else "
                         f"round_robin), got {mode!r}")
    return mode


@dataclass(frozen=True)
class RewardGroup:
    """Responses sampled for one instruction. `reference` is the anchor text (anchor mode only).
    Responses are not type-checked here: a non-string response becomes that sample's error."""

    instruction: str
    responses: tuple
    reference: str | None = None
    mode: str | None = None
    bootstrap_seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "responses", tuple(self.responses))
        check_mode(self.mode)
        if not self.responses:
            raise ValueError("a reward group needs at least one response")
        if self.mode == "anchor" and self.reference is None:
            raise ValueError("mode 'anchor' needs a reference text to judge each response against")
        if self.mode in ("round_robin", "bootstrap") and self.reference is not None:
            raise ValueError(f"mode {self.mode!r} judges the responses among themselves: a reference is only "
                             "used by mode 'anchor' (leave mode unset or 'anchor', or drop the reference)")

    @property
    def resolved_mode(self) -> str:
        if self.mode is not None:
            return self.mode
        return "anchor" if self.reference is not None else "round_robin"


@dataclass(frozen=True)
class SampleReward:
    """One sample's reward (0..1) and where it came from.

    p_ab / p_ba: P(sample wins) when shown as A / as B, averaged over its opponents; p_mean their mean.
    opponents:   verdicts averaged (anchor: 1; round_robin: n - 1; bootstrap: 1, or 0 for the reference).
    missing:     opponents whose pair could not be judged (left out of the means).
    reference_index: bootstrap only: the member used as the temporary reference, as an index in the
                 group's order (input order; arrival order at the service's group barrier).
    error:       set when the reward is NaN (no verdict at all for this sample).
    """

    reward: float
    p_ab: float
    p_ba: float
    p_mean: float
    opponents: int
    missing: int = 0
    reference_index: int | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        """JSON-safe: NaN becomes null."""
        def num(x: float):
            return None if math.isnan(x) else x

        out = {"reward": num(self.reward), "p_ab": num(self.p_ab), "p_ba": num(self.p_ba),
               "p_mean": num(self.p_mean), "opponents": self.opponents, "missing": self.missing}
        if self.reference_index is not None:
            out["reference_index"] = self.reference_index
        if self.error is not None:
            out["error"] = self.error
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "SampleReward":
        def num(x):
            return math.nan if x is None else float(x)

        return cls(num(data.get("reward")), num(data.get("p_ab")), num(data.get("p_ba")), num(data.get("p_mean")),
                   int(data.get("opponents", 0)), int(data.get("missing", 0)), data.get("reference_index"),
                   data.get("error"))

    @classmethod
    def failed(cls, error: str, opponents: int = 0, missing: int = 0) -> "SampleReward":
        return cls(math.nan, math.nan, math.nan, math.nan, opponents, missing, None, error)


@dataclass(frozen=True)
class Matchup:
    """Pair k of the expansion: response i of group g as response_1 against response j (None: the
    reference). both: response j's reward also counts this verdict (round robin)."""

    group: int
    i: int
    j: int | None
    both: bool = False


def bootstrap_pick(group: RewardGroup) -> int:
    """The member that serves as the temporary reference (see the module docstring)."""
    def key(r: int):
        response = group.responses[r]
        text = response if isinstance(response, str) else repr(response)
        digest = hashlib.sha256(f"{group.bootstrap_seed}\0{group.instruction}\0{text}".encode("utf-8",
                                                                                          "surrogatepass"))
        return digest.digest(), r

    return min(range(len(group.responses)), key=key)


def count_matchups(group: RewardGroup) -> int:
    n = len(group.responses)
    mode = group.resolved_mode
    if mode == "anchor":
        return n
    if mode == "bootstrap":
        return n - 1
    return n * (n - 1) // 2


def expand_groups(groups: Sequence[RewardGroup]) -> tuple[list[tuple], list[Matchup]]:
    """-> (pairs to judge as (instruction, response_1, response_2), what each pair is)."""
    pairs: list[tuple] = []
    matchups: list[Matchup] = []
    for g, group in enumerate(groups):
        n, mode, r = len(group.responses), group.resolved_mode, group.responses
        if mode == "anchor":
            for i in range(n):
                pairs.append((group.instruction, r[i], group.reference))
                matchups.append(Matchup(g, i, None))
        elif mode == "bootstrap":
            ref = bootstrap_pick(group)
            for i in range(n):
                if i != ref:
                    pairs.append((group.instruction, r[i], r[ref]))
                    matchups.append(Matchup(g, i, ref))
        else:
            for i in range(n):
                for j in range(i + 1, n):
                    pairs.append((group.instruction, r[i], r[j]))
                    matchups.append(Matchup(g, i, j, both=True))
    return pairs, matchups


class _Tally:
    __slots__ = ("ab", "ba", "count", "missing", "error")

    def __init__(self):
        self.ab = self.ba = 0.0
        self.count = self.missing = 0
        self.error: str | None = None


def group_rewards(groups: Sequence[RewardGroup], matchups: Sequence[Matchup], scores: Sequence) -> list[
        list[SampleReward]]:
    """scores: a PairScore (percent) per matchup, in the order of `expand_groups`. -> per group, a
    SampleReward per response, in input order."""
    if len(matchups) != len(scores):
        raise ValueError(f"got {len(scores)} scores for {len(matchups)} matchups")
    tallies = [[_Tally() for _ in group.responses] for group in groups]
    for m, s in zip(matchups, scores):
        first = tallies[m.group][m.i]
        second = tallies[m.group][m.j] if m.both else None
        if s.error is not None:
            for t in (first, second):
                if t is not None:
                    t.missing += 1
                    t.error = t.error or s.error
            continue
        # Pass 1 shows response_1 as A, pass 2 shows it as B (scoring.combine_passes).
        first.ab += s.pass1[0] / 100.0
        first.ba += s.pass2[1] / 100.0
        first.count += 1
        if second is not None:
            second.ab += s.pass2[0] / 100.0
            second.ba += s.pass1[1] / 100.0
            second.count += 1
    out: list[list[SampleReward]] = []
    for g, group in enumerate(groups):
        ref = bootstrap_pick(group) if group.resolved_mode == "bootstrap" else None
        row = []
        for r, t in enumerate(tallies[g]):
            if t.count:
                p_ab, p_ba = t.ab / t.count, t.ba / t.count
                p_mean = (p_ab + p_ba) / 2.0
                row.append(SampleReward(p_mean, p_ab, p_ba, p_mean, t.count, t.missing, ref))
            elif t.missing:
                row.append(SampleReward(math.nan, math.nan, math.nan, math.nan, 0, t.missing, ref, t.error))
            else:  # nobody to beat: a round robin of one, or the bootstrap reference itself
                row.append(SampleReward(NEUTRAL_REWARD, NEUTRAL_REWARD, NEUTRAL_REWARD, NEUTRAL_REWARD, 0, 0, ref))
        out.append(row)
    return out
