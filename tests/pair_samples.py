"""Random judge pairs that stress the prompt path: unicode, curly quotes, empty strings, mixed lengths."""

from __future__ import annotations

import random

WORDS = ("the rain fell “softly” on a town — café naïve 日本語 façade ‘quoted’ emoji 🙂 tab\tnew\nline "
         "backslash\\ and \"straight\" quotes, numbers 1234567 and a very long word "
         "antidisestablishmentarianism").split(" ")


def random_text(rng: random.Random, max_words: int) -> str:
    n = rng.choice([0, 1, 2, rng.randint(0, max_words), max_words])
    return " ".join(rng.choice(WORDS) for _ in range(n))


def random_pairs(n: int, seed: int = 0, max_words: int = 120) -> list[tuple[str, str, str]]:
    rng = random.Random(seed)
    pairs = [("", "", ""), ("Write “a” story.", "x" * 3, "y " * max_words)]
    while len(pairs) < n:
        pairs.append((random_text(rng, 20), random_text(rng, max_words), random_text(rng, max_words)))
    return pairs[:n]


# The pairs every fp32 parity test against the reference twin runs on: one list, so the twin's results
# (a session fixture, conftest.reference_scores) are computed once per checkpoint for all of them.
PARITY_PAIRS = random_pairs(24, seed=1)
