"""Parity against the reference twin: one table of tolerances and the deltas every parity test prints.

The reference twin (judge_core.reference.ReferenceJudge: transformers, one prompt at a time, full
vocabulary) is slow; the session fixture `reference_scores` (conftest.py) computes it once per
(checkpoint, pairs) for the whole test run, whichever file asks first.
"""

from __future__ import annotations

# |delta| allowed against the reference twin, in percentage points of p1 / pass P(A) unless said.
TOLERANCES = {
    "fp32": 1e-3,            # any fp32 fast path (batched, packed, shared-prefix, fused, kernel route)
    "fp32_score": 1e-5,      # a pointwise spec's expected score and label probabilities (score units)
}


def max_dp1(got, want) -> float:
    """Largest |delta p1| (pp) over two result lists in the same order."""
    return max(abs(a.p1 - b.p1) for a, b in zip(got, want))


def max_deltas(got, want) -> tuple[float, float]:
    """(max |delta p1|, max |delta pass P(A)|) in pp, both passes."""
    d_p1 = max_dp1(got, want)
    d_pass = max(max(abs(a.pass1[0] - b.pass1[0]), abs(a.pass2[0] - b.pass2[0])) for a, b in zip(got, want))
    return d_p1, d_pass
