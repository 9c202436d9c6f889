"""Tournament statistics, Elo and Swiss pairing against hand-computed values on tiny fixed inputs."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from judge_core.scoring import PairScore
from judge_core.tournament import (cliffs_delta, combined_separability, elo_update, expected_score, length_bias,
                                   mean_abs_cliffs_delta, omega_squared, positional_bias, separability, spearman,
                                   swiss_round)


def test_omega_squared_two_groups_by_hand():
    # A = [1,2,3], B = [4,5,6]: means 2, 5, grand 3.5; SS_between = 3*1.5^2 + 3*1.5^2 = 13.5;
    # SS_within = 2 + 2 = 4; SS_total = 17.5; MS_within = 4 / (6 - 2) = 1.
    # w2 = (13.5 - 1*1) / (17.5 + 1) = 12.5 / 18.5
    got = omega_squared([[1, 2, 3], [4, 5, 6]])
    print(f"omega2 two groups: got {got:.6f}, hand {12.5 / 18.5:.6f}")
    assert got == pytest.approx(12.5 / 18.5, abs=1e-12)


def test_omega_squared_unequal_groups_by_hand():
    # A = [1,3], B = [2,4,6], C = [5]: grand mean 21/6 = 3.5; means 2, 4, 5.
    # SS_between = 2*1.5^2 + 3*0.5^2 + 1*1.5^2 = 4.5 + 0.75 + 2.25 = 7.5
    # SS_within = (1 + 1) + (4 + 0 + 4) + 0 = 10; SS_total = 17.5; MS_within = 10 / (6 - 3) = 10/3
    # w2 = (7.5 - 2 * 10/3) / (17.5 + 10/3) = (5/6) / (125/6) = 0.04
    got = omega_squared([[1, 3], [2, 4, 6], [5]])
    print(f"omega2 unequal groups: got {got:.6f}, hand 0.04")
    assert got == pytest.approx(0.04, abs=1e-12)


def test_omega_squared_identical_groups_is_negative_not_clipped():
    # A = B = [1, 2]: SS_between = 0, SS_within = 1, MS_within = 0.5: w2 = -0.5 / 1.5 = -1/3
    assert omega_squared([[1, 2], [1, 2]]) == pytest.approx(-1.0 / 3.0, abs=1e-12)
    assert math.isnan(omega_squared([[1.0], [2.0]]))  # no within-group degree of freedom
    assert math.isnan(omega_squared([[3.0, 3.0], [3.0, 3.0]]))  # nothing varies
    assert math.isnan(omega_squared([[1.0, 2.0]]))  # one group


def test_omega_squared_matches_scipy_anova_when_installed():
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(3)
    groups = [rng.normal(mu, 1.0, size=n) for mu, n in ((0.0, 7), (0.6, 5), (1.5, 9), (0.2, 4))]
    f_stat, _ = scipy_stats.f_oneway(*groups)
    n_total, df_between = sum(g.size for g in groups), len(groups) - 1
    from_f = df_between * (f_stat - 1) / (df_between * (f_stat - 1) + n_total)  # w2 written through F
    got = omega_squared(groups)
    print(f"omega2 vs scipy f_oneway: max |delta| = {abs(got - from_f):.3g}")
    assert got == pytest.approx(from_f, abs=1e-10)


def test_cliffs_delta_by_hand():
    # x = [1,2,3] vs y = [2,2,4]: 1 loses 3; 2 ties 2, loses 1; 3 wins 2, loses 1 -> (2 - 5) / 9 = -1/3
    assert cliffs_delta([1, 2, 3], [2, 2, 4]) == pytest.approx(-1.0 / 3.0)
    assert cliffs_delta([2, 2, 4], [1, 2, 3]) == pytest.approx(1.0 / 3.0)
    assert cliffs_delta([5, 6], [1, 2]) == 1.0
    with pytest.raises(ValueError, match="non-empty"):
        cliffs_delta([], [1.0])


def test_mean_abs_cliffs_delta_over_all_unordered_pairs():
    # |d(A,B)| = 1/3, |d(A,C)| = 1, |d(B,C)| = 1 -> mean over the 3 unordered pairs = 7/9
    groups = {"A": [1, 2, 3], "B": [2, 2, 4], "C": [5, 6], "empty": []}
    mean, n_pairs = mean_abs_cliffs_delta(groups)
    assert n_pairs == 3
    assert mean == pytest.approx(7.0 / 9.0)


def test_combined_separability_formula():
    # ((0.5 * 0.5 + 0.5 * 0.7) / 0.75) * 100 = 0.6 / 0.75 * 100 = 80
    assert combined_separability(0.5, 0.7) == pytest.approx(80.0)
    stats = separability({"A": [1, 2, 3], "B": [4, 5, 6]})
    # w2 = 12.5/18.5 (above); d = 1 -> combined = (0.5*0.675676 + 0.5) / 0.75 * 100 = 111.71
    assert stats["combined"] == pytest.approx((0.5 * 12.5 / 18.5 + 0.5) / 0.75 * 100)
    assert stats["cliffs_delta_pairs"] == 1


def test_positional_bias_by_hand():
    scores = [
        PairScore(p1=55.0, p2=45.0, pass1=(70.0, 30.0), pass2=(60.0, 40.0)),  # A wins both; inconsistent
        PairScore(p1=47.5, p2=52.5, pass1=(40.0, 60.0), pass2=(55.0, 45.0)),  # A wins pass 2; consistent
        PairScore(p1=35.0, p2=65.0, pass1=(50.0, 50.0), pass2=(80.0, 20.0)),  # a tie, A wins pass 2
        PairScore.failed("prompt too long"),  # left out
    ]
    got = positional_bias(scores)
    # 6 passes, 4 won by position 1, 1 tie -> 4 / 5; mean P(A) = (70+60+40+55+50+80)/6 = 355/6
    assert (got["pairs"], got["passes"], got["position1_wins"], got["ties"]) == (3, 6, 4, 1)
    assert got["position1_win_share"] == pytest.approx(0.8)
    assert got["mean_p_position1"] == pytest.approx(355.0 / 6.0)
    assert got["consistent_pair_share"] == pytest.approx(1.0 / 3.0)


def test_length_bias_by_hand():
    # (len1, len2, p1): longer's P = 70, 60, (equal: skipped), 50 -> wins 1 + 1 + 0.5 = 2.5 of 3;
    # margins 2P - 100 = 40, 20, 0 -> mean 20
    got = length_bias([(10, 5, 70.0), (3, 8, 40.0), (4, 4, 90.0), (6, 2, 50.0)])
    assert (got["pairs"], got["equal_length_pairs"]) == (3, 1)
    assert got["longer_win_rate"] == pytest.approx(2.5 / 3.0)
    assert got["mean_margin_longer"] == pytest.approx(20.0)
    assert got["mean_p_longer"] == pytest.approx(60.0)
    assert math.isnan(length_bias([(3, 3, 80.0)])["longer_win_rate"])


def test_spearman_by_hand_and_with_ties():
    # ranks 1,2,3,4 vs 1,2,4,3: sum d^2 = 2 -> 1 - 6*2 / (4 * 15) = 0.8
    assert spearman([1, 2, 3, 4], [10, 20, 40, 30]) == pytest.approx(0.8)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    scipy_stats = pytest.importorskip("scipy.stats")
    x, y = [1, 2, 2, 3, 5, 5, 7], [2, 1, 4, 4, 6, 3, 9]
    err = abs(spearman(x, y) - scipy_stats.spearmanr(x, y).statistic)
    print(f"spearman with ties vs scipy: |delta| = {err:.3g}")
    assert err < 1e-12


def test_elo_by_hand():
    assert expected_score(1500, 1500) == 0.5
    assert elo_update(1500, 1500, 1.0) == (1516.0, 1484.0)
    # E(1600 vs 1400) = 1 / (1 + 10^-0.5) = 0.7597469; a 50/50 game costs the favourite 32 * 0.2597469
    new_x, new_y = elo_update(1600, 1400, 0.5)
    assert new_x == pytest.approx(1600 - 32 * (1 / (1 + 10 ** -0.5) - 0.5))
    assert new_x + new_y == pytest.approx(3000.0)  # zero sum
    with pytest.raises(ValueError, match="1.5"):
        elo_update(1500, 1500, 1.5)


def _play_rounds(n_entrants: int, n_rounds: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    entrants = [f"w{i}" for i in range(n_entrants)]
    ratings = {e: 1500.0 for e in entrants}
    tiebreak = dict(zip(entrants, rng.permutation(n_entrants).tolist()))
    played, byes, all_pairs, rematches = set(), {}, [], 0
    for _ in range(n_rounds):
        pairing = swiss_round(entrants, ratings, played, byes, tiebreak)
        rematches += pairing.rematches
        if pairing.bye is not None:
            byes[pairing.bye] = byes.get(pairing.bye, 0) + 1
        for a, b in pairing.pairs:
            played.add(frozenset((a, b)))
            all_pairs.append(frozenset((a, b)))
            outcome = float(rng.random())
            ratings[a], ratings[b] = elo_update(ratings[a], ratings[b], outcome)
    return all_pairs, byes, rematches


def test_swiss_pairs_neighbours_and_avoids_rematches():
    ratings = {f"w{i}": 1500.0 + 10 * i for i in range(6)}
    pairing = swiss_round(list(ratings), ratings, set(), {}, {e: 0 for e in ratings})
    assert pairing.pairs == [("w5", "w4"), ("w3", "w2"), ("w1", "w0")] and pairing.bye is None
    # with w5-w4 already played, the top meets the next-highest it has not met and the rest re-pair
    pairing = swiss_round(list(ratings), ratings, {frozenset(("w5", "w4"))}, {}, {e: 0 for e in ratings})
    assert pairing.pairs[0] == ("w5", "w3") and pairing.rematches == 0
    # 8 entrants, 7 rounds: a full round robin with no rematch
    pairs, _, rematches = _play_rounds(8, 7)
    assert rematches == 0 and len(set(pairs)) == len(pairs) == 28
    assert set(pairs) == {frozenset(p) for p in itertools.combinations([f"w{i}" for i in range(8)], 2)}


def test_swiss_bye_rotates_and_forced_rematches_are_counted():
    _, byes, _ = _play_rounds(5, 5)
    assert byes == {f"w{i}": 1 for i in range(5)}  # odd count: everyone sits out once
    _, _, rematches = _play_rounds(4, 5)  # 4 entrants have only 3 rematch-free rounds
    assert rematches == 4
    with pytest.raises(ValueError, match="at least 2"):
        swiss_round(["solo"], {"solo": 1500.0}, set(), {}, {"solo": 0})
