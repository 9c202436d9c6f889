import random

import pytest

from judge_core.plan import batch_cost, dual_pass, plan_batches


@pytest.mark.parametrize("counts_padding", [True, False])
@pytest.mark.parametrize("budget", [1, 7, 50, 333, 10_000])
def test_every_index_once_and_budget_respected(counts_padding, budget):
    rng = random.Random(budget)
    lengths = [rng.choice([1, 2, rng.randint(1, 400), 5000]) for _ in range(300)]
    batches = plan_batches(lengths, budget, counts_padding)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        cost = batch_cost([lengths[i] for i in b], counts_padding)
        # a batch over the budget must be a single prompt longer than the budget
        assert cost <= budget or (len(b) == 1 and lengths[b[0]] > budget), (b, cost)


def test_sorted_longest_first_and_deterministic():
    lengths = [5, 9, 9, 1, 7]
    assert plan_batches(lengths, 18) == [[1, 2], [4, 0], [3]]
    assert plan_batches(lengths, 18) == plan_batches(list(lengths), 18)


def test_packed_budget_counts_real_tokens():
    assert plan_batches([10, 10, 10], 30, counts_padding=False) == [[0, 1, 2]]
    assert plan_batches([10, 1, 1], 12, counts_padding=True) == [[0], [1, 2]]


def test_bad_inputs():
    with pytest.raises(ValueError, match="token_budget must be a positive"):
        plan_batches([1], 0)
    with pytest.raises(ValueError, match="sequence 1 is empty"):
        plan_batches([3, 0], 10)


def test_dual_pass_swaps():
    assert dual_pass(("i", "r1", "r2")) == (("i", "r1", "r2"), ("i", "r2", "r1"))
