"""Speed and accuracy figures of a system run, and the card's metrics, each defined as the card does.

Verdict of a pair: response 1 if p1 > 50, response 2 if p1 < 50, a tie at exactly 50 (which the
card's -100 cutoff produces whenever both candidates miss the top 10).

The card's metrics on labelled pairs (label = the response with the higher item_score):
- strict accuracy: share of pairs where the verdict (p1 > 50 means response 1) names the
  better-labelled response; a tie counts as wrong ("strict").
- positional consistency: share of pairs where the two passes prefer the same *response*: pass 1
  prefers response 1 iff P1(A) > 50, pass 2 prefers response 1 iff P2(B) > 50.
- mean target probability mass: mean over pairs of the probability given to the better-labelled
  response, averaged over the two passes (p1 if response 1 is better, else p2), in percent.
- mean non-target probability mass: 100 minus the target mass.
Top-10 cutoff effect: rerun the reference with the card's `logprobs=10` rule (a candidate outside
the top 10 gets logprob -100) and count how often a pass verdict or a pair verdict changes.
"""

from __future__ import annotations

import math
from typing import Sequence

from judge_core.scoring import PairScore

from .workloads import BenchPair

MISSING_LOGPROB = -100.0


def verdict(p1: float) -> int:
    """1, 2, or 0 for a tie at 50."""
    return 1 if p1 > 50.0 else 2 if p1 < 50.0 else 0


def _pass_verdicts(s: PairScore) -> tuple[int, int]:
    """Which response each pass prefers: pass 1 shows response 1 as A, pass 2 shows it as B."""
    return verdict(s.pass1[0]), verdict(s.pass2[1])


# ---------------------------------------------------------------------------------------------
# Speed

def speed_metrics(stats: dict, seconds: float, n_pairs: int, lengths: Sequence[int] | None = None,
                  cost_model=None, peak_flops: float | None = None) -> dict:
    """prompt tokens/s, pairs/s, padding efficiency, seconds per batch, MFU (against `peak_flops`)."""
    real = int(stats.get("real_tokens") or 0)
    computed = int(stats.get("computed_tokens") or real)
    batches = int(stats.get("batches") or 0)
    out = {
        "seconds": seconds,
        "prompt_tokens": real,
        "computed_tokens": computed,   # padding counted (hf); shared prefixes counted once (packed)
        "prompt_tokens_per_s": real / seconds if seconds > 0 else math.nan,
        "pairs_per_s": n_pairs / seconds if seconds > 0 else math.nan,
        # packed rows compute no padding; shared prefixes make computed < real (see computed_tokens)
        "padding_efficiency": min(1.0, real / computed) if computed else math.nan,
        "batches": batches,
        "seconds_per_batch": seconds / batches if batches else math.nan,
    }
    if cost_model is not None and lengths and peak_flops and seconds > 0:
        flops = cost_model.total_flops(lengths)
        out["model_tflops"] = flops / 1e12
        out["achieved_tflops_per_s"] = flops / seconds / 1e12
        out["mfu"] = flops / seconds / peak_flops
    return out


# ---------------------------------------------------------------------------------------------
# Accuracy against a reference run

def agreement(scores: Sequence[PairScore], reference: Sequence[PairScore]) -> dict:
    """max / mean |delta p1| and verdict agreement over pairs both runs scored."""
    if len(scores) != len(reference):
        raise ValueError(f"runs differ in length: {len(scores)} scores vs {len(reference)} reference scores")
    both = [(s, r) for s, r in zip(scores, reference) if s.ok and r.ok]
    if not both:
        return {"pairs_compared": 0}
    deltas = [abs(s.p1 - r.p1) for s, r in both]
    return {
        "pairs_compared": len(both),
        "max_abs_delta_p1": max(deltas),
        "mean_abs_delta_p1": sum(deltas) / len(deltas),
        "verdict_agreement": sum(verdict(s.p1) == verdict(r.p1) for s, r in both) / len(both),
    }


def card_metrics(scores: Sequence[PairScore], pairs: Sequence[BenchPair]) -> dict:
    """The card's metrics over labelled, successfully scored pairs (see the module docstring)."""
    rows = [(s, p.label) for s, p in zip(scores, pairs) if s.ok and p.label is not None]
    if not rows:
        return {"labelled_pairs": 0}
    n = len(rows)
    strict = sum(verdict(s.p1) == label for s, label in rows) / n
    consistent = sum(_pass_verdicts(s)[0] == _pass_verdicts(s)[1] for s, _ in rows) / n
    target = sum((s.p1 if label == 1 else s.p2) for s, label in rows) / n
    return {"labelled_pairs": n, "strict_accuracy": strict, "positional_consistency": consistent,
            "mean_target_mass": target, "mean_non_target_mass": 100.0 - target,
            "position_1_share": sum(verdict(s.pass1[0]) == 1 for s, _ in rows) / n}


def cutoff_effect(exact: Sequence[PairScore], cutoff: Sequence[PairScore]) -> dict:
    """How often the card's top-10 cutoff changes a verdict (exact logits vs the cutoff rule)."""
    both = [(e, c) for e, c in zip(exact, cutoff) if e.ok and c.ok]
    if not both:
        return {"pairs_compared": 0}
    n = len(both)
    pass_changes = sum(a != b for e, c in both for a, b in zip(_pass_verdicts(e), _pass_verdicts(c)))
    missing = [x for _, c in both for x in (*c.logits1, *c.logits2)]
    passes_missing_any = sum(any(v <= MISSING_LOGPROB for v in logits) for _, c in both
                             for logits in (c.logits1, c.logits2))
    return {
        "pairs_compared": n,
        "pair_verdict_changed": sum(verdict(e.p1) != verdict(c.p1) for e, c in both) / n,
        "pass_verdict_changed": pass_changes / (2 * n),
        "passes_with_a_candidate_missing": passes_missing_any / (2 * n),
        "candidates_missing": sum(v <= MISSING_LOGPROB for v in missing) / len(missing),
        "max_abs_delta_p1": max(abs(e.p1 - c.p1) for e, c in both),
    }
