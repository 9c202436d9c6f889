import math

from judge_core.scoring import PairScore, combine_passes, two_way_percent


def test_two_way_matches_softmax_and_never_overflows():
    for a, b in [(0.0, 0.0), (1.5, -2.0), (-3.0, 4.0), (800.0, -800.0), (-1e4, -1e4 + 1)]:
        pa, pb = two_way_percent(a, b)
        d = a - b
        expected = 100.0 / (1.0 + math.exp(-d)) if abs(d) < 700 else (100.0 if d > 0 else 0.0)
        assert abs(pa - expected) < 1e-9 and abs(pa + pb - 100.0) < 1e-9
    assert two_way_percent(-math.inf, -math.inf) == (50.0, 50.0)


def test_dual_pass_average():
    s = combine_passes((2.0, 0.0), (0.0, 1.0), (10, 11))
    p_pass1_a = 100 / (1 + math.exp(-2.0))
    p_pass2_b = 100 / (1 + math.exp(-1.0))
    assert abs(s.p1 - (p_pass1_a + p_pass2_b) / 2) < 1e-9
    assert abs(s.p1 + s.p2 - 100) < 1e-9 and s.tokens == (10, 11) and s.ok


def test_failed_score():
    s = PairScore.failed("bad")
    assert not s.ok and math.isnan(s.p1) and s.to_dict() == {"error": "bad"}
