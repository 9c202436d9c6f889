"""Elo with soft outcomes: the judge's probability is the score, not just who won.

A game between x (shown as response_1) and y scores s = p1 / 100 for x and 1 - s for y.
Expected score E_x = 1 / (1 + 10 ** ((R_y - R_x) / 400)); update R_x += K (s - E_x), R_y -= K (s - E_x),
so a game moves no rating points in or out of the pool.
"""

from __future__ import annotations

INITIAL_RATING = 1500.0
K_FACTOR = 32.0  # the usual chess value; with soft outcomes a 60/40 verdict moves at most 0.1 K = 3.2 points
ELO_SCALE = 400.0  # a 400-point gap means 10:1 expected odds


def expected_score(rating_x: float, rating_y: float) -> float:
    """Expected score of x against y, in [0, 1]."""
    return 1.0 / (1.0 + 10.0 ** ((rating_y - rating_x) / ELO_SCALE))


def elo_update(rating_x: float, rating_y: float, score_x: float, k_factor: float = K_FACTOR) -> tuple[float, float]:
    """New (R_x, R_y) after x scored `score_x` in [0, 1] against y."""
    if not 0.0 <= score_x <= 1.0:
        raise ValueError(f"an Elo score must lie in [0, 1], got {score_x!r}")
    delta = k_factor * (score_x - expected_score(rating_x, rating_y))
    return rating_x + delta, rating_y - delta
