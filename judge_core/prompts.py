"""Request -> prompt: the judge's exact system message, JSON user message and chat template (DESIGN §1)."""

from __future__ import annotations

import json

SYSTEM_PROMPT = (
    "You are a specialized AI assistant tasked with evaluating two responses to a given instruction. "
    "Your purpose is to fairly compare the quality of each response and select the better one. "
    "The user provides the instruction and the two responses A and B. "
    "Evaluate based on accuracy, clarity, and originality, considering repetitive or unoriginal responses as lower quality."
)


def user_content(instruction: str, a: str, b: str, *, ascii_json: bool = True) -> str:
    """The user message: a JSON object with keys instruction, A, B, in that order.

    ascii_json=True is the card's reference code (`json.dumps` default, \\uXXXX escapes);
    False is the card's example (`ensure_ascii=False`), ~15% fewer tokens on creative writing.
    """
    return json.dumps({"instruction": instruction, "A": a, "B": b}, ensure_ascii=ascii_json)


def messages(instruction: str, a: str, b: str, *, ascii_json: bool = True) -> list[dict]:
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": user_content(instruction, a, b, ascii_json=ascii_json)},
    ]


def check_template_kwargs(chat_template_kwargs) -> dict:
    """The chat template's extra variables (e.g. {"enable_thinking": False}) as a plain dict.

    Passed as one explicit dict, never as **kwargs, so that a misspelled judge option is an error
    instead of a template variable nobody reads."""
    if chat_template_kwargs is None:
        return {}
    if not isinstance(chat_template_kwargs, dict) or not all(isinstance(k, str) for k in chat_template_kwargs):
        raise TypeError(f"chat_template_kwargs must be a dict with str keys, got {chat_template_kwargs!r}")
    reserved = {"messages", "tokenize", "add_generation_prompt"} & set(chat_template_kwargs)
    if reserved:
        raise ValueError(f"chat_template_kwargs may not set {sorted(reserved)}: the judge sets them")
    return dict(chat_template_kwargs)


def render_prompt(tokenizer, instruction: str, a: str, b: str, *, ascii_json: bool = True,
                  chat_template_kwargs: dict | None = None) -> str:
    """The full prompt text through the checkpoint's own chat template (no extra variables unless given)."""
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError("the tokenizer has no chat_template: the judge needs the checkpoint's chat template")
    return tokenizer.apply_chat_template(
        messages(instruction, a, b, ascii_json=ascii_json), tokenize=False, add_generation_prompt=True,
        **(chat_template_kwargs or {}))
