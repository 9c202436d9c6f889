"""Swiss pairing: entrants with similar current ratings meet, no one meets the same opponent twice.

Rule (one round):
1. Standings: sort by rating, highest first; equal ratings are ordered by a tiebreak fixed once per
   tournament (a seeded random permutation), so round 1 is a random draw and reruns repeat it.
2. Odd count: the bye goes to the lowest-standing entrant among those with the fewest byes so far.
   A bye is a round off: the rating does not move.
3. The top unpaired entrant meets the next-highest one it has not met yet; a depth-first search
   backs up when the tail cannot be paired without a rematch (bounded by `search_budget` steps).
4. If no rematch-free pairing is found (more rounds than entrants - 1, or the budget ran out), pair
   greedily by standing, preferring unplayed opponents, and report the rematches.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

SEARCH_BUDGET = 20_000  # DFS steps; ample for tens of entrants, and it keeps a hopeless round from hanging


@dataclass(frozen=True)
class RoundPairing:
    """pairs: (higher standing, lower standing) per game; bye: who sits out; rematches: games repeated."""

    pairs: list[tuple[Hashable, Hashable]]
    bye: Hashable | None
    rematches: int


def standings(entrants: Sequence[Hashable], ratings: Mapping[Hashable, float],
              tiebreak: Mapping[Hashable, float]) -> list[Hashable]:
    """Entrants from highest to lowest rating; `tiebreak` (lower first) orders equal ratings."""
    return sorted(entrants, key=lambda e: (-ratings[e], tiebreak[e]))


def _pair_without_rematch(order: list, played: set[frozenset], budget: list[int]) -> list[tuple] | None:
    if not order:
        return []
    top = order[0]
    for j in range(1, len(order)):
        budget[0] -= 1
        if budget[0] < 0:
            return None
        other = order[j]
        if frozenset((top, other)) in played:
            continue
        rest = _pair_without_rematch(order[1:j] + order[j + 1:], played, budget)
        if rest is not None:
            return [(top, other)] + rest
    return None


def _pair_greedy(order: list, played: set[frozenset]) -> tuple[list[tuple], int]:
    remaining, pairs, rematches = list(order), [], 0
    while remaining:
        top = remaining.pop(0)
        j = next((i for i, other in enumerate(remaining) if frozenset((top, other)) not in played), 0)
        other = remaining.pop(j)
        rematches += frozenset((top, other)) in played
        pairs.append((top, other))
    return pairs, rematches


def swiss_round(entrants: Sequence[Hashable], ratings: Mapping[Hashable, float], played: set[frozenset],
                bye_counts: Mapping[Hashable, int], tiebreak: Mapping[Hashable, float],
                search_budget: int = SEARCH_BUDGET) -> RoundPairing:
    """Pair one Swiss round. `played` holds frozenset({a, b}) for every game so far (not modified)."""
    if len(entrants) < 2:
        raise ValueError(f"a Swiss round needs at least 2 entrants, got {len(entrants)}")
    order = standings(entrants, ratings, tiebreak)
    bye = None
    if len(order) % 2 == 1:
        fewest = min(bye_counts.get(e, 0) for e in order)
        bye = next(e for e in reversed(order) if bye_counts.get(e, 0) == fewest)
        order.remove(bye)
    pairs = _pair_without_rematch(order, played, [search_budget])
    if pairs is not None:
        return RoundPairing(pairs, bye, 0)
    pairs, rematches = _pair_greedy(order, played)
    return RoundPairing(pairs, bye, rematches)
