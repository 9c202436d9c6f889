"""The judge as an RL reward: reward modes (modes.py, pure Python), the in-process path (compute.py), and
rewards from a pointwise spec (pointwise.py: each response scored alone, the score mapped to [0, 1])."""

from .compute import compute_rewards
from .modes import (MODES, NEUTRAL_REWARD, Matchup, RewardGroup, SampleReward, bootstrap_pick, check_mode,
                    count_matchups, expand_groups, group_rewards)
from .pointwise import pointwise_reward, pointwise_rewards

__all__ = ["MODES", "NEUTRAL_REWARD", "Matchup", "RewardGroup", "SampleReward", "bootstrap_pick", "check_mode",
           "compute_rewards", "count_matchups", "expand_groups", "group_rewards", "pointwise_reward",
           "pointwise_rewards"]
