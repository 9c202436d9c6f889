"""Group rewards from pairwise verdicts (pure math) and the OpenRLHF query split."""

from __future__ import annotations

import math

import pytest

from judge_core.scoring import PairScore, combine_passes
from judge_core.serve.rewards import (Matchup, RewardGroup, count_matchups, expand_groups, group_rewards,
                                      split_query)


def score(p1: float) -> PairScore:
    # logits whose two-way softmax gives p1 in both passes
    d = math.log(p1 / (100 - p1))
    return combine_passes((d, 0.0), (0.0, d))


def test_round_robin_expansion_and_means():
    groups = [RewardGroup("i", ("a", "b", "c")), RewardGroup("j", ("x", "y"), reference="ref"),
              RewardGroup("k", ("z",))]
    pairs, matchups = expand_groups(groups)
    assert pairs == [("i", "a", "b"), ("i", "a", "c"), ("i", "b", "c"), ("j", "x", "ref"), ("j", "y", "ref")]
    assert matchups == [Matchup(0, 0, 1), Matchup(0, 0, 2), Matchup(0, 1, 2), Matchup(1, 0, None), Matchup(1, 1, None)]
    assert [count_matchups(g) for g in groups] == [3, 2, 0]
    # a beats b 80%, a beats c 60%, b beats c 30%
    rewards, errors = group_rewards(groups, matchups, [score(80), score(60), score(30), score(90), score(25)])
    assert errors == []
    expected = [[(0.8 + 0.6) / 2, (0.2 + 0.3) / 2, (0.4 + 0.7) / 2], [0.9, 0.25], [0.5]]
    for got, want in zip(rewards, expected):
        assert got == [near(w) for w in want]


def near(x):
    return pytest.approx(x, abs=1e-12)


def test_failed_pair_leaves_none_and_an_error():
    groups = [RewardGroup("i", ("a", "b", "c"))]
    _, matchups = expand_groups(groups)
    rewards, errors = group_rewards(groups, matchups, [score(70), PairScore.failed("too long"), score(50)])
    assert rewards == [[None, near(0.4), None]]
    assert errors == [{"group": 0, "responses": [0, 2], "reference": False, "error": "too long"}]


def test_split_query():
    assert split_query("<p>prompt</p>the answer", "<p>prompt</p>") == "the answer"
    assert split_query("other", "<p>prompt</p>") is None
