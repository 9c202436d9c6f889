"""From two candidate logits per pass to the judge's verdict (the card's formula, DESIGN §1).

P(A) = e^lA / (e^lA + e^lB) * 100 for each pass; pass 1 shows (response_1 as A, response_2 as B),
pass 2 the swap; P(response_1 better) = (S1(A) + S2(B)) / 2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class PairScore:
    """The verdict on one pair. Percentages; `p1 + p2 == 100`.

    p1, p2:   P(response_1 better), P(response_2 better), averaged over the two passes.
    pass1:    (P(A), P(B)) of pass 1, where A = response_1.
    pass2:    (P(A), P(B)) of pass 2, where A = response_2.
    logits1, logits2: the raw (logit A, logit B) of each pass.
    tokens:   prompt lengths (pass 1, pass 2) in tokens.
    error:    None, or what was wrong with this pair (then every number is NaN).
    """

    p1: float
    p2: float
    pass1: tuple[float, float]
    pass2: tuple[float, float]
    logits1: tuple[float, float] = (math.nan, math.nan)
    logits2: tuple[float, float] = (math.nan, math.nan)
    tokens: tuple[int, int] = (0, 0)
    error: str | None = field(default=None)

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def failed(cls, error: str, tokens: tuple[int, int] = (0, 0)) -> "PairScore":
        nan2 = (math.nan, math.nan)
        return cls(math.nan, math.nan, nan2, nan2, nan2, nan2, tokens, error)

    def to_dict(self) -> dict:
        if self.error is not None:
            return {"error": self.error}
        return {"p1": self.p1, "p2": self.p2, "pass1": list(self.pass1), "pass2": list(self.pass2)}


def two_way_percent(logit_a: float, logit_b: float) -> tuple[float, float]:
    """(P(A), P(B)) in percent from two logits; the vocabulary normaliser cancels.

    Written as a logistic of the difference so that large logits never overflow.
    """
    if math.isinf(logit_a) and math.isinf(logit_b) and logit_a == logit_b:
        return 50.0, 50.0  # both -inf (e.g. the card's cutoff on both): no information
    d = logit_a - logit_b
    p_a = 1.0 / (1.0 + math.exp(-d)) if d >= 0 else math.exp(d) / (1.0 + math.exp(d))
    return 100.0 * p_a, 100.0 * (1.0 - p_a)


def combine_passes(logits1: tuple[float, float], logits2: tuple[float, float],
                   tokens: tuple[int, int] = (0, 0)) -> PairScore:
    """Dual-pass average: pass 1 has response_1 as A, pass 2 has it as B."""
    pass1 = two_way_percent(*logits1)
    pass2 = two_way_percent(*logits2)
    p1 = (pass1[0] + pass2[1]) / 2.0
    return PairScore(p1=p1, p2=100.0 - p1, pass1=pass1, pass2=pass2, logits1=tuple(map(float, logits1)),
                     logits2=tuple(map(float, logits2)), tokens=tokens)
