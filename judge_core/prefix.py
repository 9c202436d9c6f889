"""Shared prompt prefixes, found on token ids: where prompts fork from each other, the tree of segments that
computes each distinct prefix once, what a batch costs with it, and batches planned around it.

Why token ids and never text: BPE merges across any text boundary, so two prompts that share a text
prefix may not share its tokens; equal ids are what the model sees.

A fork is kept only where it pays, and only at a multiple of `align` tokens (64 by default = the
gated delta rule's chunk size): the suffix then starts on the same chunk grid as the unshared prompt,
so its Gated DeltaNet chunks are exactly those of the unshared run, and the result does not depend
on which batch mates happened to share how much. Every prompt keeps at least its last token as its
own (a prompt equal to another, or a prefix of it, forks before its end), so each prompt's last row
is its own.

Pure Python + numpy: nothing of ours imported (plan.py's floor).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class PrefixPolicy:
    """When to fork: a shared run counts only rounded down to `align` tokens and when >= `min_shared`."""

    min_shared: int = 64
    align: int = 64

    def __post_init__(self):
        if not isinstance(self.align, int) or self.align < 1:
            raise ValueError(f"align must be a positive number of tokens, got {self.align!r}")
        if not isinstance(self.min_shared, int) or self.min_shared < 1:
            raise ValueError(f"min_shared must be a positive number of tokens, got {self.min_shared!r}")

    def usable(self, common: int) -> int:
        """The shareable part of a common prefix of `common` tokens."""
        shared = common - common % self.align
        return shared if shared >= self.min_shared else 0


def as_token_array(tokens) -> np.ndarray:
    """int32 token ids (numpy arrays pass through without a copy)."""
    arr = np.asarray(tokens, dtype=np.int32)
    if arr.ndim != 1:
        raise ValueError(f"a prompt's token ids must be one-dimensional, got shape {arr.shape}")
    return arr


def common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    """Number of leading token ids a and b share."""
    m = min(len(a), len(b))
    differ = np.flatnonzero(a[:m] != b[:m])
    return int(differ[0]) if differ.size else m


def sorted_forks(seqs: Sequence[np.ndarray], policy: PrefixPolicy) -> tuple[list[int], list[int]]:
    """(order, shared): the prompts in lexicographic order, and shared[r] = the tokens prompt order[r]
    shares with order[r - 1] (0 for r = 0), as the policy counts them.

    Lexicographic order of the int32 bytes is a valid grouping order: prompts with a common token prefix
    have a common byte prefix, so they sit next to each other, and the tokens two prompts share is the
    minimum of `shared` between them (a trie's depth-first order).
    """
    keys = [s.tobytes() for s in seqs]
    order = sorted(range(len(seqs)), key=keys.__getitem__)
    shared = [0] * len(order)
    for r in range(1, len(order)):
        a, b = seqs[order[r - 1]], seqs[order[r]]
        # Each prompt keeps at least its last token: that row's logits are its own.
        shared[r] = policy.usable(min(common_prefix(a, b), len(a) - 1, len(b) - 1))
    return order, shared


def forked_tokens(seqs: Sequence, policy: PrefixPolicy) -> int:
    """Rows a batch computes with its shared prefixes computed once."""
    arrays = [as_token_array(s) for s in seqs]
    _, shared = sorted_forks(arrays, policy)
    return sum(len(s) for s in arrays) - sum(shared)


@dataclass
class Segment:
    """A run of tokens computed once: tokens [start, end) of prompt `owner`; `parent` is the segment it
    continues (None at the root), `level` its depth in the tree."""

    owner: int
    start: int
    end: int
    level: int
    parent: int | None


@dataclass
class Forest:
    """The segments of a batch (each prompt = the chain of segments from a root to its leaf) and, per
    prompt in batch order, its leaf segment."""

    segments: list[Segment]
    leaf: list[int]

    @property
    def num_levels(self) -> int:
        return 1 + max(s.level for s in self.segments)

    @property
    def num_tokens(self) -> int:
        return sum(s.end - s.start for s in self.segments)


def build_forest(seqs: Sequence[np.ndarray], policy: PrefixPolicy | None) -> Forest:
    """The tree of shared segments over a batch's prompts (int32 arrays); policy None: one segment each.

    Each prompt is cut at every depth where it forks from some other prompt; a cut piece belongs to the
    leftmost prompt (in sorted order) that shares it, which is also the one that computes it. Cut depths
    come from two monotonic-stack passes over `shared` (left and right neighbours); O(N x levels).
    """
    n = len(seqs)
    if policy is None or n < 2:
        return Forest([Segment(i, 0, len(s), 0, None) for i, s in enumerate(seqs)], list(range(n)))
    order, shared = sorted_forks(seqs, policy)
    # Left pass: stacks of (depth, leftmost sorted position sharing that depth) with rising depths.
    left: list[list[tuple[int, int]]] = [[] for _ in range(n)]
    stack: list[tuple[int, int]] = []
    for r in range(1, n):
        depth, start = shared[r], r - 1
        while stack and stack[-1][0] >= depth:
            start = stack.pop()[1]
        stack.append((depth, start))
        left[r] = [entry for entry in stack if entry[0] > 0]
    # Right pass: the depths at which a later prompt forks from this one.
    right: list[list[int]] = [[] for _ in range(n)]
    stack_r: list[int] = []
    for r in range(n - 2, -1, -1):
        depth = shared[r + 1]
        while stack_r and stack_r[-1] >= depth:
            stack_r.pop()
        stack_r.append(depth)
        right[r] = [d for d in stack_r if d > 0]

    segments: list[Segment] = []
    made: dict[tuple[int, int], int] = {}     # (sorted owner position, start depth) -> segment index
    leaf = [0] * n
    for r in range(n):
        i = order[r]
        cuts = sorted({0, len(seqs[i]), *(d for d, _ in left[r]), *right[r]})
        parent = None
        for level in range(len(cuts) - 1):
            lo, hi = cuts[level], cuts[level + 1]
            # The leftmost prompt sharing all of [lo, hi): the lowest left entry reaching depth hi.
            owner = next((start for d, start in left[r] if d >= hi), r)
            key = (owner, lo)
            if key not in made:
                made[key] = len(segments)
                segments.append(Segment(order[owner], lo, hi, level, parent))
            parent = made[key]
        leaf[i] = parent
    return Forest(segments, leaf)


def plan_shared_batches(seqs: Sequence, token_budget: int, policy: PrefixPolicy) -> list[list[int]]:
    """Batches of prompt indices whose cost, shared prefixes counted once, stays within `token_budget`.

    Prompts that share a prefix are planned next to each other (a group); groups run longest first, so a
    batch holds prompts of similar length (the chunked scan steps as far as the longest). A group larger
    than the budget continues in the next batch, which computes the prefix again. A prompt longer than
    the budget runs alone. Deterministic: ties keep input order.
    """
    if token_budget < 1:
        raise ValueError(f"token_budget must be a positive number of tokens, got {token_budget}")
    arrays = [as_token_array(s) for s in seqs]
    for i, s in enumerate(arrays):
        if len(s) < 1:
            raise ValueError(f"sequence {i} is empty: every prompt has at least one token")
    order, shared = sorted_forks(arrays, policy)
    groups: list[list[int]] = []                      # runs of sorted positions joined by a shared prefix
    for r in range(len(order)):
        if r == 0 or shared[r] == 0:
            groups.append([])
        groups[-1].append(r)
    groups.sort(key=lambda g: (-max(len(arrays[order[r]]) for r in g), min(order[r] for r in g)))
    batches: list[list[int]] = []
    current: list[int] = []
    total = 0
    for group in groups:
        for k, r in enumerate(group):
            i = order[r]
            # The prefix this prompt shares is free only if its sorted neighbour is in this batch.
            cost = len(arrays[i]) - (shared[r] if k > 0 and current and current[-1] == order[group[k - 1]] else 0)
            if current and total + cost > token_budget:
                batches.append(current)
                current, total, cost = [], 0, len(arrays[i])
            current.append(i)
            total += cost
    if current:
        batches.append(current)
    return batches
