"""Moved to judge_core/memory.py (a token-budget estimator is not GPTQ code); kept for old imports."""

from ..memory import (CPU_BUDGET, MIN_BUDGET, ROUND_TO, auto_token_budget, budget_for,  # noqa: F401
                      bytes_per_token)
