"""Statistics of a judge's tournaments (DESIGN §6): separability of writers, and the judge's biases.

Separability works on Elo distributions, one group per writer model (Option A: one Elo per prompt;
Option B: one Elo per bootstrap sample):
- omega-squared, the one-way ANOVA effect size: w2 = (SS_between - (k-1) MS_within) / (SS_total + MS_within),
  k groups, N values, MS_within = SS_within / (N - k). It can be slightly negative when groups do not
  differ; it is reported as computed, not clipped.
- Cliff's delta of groups x, y: (#{x_i > y_j} - #{x_i < y_j}) / (|x| |y|), in [-1, 1]. We report the mean
  of |delta| over ALL unordered writer pairs {x, y}, x != y (k (k - 1) / 2 pairs), not just neighbours.
- combined = ((0.5 w2 + 0.5 mean|delta|) / 0.75) x 100, the card's formula (it may exceed 100).

Biases work on PairScores (only pairs without error):
- positional: of all passes (two per pair), the share where the response in position 1 (shown as "A")
  got P > 50; exact 50/50 passes are ties and left out of the share (their count is reported).
- length: lengths in CHARACTERS of the texts judged (the runner adds a second view in whitespace-split
  words, since --max-chars truncation makes character lengths equal). Over pairs of unequal length, the longer's win rate
  (P(longer) > 50 wins, exactly 50 counts half) and its mean probability margin
  P(longer) - P(shorter) in percentage points (0 = no length preference, range -100..100).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np


def omega_squared(groups: Sequence[Sequence[float]]) -> float:
    """One-way ANOVA omega-squared over `groups` (each a list of values). NaN when undefined."""
    arrays = [np.asarray(g, dtype=np.float64) for g in groups if len(g) > 0]
    k = len(arrays)
    n_total = sum(a.size for a in arrays)
    if k < 2 or n_total <= k:
        return math.nan  # needs two groups and at least one within-group degree of freedom
    values = np.concatenate(arrays)
    grand_mean = values.mean()
    ss_between = sum(a.size * (a.mean() - grand_mean) ** 2 for a in arrays)
    ss_within = sum(((a - a.mean()) ** 2).sum() for a in arrays)
    ss_total = ss_between + ss_within
    ms_within = ss_within / (n_total - k)
    denominator = ss_total + ms_within
    if denominator == 0.0:
        return math.nan  # every value equal: nothing to separate
    return float((ss_between - (k - 1) * ms_within) / denominator)


def cliffs_delta(x: Sequence[float], y: Sequence[float]) -> float:
    """Cliff's delta of x over y: P(x > y) - P(x < y) over all |x| |y| cross pairs."""
    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if xs.size == 0 or ys.size == 0:
        raise ValueError(f"Cliff's delta needs two non-empty samples, got sizes {xs.size} and {ys.size}")
    return float(np.sign(xs[:, None] - ys[None, :]).mean())


def mean_abs_cliffs_delta(groups: Mapping[str, Sequence[float]]) -> tuple[float, int]:
    """(mean |Cliff's delta| over all unordered pairs of non-empty groups, number of pairs)."""
    names = [name for name, g in groups.items() if len(g) > 0]
    deltas = [abs(cliffs_delta(groups[a], groups[b])) for i, a in enumerate(names) for b in names[i + 1:]]
    return (float(np.mean(deltas)) if deltas else math.nan), len(deltas)


def combined_separability(omega2: float, mean_abs_delta: float) -> float:
    """The card's combined score: ((0.5 w2 + 0.5 d) / 0.75) x 100."""
    return (0.5 * omega2 + 0.5 * mean_abs_delta) / 0.75 * 100.0


def separability(groups: Mapping[str, Sequence[float]]) -> dict:
    """omega-squared, mean |Cliff's delta| (all unordered writer pairs) and the combined score."""
    omega2 = omega_squared(list(groups.values()))
    delta, n_pairs = mean_abs_cliffs_delta(groups)
    return {"omega_squared": omega2, "mean_abs_cliffs_delta": delta, "cliffs_delta_pairs": n_pairs,
            "cliffs_delta_pairs_rule": "all unordered writer pairs", "combined": combined_separability(omega2, delta)}


def elo_summary(groups: Mapping[str, Sequence[float]]) -> list[dict]:
    """Per writer: mean, spread (sample std, ddof=1; 0 with one value) and 2.5/97.5 percentiles, best first."""
    rows = []
    for writer, values in groups.items():
        a = np.asarray(values, dtype=np.float64)
        if a.size == 0:
            continue
        rows.append({"writer": writer, "elo_mean": float(a.mean()),
                     "elo_std": float(a.std(ddof=1)) if a.size > 1 else 0.0,
                     "elo_p2_5": float(np.percentile(a, 2.5)), "elo_p97_5": float(np.percentile(a, 97.5)),
                     "samples": int(a.size)})
    rows.sort(key=lambda r: (-r["elo_mean"], r["writer"]))
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    return rows


def positional_bias(scores: Iterable) -> dict:
    """Share of passes won by position 1 (the "A" slot) over PairScores without error."""
    p_first = []
    consistent = 0
    n_pairs = 0
    for s in scores:
        if not s.ok:
            continue
        n_pairs += 1
        p_first.extend((s.pass1[0], s.pass2[0]))  # pass 1 shows response_1 first, pass 2 response_2
        # consistent: both passes prefer the same text (pass 2's P(B) is response_1's probability)
        consistent += (s.pass1[0] > 50.0 and s.pass2[1] > 50.0) or (s.pass1[0] < 50.0 and s.pass2[1] < 50.0)
    a = np.asarray(p_first, dtype=np.float64)
    wins, ties = int((a > 50.0).sum()), int((a == 50.0).sum())
    decided = a.size - ties
    return {"pairs": n_pairs, "passes": int(a.size), "position1_wins": wins, "ties": ties,
            "position1_win_share": wins / decided if decided else math.nan,
            "mean_p_position1": float(a.mean()) if a.size else math.nan,
            "consistent_pair_share": consistent / n_pairs if n_pairs else math.nan}


def length_bias(judged: Iterable[tuple[int, int, float]]) -> dict:
    """Longer-response win rate and mean margin from (length_1, length_2, p1) per judged pair.

    Lengths are whatever unit the caller measured (the runner passes characters).
    """
    longer_p = []
    equal = 0
    for len1, len2, p1 in judged:
        if len1 == len2:
            equal += 1
            continue
        longer_p.append(p1 if len1 > len2 else 100.0 - p1)
    a = np.asarray(longer_p, dtype=np.float64)
    if a.size == 0:
        return {"pairs": 0, "equal_length_pairs": equal, "longer_win_rate": math.nan,
                "mean_margin_longer": math.nan, "mean_p_longer": math.nan}
    wins = (a > 50.0).sum() + 0.5 * (a == 50.0).sum()
    return {"pairs": int(a.size), "equal_length_pairs": equal, "longer_win_rate": float(wins / a.size),
            "mean_margin_longer": float((2.0 * a - 100.0).mean()), "mean_p_longer": float(a.mean())}


def _average_ranks(values: Sequence[float]) -> np.ndarray:
    a = np.asarray(values, dtype=np.float64)
    order = np.argsort(a, kind="mergesort")
    ranks = np.empty(a.size, dtype=np.float64)
    ranks[order] = np.arange(1, a.size + 1, dtype=np.float64)
    for value in np.unique(a):  # ties share their mean rank
        tied = a == value
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (Pearson on average ranks). NaN when a side is constant."""
    if len(x) != len(y) or len(x) < 2:
        raise ValueError(f"spearman needs two equal-length samples of >= 2 values, got {len(x)} and {len(y)}")
    rx, ry = _average_ranks(x), _average_ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denominator = math.sqrt(float((rx ** 2).sum() * (ry ** 2).sum()))
    return float((rx * ry).sum() / denominator) if denominator else math.nan
