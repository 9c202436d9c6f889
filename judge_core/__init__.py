"""judge_core: a fast, faithful backend for logit-based pairwise LLM judges.

    from judge_core import Judge
    judge = Judge.from_pretrained(path)
    judge.compare(instruction, response_1, response_2).p1   # P(response_1 better), percent
"""

from .scoring import PairScore

__all__ = ["Judge", "PairScore"]


def __getattr__(name):
    # Judge pulls in torch and transformers; import it on first use so `import judge_core` stays light.
    if name == "Judge":
        from .api import Judge

        return Judge
    raise AttributeError(f"module 'judge_core' has no attribute {name!r}")
