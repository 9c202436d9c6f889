"""A pointwise spec through the RL rewards (judge_core/rewards/pointwise.py): each response scored alone by
`score_many`, the spec's score mapped to [0, 1] over its label values; bad samples are NaN with their error."""

from __future__ import annotations

import math

import pytest

from judge_core import Judge
from judge_core.rewards import RewardGroup, compute_rewards, pointwise_reward
from judge_core.specs import load_spec

GROUPS = [RewardGroup("Write a haiku about rain.", ("Soft rain on tin roofs.", "Rain. Wet.", 7)),
          RewardGroup("Describe snow.", ("White hush over the trams.",))]


def test_reward_mapping_over_label_values():
    rubric, yes_no, pollux = load_spec("pointwise-rubric"), load_spec("yes-no-criterion"), load_spec("pollux-4b-criterion")
    assert [pointwise_reward(rubric, s) for s in (1.0, 3.0, 3.4, 5.0)] == pytest.approx([0, 0.5, 0.6, 1])
    assert pointwise_reward(pollux, 1.5) == pytest.approx(0.75)  # labels 0..2
    assert pointwise_reward(yes_no, 0.37) == 0.37  # P(yes) is already a probability


@pytest.mark.parametrize("name, slots", [("pointwise-rubric", {"rubric": "1: flat ... 5: vivid"}),
                                         ("yes-no-criterion", {"criterion": "Uses imagery"})])
def test_pointwise_rewards_equal_score_many(tiny_text_ckpt, name, slots):
    judge = Judge.from_pretrained(tiny_text_ckpt, device="cpu", dtype="fp32", spec=name)
    rewards = compute_rewards(judge, GROUPS, **slots)
    flat = [(g.instruction, r) for g in GROUPS for r in g.responses]
    want = judge.score_many([{"instruction": i, "response": r, **slots} for i, r in flat])
    got = [s for group in rewards for s in group]
    assert [len(group) for group in rewards] == [3, 1]
    errors = []
    for sample, score in zip(got, want):
        if not score.ok:
            assert math.isnan(sample.reward) and sample.error == score.error and "response must be a string" in sample.error
            continue
        expected = pointwise_reward(judge.spec, score.score)
        errors.append(abs(sample.reward - expected))
        assert 0 <= sample.reward <= 1 and sample.p_ab == sample.p_ba == sample.p_mean == sample.reward
        assert sample.opponents == 0 and sample.ok
    print(f"{name}: pointwise rewards vs score_many mapped: max |d| = {max(errors):.2e}")
    assert max(errors) == 0.0
    with pytest.raises(ValueError, match="scores each response alone"):
        compute_rewards(judge, [RewardGroup("i", ("a", "b"), mode="round_robin")], **slots)
    with pytest.raises(TypeError, match="pointwise spec"):
        compute_rewards(Judge.from_pretrained(tiny_text_ckpt, device="cpu", dtype="fp32"), GROUPS, rubric="x")
