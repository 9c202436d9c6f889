"""The built-in judge specs, by name (`judge-core score --spec NAME`, `Judge.from_pretrained(spec=NAME)`).

- creative-writing: the card's judge (the default): its system message, its JSON user message, A/B, both
  orders averaged. Bit-identical to judge_core's results before specs existed.
- reference-pairwise: the same judge reading a response against a reference answer (A/B, both orders):
  P(response beats reference). The RL `anchor` reward mode reads this.
- pointwise-rubric: a G-Eval-style rubric score, 1..5, read as the expected value over the five digit tokens.
- yes-no-criterion: does the response meet the criterion? P("yes") over {yes, no}.
- pollux-4b-criterion: ai-forever/Pollux-4B-Judge (Qwen3-4B) scoring one criterion against its rubric in the
  "return only one integer" form, thinking off. Pollux is trained to write a rationale with its score, so
  reading the first token as the score is `forced`, and every row says so.
"""

from __future__ import annotations

from ..prompts import SYSTEM_PROMPT
from .spec import JudgeSpec, spec_from_dict

DEFAULT_SPEC = "creative-writing"

_CARD_USER_JSON = {"instruction": "instruction", "A": "response_a", "B": "response_b"}
_AB = [{"text": "A", "value": 1.0}, {"text": "B", "value": 0.0}]

BUILTIN: dict[str, dict] = {
    "creative-writing": {
        "name": "creative-writing", "kind": "pairwise",
        "description": "selfhypnosis-ai/Qwen3.5-4B-Creative-Writing-Judge, as its card runs it",
        "messages": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "json": _CARD_USER_JSON}],
        "labels": _AB, "readout": "softmax", "aggregate": "p_first", "swap": True, "fidelity": "exact",
    },
    "reference-pairwise": {
        "name": "reference-pairwise", "kind": "reference_pairwise",
        "description": "the card's judge reading a response (A) against a reference answer (B), both orders",
        "messages": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "json": _CARD_USER_JSON}],
        "labels": _AB, "readout": "softmax", "aggregate": "p_first", "swap": True, "fidelity": "exact",
    },
    "pointwise-rubric": {
        "name": "pointwise-rubric", "kind": "pointwise",
        "description": "a rubric score 1-5 read as the expected value over the digit tokens (G-Eval style)",
        "messages": [
            {"role": "system", "content": "You are a strict evaluator. Score the response to the instruction "
                                          "against the rubric on a scale from 1 (worst) to 5 (best). "
                                          "Answer with the digit only."},
            {"role": "user", "content": "Instruction:\n{instruction}\n\nResponse:\n{response}\n\nRubric:\n{rubric}\n\n"
                                        "Score (1-5):"}],
        "labels": [{"text": str(v), "value": float(v)} for v in range(1, 6)],
        "readout": "full", "aggregate": "expected", "fidelity": "exact",
        "chat_template_kwargs": {"enable_thinking": False},
    },
    "yes-no-criterion": {
        "name": "yes-no-criterion", "kind": "pointwise",
        "description": "does the response meet the criterion? P(yes) over {yes, no}",
        "messages": [
            {"role": "system", "content": "You check whether a response meets a criterion. Answer yes or no only."},
            {"role": "user", "content": "Instruction:\n{instruction}\n\nResponse:\n{response}\n\n"
                                        "Criterion: {criterion}\n\nDoes the response meet the criterion?"}],
        "labels": [{"text": "yes", "value": 1.0}, {"text": "no", "value": 0.0}],
        "readout": "softmax", "aggregate": "p_first", "fidelity": "exact",
        "chat_template_kwargs": {"enable_thinking": False},
    },
    "pollux-4b-criterion": {
        "name": "pollux-4b-criterion", "kind": "pointwise",
        "description": "ai-forever/Pollux-4B-Judge: one criterion against its rubric, the score as one integer "
                       "(0-2), thinking off; trained to write a rationale too, so read here as `forced`",
        "messages": [
            {"role": "user", "content": "### Task:\n{instruction}\n\n### Response to evaluate:\n{response}\n\n"
                                        "### Criterion:\n{criterion}\n\n### Rubric:\n{rubric}\n\n"
                                        "Evaluate the response against the criterion using the rubric. "
                                        "Return only one integer: the score."}],
        "labels": [{"text": str(v), "value": float(v)} for v in range(0, 3)],
        "readout": "full", "aggregate": "expected", "fidelity": "forced", "rationale_first": True,
        "assistant_prefix": "Score: ",
        "chat_template_kwargs": {"enable_thinking": False},
    },
}


def builtin_spec(name: str) -> JudgeSpec:
    if name not in BUILTIN:
        raise KeyError(name)
    return spec_from_dict(BUILTIN[name], where=f"built-in spec {name!r}")
