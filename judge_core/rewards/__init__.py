"""The judge as an RL reward: reward modes (modes.py, pure Python) and the in-process path (compute.py)."""

from .compute import compute_rewards
from .modes import (MODES, NEUTRAL_REWARD, Matchup, RewardGroup, SampleReward, bootstrap_pick, check_mode,
                    count_matchups, expand_groups, group_rewards)

__all__ = ["MODES", "NEUTRAL_REWARD", "Matchup", "RewardGroup", "SampleReward", "bootstrap_pick", "check_mode",
           "compute_rewards", "count_matchups", "expand_groups", "group_rewards"]
