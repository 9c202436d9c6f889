"""The ranking's words: ± (not +-), a negative omega-squared explained, the "95% interval" flagged when
too few samples stand behind it, counts in the right number."""

import numpy as np

from judge_core.tournament import ItemSet, JudgementCache, RankSettings, build_item_set, rank
from judge_core.tournament.report import (MIN_INTERVAL_SAMPLES, axis_label, interval_warnings, leaderboard_markdown,
                                          omega_squared_text)
from judge_core.scoring import combine_passes


class CoinJudge:
    """Verdicts from a seeded coin: the writers are alike, so omega-squared sits near (often below) zero."""

    def __init__(self, seed=0):
        self.rng = np.random.default_rng(seed)

    def compare_many(self, pairs):
        return [combine_passes((float(x), 0.0), (float(-x), 0.0)) for x in self.rng.normal(0, 1, len(pairs))]


def items(prompts: int) -> ItemSet:
    rows = [{"prompt_id": f"p{p}", "model": w, "response": f"{w} {p} " + "x" * (p % 3), "prompt": f"Prompt {p}"}
            for p in range(prompts) for w in "abcd"]
    return build_item_set(list(enumerate(rows, start=1)))


def test_omega_squared_words():
    assert omega_squared_text(-0.0123) == "-0.012 (negative: no separability beyond chance)"
    assert omega_squared_text(0.25) == "0.250"
    assert omega_squared_text(None) == "n/a"


def test_report_words_on_a_real_ranking():
    few = rank(CoinJudge(), items(3), RankSettings(isolated_rounds=2, bootstrap_rounds=2, bootstrap_samples=3,
                                                   progress=False), cache=JudgementCache())
    for mode, result in few.modes.items():
        text = leaderboard_markdown(result)
        print(text)
        assert "±" in text and "+-" not in text and "±" in axis_label(result)
        assert interval_warnings(result) and f"fewer than {MIN_INTERVAL_SAMPLES}" in text
        w2 = result.stats["omega_squared"]
        assert (w2 is not None and w2 < 0) == ("no separability beyond chance" in text)
        assert " 1 pairs" not in text and " 1 games" not in text
    many = rank(CoinJudge(), items(3), RankSettings(bootstrap_rounds=2, bootstrap_samples=MIN_INTERVAL_SAMPLES,
                                                    progress=False), modes=("bootstrap",), cache=JudgementCache())
    assert not interval_warnings(many.modes["bootstrap"])
    assert "95% interval comes from" not in leaderboard_markdown(many.modes["bootstrap"])
