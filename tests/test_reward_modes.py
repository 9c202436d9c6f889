"""Reward modes (judge_core.rewards.modes): pure arithmetic on given verdicts, then the in-process
path (`compute_rewards`) against a slow twin that calls `judge.compare` once per opponent."""

from __future__ import annotations

import math

import pytest

from judge_core.rewards import (Matchup, RewardGroup, SampleReward, bootstrap_pick, compute_rewards,
                                count_matchups, expand_groups, group_rewards)
from judge_core.scoring import PairScore, combine_passes
from judge_core.serve.rewards import split_query


def verdict(first: float, second: float) -> PairScore:
    """response_1 wins pass 1 (shown as A) with `first` percent and pass 2 (shown as B) with `second`."""
    return combine_passes((math.log(first / (100 - first)), 0.0), (0.0, math.log(second / (100 - second))))


def near(x):
    return pytest.approx(x, abs=1e-12)


def test_round_robin_gives_each_sample_its_win_rate_in_both_orders():
    group = RewardGroup("i", ("a", "b", "c"))
    pairs, matchups = expand_groups([group])
    assert pairs == [("i", "a", "b"), ("i", "a", "c"), ("i", "b", "c")]
    assert matchups == [Matchup(0, 0, 1, True), Matchup(0, 0, 2, True), Matchup(0, 1, 2, True)]
    # a beats b 80% shown first, 70% shown second; a beats c 60/50; b beats c 30/20
    [row] = group_rewards([group], matchups, [verdict(80, 70), verdict(60, 50), verdict(30, 20)])
    a, b, c = row
    assert (a.p_ab, a.p_ba) == (near((0.8 + 0.6) / 2), near((0.7 + 0.5) / 2))
    # b is response_2 of (a, b): shown first in pass 2, where a (shown second) won 70%
    assert (b.p_ab, b.p_ba) == (near((0.3 + 0.3) / 2), near((0.2 + 0.2) / 2))
    assert (c.p_ab, c.p_ba) == (near((0.5 + 0.8) / 2), near((0.4 + 0.7) / 2))
    for s in row:
        assert s.reward == s.p_mean == near((s.p_ab + s.p_ba) / 2) and s.opponents == 2 and s.ok
    assert sum(s.reward for s in row) == near(1.5)  # a round robin's rewards average 0.5


def test_anchor_is_the_probability_of_beating_the_reference():
    group = RewardGroup("i", ("x", "y"), reference="ref")
    assert group.resolved_mode == "anchor" and count_matchups(group) == 2
    pairs, matchups = expand_groups([group])
    assert pairs == [("i", "x", "ref"), ("i", "y", "ref")]
    [row] = group_rewards([group], matchups, [verdict(90, 80), verdict(25, 35)])
    assert [(s.p_ab, s.p_ba, s.reward) for s in row] == [(near(0.9), near(0.8), near(0.85)),
                                                         (near(0.25), near(0.35), near(0.3))]


def test_bootstrap_picks_a_member_by_content_and_judges_the_others_against_it():
    responses = tuple(f"response {k}" for k in range(6))
    group = RewardGroup("write", responses, mode="bootstrap")
    ref = bootstrap_pick(group)
    # order-independent: the same member is picked from any arrival order
    shuffled = RewardGroup("write", responses[::-1], mode="bootstrap")
    assert shuffled.responses[bootstrap_pick(shuffled)] == responses[ref]
    picks = {responses[bootstrap_pick(RewardGroup("write", responses, mode="bootstrap", bootstrap_seed=s))]
             for s in range(20)}
    print(f"bootstrap picks over 20 seeds: {len(picks)} distinct members of 6")
    assert len(picks) > 1  # the seed changes the pick
    pairs, matchups = expand_groups([group])
    assert count_matchups(group) == 5 and len(pairs) == 5
    assert all(p == ("write", responses[m.i], responses[ref]) and not m.both for p, m in zip(pairs, matchups))
    row = group_rewards([group], matchups, [verdict(60, 40)] * 5)[0]
    assert row[ref] == SampleReward(0.5, 0.5, 0.5, 0.5, 0, 0, ref)
    assert all(s.reward == near(0.5) and s.p_ab == near(0.6) and s.reference_index == ref
               for r, s in enumerate(row) if r != ref)


def test_a_bad_sample_gets_nan_and_its_error_and_the_others_keep_their_verdicts():
    group = RewardGroup("i", ("good", "fine", 7))  # 7: not a string
    _, matchups = expand_groups([group])
    scores = [verdict(70, 70), PairScore.failed("response_2 must be a string, got int"),
              PairScore.failed("response_1 must be a string, got int")]
    good, fine, bad = group_rewards([group], matchups, scores)[0]
    assert (good.reward, good.opponents, good.missing, good.error) == (near(0.7), 1, 1, None)
    assert (fine.reward, fine.opponents, fine.missing) == (near(0.3), 1, 1)
    assert math.isnan(bad.reward) and bad.error == "response_2 must be a string, got int" and bad.missing == 2
    assert bad.to_dict()["reward"] is None and SampleReward.from_dict(bad.to_dict()).error == bad.error


def test_single_response_round_robin_is_neutral_and_groups_are_checked():
    [[s]] = group_rewards([RewardGroup("i", ("z",))], [], [])
    assert (s.reward, s.opponents) == (0.5, 0)
    with pytest.raises(ValueError, match="mode must be one of anchor, round_robin, bootstrap"):
        RewardGroup("i", ("a",), mode="pairwise")
    with pytest.raises(ValueError, match="'anchor' needs a reference"):
        RewardGroup("i", ("a",), mode="anchor")
    with pytest.raises(ValueError, match="only used by mode 'anchor'"):
        RewardGroup("i", ("a", "b"), reference="r", mode="round_robin")
    with pytest.raises(ValueError, match="at least one response"):
        RewardGroup("i", ())


def test_split_query():
    assert split_query("<p>prompt</p>the answer", "<p>prompt</p>") == "the answer"
    assert split_query("other", "<p>prompt</p>") is None


@pytest.fixture(scope="module")
def tiny_judge(tiny_text_ckpt):
    from judge_core.api import Judge

    return Judge.from_pretrained(tiny_text_ckpt, device="cpu", dtype="fp32")


def slow_rewards(judge, group: RewardGroup) -> list[tuple[float, float]]:
    """The twin: (p_ab, p_ba) per sample from one `judge.compare` per (sample, opponent), no expansion."""
    r, mode = group.responses, group.resolved_mode
    if mode == "anchor":
        opponents = {i: [group.reference] for i in range(len(r))}
    elif mode == "bootstrap":
        ref = bootstrap_pick(group)
        opponents = {i: ([] if i == ref else [r[ref]]) for i in range(len(r))}
    else:
        opponents = {i: [r[j] for j in range(len(r)) if j != i] for i in range(len(r))}
    out = []
    for i in range(len(r)):
        if not opponents[i]:
            out.append((0.5, 0.5))
            continue
        scores = [judge.compare(group.instruction, r[i], o) for o in opponents[i]]
        out.append((sum(s.pass1[0] for s in scores) / 100 / len(scores),
                    sum(s.pass2[1] for s in scores) / 100 / len(scores)))
    return out


def test_compute_rewards_matches_the_slow_twin_in_every_mode(tiny_judge):
    instruction = "Write a two-line poem about rain."
    responses = ("Rain on the roof, soft.", "Drops fall.\nThe street shines.", "rain rain rain", "Grey.")
    groups = [RewardGroup(instruction, responses), RewardGroup(instruction, responses, "A grey sky weeps."),
              RewardGroup(instruction, responses, mode="bootstrap")]
    fast = compute_rewards(tiny_judge, groups)
    err = 0.0
    for group, row in zip(groups, fast):
        for s, (p_ab, p_ba) in zip(row, slow_rewards(tiny_judge, group)):
            err = max(err, abs(s.p_ab - p_ab), abs(s.p_ba - p_ba), abs(s.reward - (p_ab + p_ba) / 2))
    print(f"compute_rewards vs one compare() per opponent: max |d| = {err:.2e}")
    assert err < 1e-6  # fp32, batches of other shapes
