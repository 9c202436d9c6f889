"""Label logits -> a pointwise result: the spec's readout and aggregate (pairwise kinds use scoring.py).

readout "softmax": the backend returns the label logits; probabilities are their softmax (the vocabulary
normaliser cancels). readout "full": the backend returns full-vocabulary log-probabilities of the labels
(logit - logsumexp over the whole vocabulary); probabilities are their exp, and `mass` (their sum) says how
much of the next-token distribution the labels hold. Aggregates read the distribution renormalised over the
labels: expected = sum p_i v_i / sum p_i; argmax = the value of the likeliest label; p_first = p_0 / sum p_i.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

from .spec import JudgeSpec


@dataclass(frozen=True)
class PointScore:
    """The verdict on one pointwise item.

    score:    the spec's aggregate (expected value, argmax value, or P(first label) in [0, 1]).
    probs:    each label's probability, in label order: over the labels (softmax) or over the vocabulary (full).
    mass:     full readout: the labels' share of the next-token distribution; None for softmax.
    logits:   what the backend returned per label (logits, or full-vocabulary log-probabilities).
    tokens:   the prompt's length in tokens.
    error:    None, or what was wrong with this item (then every number is NaN).
    """

    score: float
    probs: tuple[float, ...]
    mass: float | None = None
    logits: tuple[float, ...] = ()
    tokens: int = 0
    error: str | None = field(default=None)

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def failed(cls, error: str, n_labels: int = 0, tokens: int = 0) -> "PointScore":
        return cls(math.nan, (math.nan,) * n_labels, None, (math.nan,) * n_labels, tokens, error)

    def to_dict(self, labels: Sequence[str] | None = None) -> dict:
        if self.error is not None:
            return {"error": self.error}
        out = {"score": self.score, "probs": (dict(zip(labels, self.probs)) if labels is not None else list(self.probs))}
        if self.mass is not None:
            out["mass"] = self.mass
        return out


def label_probabilities(spec: JudgeSpec, row: Sequence[float]) -> tuple[tuple[float, ...], float | None]:
    """(probabilities per label, mass or None) from one backend row."""
    values = [float(x) for x in row]
    if spec.readout == "full":
        probs = tuple(math.exp(x) for x in values)
        return probs, sum(probs)
    top = max(values)
    weights = [math.exp(x - top) for x in values]
    total = sum(weights)
    return tuple(w / total for w in weights), None


def aggregate(spec: JudgeSpec, probs: Sequence[float]) -> float:
    total = sum(probs)
    if not total > 0:
        return math.nan  # no mass on any label (underflow): no verdict rather than a made-up one
    if spec.aggregate == "expected":
        return sum(p * v for p, v in zip(probs, spec.label_values)) / total
    if spec.aggregate == "argmax":
        best = max(range(len(probs)), key=lambda i: (probs[i], -i))
        return spec.label_values[best]
    return probs[0] / total


def point_score(spec: JudgeSpec, row: Sequence[float], tokens: int = 0) -> PointScore:
    probs, mass = label_probabilities(spec, row)
    return PointScore(score=aggregate(spec, probs), probs=probs, mass=mass, logits=tuple(float(x) for x in row),
                      tokens=tokens)


def pair_from_passes(spec: JudgeSpec, rows: Sequence[Sequence[float]], tokens: Sequence[int]):
    """A pairwise kind's PairScore from its passes' two label values each (logits or logprobs: the softmax
    over two is the same). With swap, the card's dual-pass average; without, pass 1 alone (pass2 then
    repeats it mirrored, so that p1 = P(A) of pass 1)."""
    from ..scoring import combine_passes

    first = tuple(float(x) for x in rows[0])
    if len(rows) > 1:
        return combine_passes(first, tuple(float(x) for x in rows[1]), (tokens[0], tokens[1]))
    return combine_passes(first, first[::-1], (tokens[0], tokens[0]))
