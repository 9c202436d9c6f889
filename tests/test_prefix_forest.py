"""Shared prefixes on token ids (judge_core/prefix.py): the segment tree, its cost, and planned batches."""

from __future__ import annotations

import random

import numpy as np
import pytest

from judge_core.prefix import (PrefixPolicy, as_token_array, build_forest, forked_tokens, plan_shared_batches,
                               sorted_forks)


def _chains(seqs, forest):
    """Each prompt rebuilt from its chain of segments (root first)."""
    chains = []
    for leaf in forest.leaf:
        chain, j = [], leaf
        while j is not None:
            chain.append(forest.segments[j])
            j = forest.segments[j].parent
        chains.append(chain[::-1])
    return chains


def _trie_nodes(seqs, policy):
    """Distinct shared (prefix) tokens by brute force over all pairs: the slow twin of the cost."""
    arrays = [as_token_array(s) for s in seqs]
    total = sum(len(s) for s in arrays)
    _, shared = sorted_forks(arrays, policy)
    # brute force: for each prompt in sorted order, the longest usable prefix shared with any earlier one
    order = sorted(range(len(arrays)), key=lambda i: arrays[i].tobytes())
    saved = 0
    for r in range(1, len(order)):
        best = 0
        for q in range(r):
            run = min(shared[q + 1:r + 1])
            best = max(best, run)
        saved += best
    return total - saved


@pytest.mark.parametrize("seed", range(6))
def test_forest_rebuilds_every_prompt_and_computes_each_prefix_once(seed):
    rng = random.Random(seed)
    base = [rng.randint(0, 3) for _ in range(60)]
    seqs = []
    for _ in range(rng.randint(2, 12)):
        cut = rng.randint(0, 60)
        seqs.append(base[:cut] + [rng.randint(0, 3) for _ in range(rng.randint(0 if cut else 1, 25))])
    seqs += [seqs[0], seqs[1][:max(1, len(seqs[1]) // 2)]]        # an identical prompt, a prompt's own prefix
    policy = PrefixPolicy(min_shared=rng.choice([1, 4]), align=rng.choice([1, 2, 4]))
    forest = build_forest([as_token_array(s) for s in seqs], policy)
    for seq, chain in zip(seqs, _chains(seqs, forest)):
        assert np.concatenate([as_token_array(seqs[c.owner])[c.start:c.end] for c in chain]).tolist() == seq
        assert [c.level for c in chain] == list(range(len(chain)))
        assert all(a.end == b.start for a, b in zip(chain, chain[1:]))
        assert all(c.start % policy.align == 0 for c in chain)             # forks only on the grid
    leaves = forest.leaf
    assert len(set(leaves)) == len(leaves)                                 # every prompt's last row is its own
    assert forest.num_tokens == forked_tokens(seqs, policy) == _trie_nodes(seqs, policy)
    print(f"seed {seed}: {len(seqs)} prompts, {sum(map(len, seqs))} tokens -> {forest.num_tokens} computed, "
          f"{forest.num_levels} levels")


def test_policy_rounds_down_and_keeps_the_last_token():
    a = list(range(200))
    b = a[:150] + [999] * 10
    assert forked_tokens([a, b], PrefixPolicy()) == 200 + 160 - 128           # 150 shared -> 128 (two chunks)
    assert forked_tokens([a, b], PrefixPolicy(min_shared=160)) == 360          # not worth a fork
    assert forked_tokens([a[:64], a[:64]], PrefixPolicy(1, 1)) == 64 + 1       # identical: all but the last token
    assert forked_tokens([[5], [5]], PrefixPolicy(1, 1)) == 2                  # one token: nothing to share
    assert forked_tokens([[1, 2, 3], [7, 8, 9]], PrefixPolicy(1, 1)) == 6     # nothing in common
    assert forked_tokens([a, a[:128]], PrefixPolicy()) == 200 + 128 - 64       # a prompt's own prefix: <= len - 1
    assert forked_tokens([a, [0] + [7] * 199], PrefixPolicy(1, 1)) == 400 - 1      # one shared token
    with pytest.raises(ValueError, match="align must be a positive"):
        PrefixPolicy(align=0)


def test_multi_level_tree():
    system = list(range(1000, 1064))
    item = list(range(2000, 2128))
    prompts = [system + item + [3000 + k] * 70 + [9] for k in range(3)] + [system + [4000] * 80]
    forest = build_forest([as_token_array(p) for p in prompts], PrefixPolicy())
    assert forest.num_levels == 3
    assert forest.num_tokens == 64 + 128 + 3 * 71 + 80


def test_plan_counts_each_prefix_once_and_keeps_groups_together():
    rng = random.Random(1)
    prefix = [rng.randint(0, 100) for _ in range(256)]
    group = [prefix + [rng.randint(0, 100) for _ in range(40)] for _ in range(6)]   # 6 x 296, sharing 256
    loners = [[rng.randint(200, 300) for _ in range(n)] for n in (100, 290, 30)]
    seqs = loners[:2] + group + loners[2:]
    policy = PrefixPolicy()
    batches = plan_shared_batches(seqs, 600, policy)
    assert sorted(i for b in batches for i in b) == list(range(len(seqs)))
    costs = [forked_tokens([seqs[i] for i in b], policy) for b in batches]
    print(f"batches {batches}, costs {costs}")
    assert max(costs) <= 600
    group_ids = set(range(2, 8))
    assert sum(1 for b in batches if group_ids & set(b)) == 1                 # the whole group in one batch
    # a budget below the group's cost splits it; each batch still fits, the prefix computed in both
    small = plan_shared_batches(seqs, 400, policy)
    assert sum(1 for b in small if group_ids & set(b)) == 2
    assert max(forked_tokens([seqs[i] for i in b], policy) for b in small) <= 400
    # a prompt over the budget runs alone; the plan does not depend on input order
    assert [len(b) for b in plan_shared_batches([[1] * 50, [2] * 10], 20, policy)] == [1, 1]
    shuffled = list(range(len(seqs)))
    rng.shuffle(shuffled)
    plan2 = plan_shared_batches([seqs[i] for i in shuffled], 600, policy)
    assert sorted(sorted(shuffled[i] for i in b) for b in plan2) == sorted(sorted(b) for b in batches)
    with pytest.raises(ValueError, match="sequence 1 is empty"):
        plan_shared_batches([[1], []], 10, policy)
