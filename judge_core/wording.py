"""Counts in messages: "1 batch", "2 batches" (one rule for every printed summary)."""

from __future__ import annotations


def plural(n: int, noun: str, many: str | None = None) -> str:
    """"{n} {noun}", the noun in the plural unless n is 1 (many: the plural where the English rule for
    -s / -es does not give it)."""
    if n == 1:
        return f"{n} {noun}"
    if many is None:
        many = noun + ("es" if noun.endswith(("s", "x", "z", "ch", "sh")) else "s")
    return f"{n} {many}"
