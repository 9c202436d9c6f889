"""How far one set of judge verdicts moved from another (fp8 against bf16 / fp32): the bench reuses it."""

from __future__ import annotations

import math
from typing import Sequence


def compare_scores(a: Sequence, b: Sequence) -> dict:
    """Two PairScore lists for the same pairs in the same order -> drift of b against a.

    max_abs_dp1 / mean_abs_dp1: |p1_b - p1_a| in percentage points over pairs both scored.
    verdict_agreement: share of those pairs where both pick the same side (p1 > 50, p1 < 50 or a tie).
    n: pairs compared; failed: pairs where either side has an error (not compared, counted here).
    """
    if len(a) != len(b):
        raise ValueError(f"compare_scores: {len(a)} scores against {len(b)}: expected the same pairs in both")
    diffs, agree, failed = [], 0, 0
    for sa, sb in zip(a, b):
        if sa.error is not None or sb.error is not None or math.isnan(sa.p1) or math.isnan(sb.p1):
            failed += 1
            continue
        diffs.append(abs(sb.p1 - sa.p1))
        agree += (sa.p1 > 50) - (sa.p1 < 50) == (sb.p1 > 50) - (sb.p1 < 50)
    n = len(diffs)
    return {"n": n, "failed": failed, "max_abs_dp1": max(diffs) if n else math.nan,
            "mean_abs_dp1": sum(diffs) / n if n else math.nan, "verdict_agreement": agree / n if n else math.nan}
