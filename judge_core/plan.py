"""Prompts -> batches: dual-pass expansion, length sort, token-budget batches, order restore.

Pure Python: no torch, nothing of ours imported.
"""

from __future__ import annotations

from typing import Sequence


def dual_pass(pair: tuple[str, str, str]) -> tuple[tuple[str, str, str], tuple[str, str, str]]:
    """Pass 1 shows (response_1 as A, response_2 as B); pass 2 the swap."""
    instruction, r1, r2 = pair
    return (instruction, r1, r2), (instruction, r2, r1)


def batch_cost(lengths: Sequence[int], counts_padding: bool) -> int:
    """Tokens a batch costs: rows x longest when padded, the sum when packed."""
    if not lengths:
        return 0
    return len(lengths) * max(lengths) if counts_padding else sum(lengths)


def plan_batches(lengths: Sequence[int], token_budget: int, counts_padding: bool = True) -> list[list[int]]:
    """Group sequence indices into batches whose cost stays within `token_budget`.

    Longest first (sorted, so a padded batch wastes little); a sequence longer than the budget runs
    alone. Every index appears exactly once. Ties keep input order, so plans are deterministic.
    """
    if token_budget < 1:
        raise ValueError(f"token_budget must be a positive number of tokens, got {token_budget}")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    total = 0
    for i in order:
        n = lengths[i]
        if n < 1:
            raise ValueError(f"sequence {i} is empty: every prompt has at least one token")
        # Lengths arrive in decreasing order, so the first row of a padded batch is its longest.
        new_cost = (len(current) + 1) * max(longest, n) if counts_padding else total + n
        if current and new_cost > token_budget:
            batches.append(current)
            current, longest, total = [], 0, 0
        current.append(i)
        longest = max(longest, n)
        total += n
    if current:
        batches.append(current)
    return batches
