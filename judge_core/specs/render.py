"""Slot values -> prompt text through the checkpoint's chat template, and the label tokens checked in context.

The prompt is the chat template over the spec's messages with `add_generation_prompt=True`, then the spec's
forced start of the assistant turn (`assistant_prefix`, e.g. "[[" or "[RESULT] "), if any. Each label must
be exactly ONE token right there: tokenizing prompt + label must give the prompt's tokens plus one. ("10" is
two tokens in Qwen's tokenizer, which splits digits: a 1-10 scale cannot be read from one next token.)
"""

from __future__ import annotations

from typing import Mapping

from .spec import SLOTS, JudgeSpec, SpecError

# Stand-in slot values for the in-context label check: plain words, as any real item would end its message.
_PROBE_VALUES = {slot: f"sample {slot}" for slot in SLOTS}


def spec_messages(spec: JudgeSpec, values: Mapping[str, str], *, ascii_json: bool = True) -> list[dict]:
    return [m.render(values, ascii_json=ascii_json) for m in spec.messages]


def render_spec_prompt(tokenizer, spec: JudgeSpec, values: Mapping[str, str], *, ascii_json: bool = True,
                       chat_template_kwargs: dict | None = None) -> str:
    """The full prompt text of one pass. chat_template_kwargs (the user's) override the spec's own."""
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError("the tokenizer has no chat_template: the judge needs the checkpoint's chat template")
    kwargs = {**spec.template_kwargs(), **(chat_template_kwargs or {})}
    text = tokenizer.apply_chat_template(spec_messages(spec, values, ascii_json=ascii_json), tokenize=False,
                                         add_generation_prompt=True, **kwargs)
    return text + spec.assistant_prefix


def label_token_ids(tokenizer, spec: JudgeSpec, *, ascii_json: bool = True,
                    chat_template_kwargs: dict | None = None) -> list[int]:
    """Each label's token id, checked to be exactly one token in its context (after a real prompt)."""
    prompt = render_spec_prompt(tokenizer, spec, _PROBE_VALUES, ascii_json=ascii_json,
                                chat_template_kwargs=chat_template_kwargs)
    base = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    ids = []
    for i, label in enumerate(spec.labels):
        full = tokenizer(prompt + label.text, add_special_tokens=False)["input_ids"]
        added = full[len(base):] if full[:len(base)] == base else None
        if added is None or len(added) != 1:
            pieces = tokenizer(label.text, add_special_tokens=False)["input_ids"]
            raise SpecError(
                f"spec {spec.name!r}: labels[{i}] {label.text!r} is not one token after the prompt "
                f"({'it merges with the prompt' if added is None else f'{len(added)} tokens: {added}'}; on its own "
                f"{pieces}). Use single-token labels: {_suggestion(label.text)}")
        ids.append(added[0])
    if len(set(ids)) != len(ids):
        raise SpecError(f"spec {spec.name!r}: labels {list(spec.label_texts)} map to repeated token ids {ids}")
    return ids


def _suggestion(text: str) -> str:
    if text.strip().isdigit() and len(text.strip()) > 1:
        return "a scale of single digits (0-9 or 1-9), or letters A-J with their values in `value`"
    if text != text.strip():
        return f"{text.strip()!r} without the surrounding space, or move the space into assistant_prefix"
    return "a shorter word or a single letter, with its meaning in `value`"


def request_messages(spec: JudgeSpec, values: Mapping[str, str], *, ascii_json: bool = True) -> tuple[str, ...]:
    """The rendered contents of the messages that hold request text (those using a slot), in order: what
    prompt_tokens.py tokenizes as plain characters, so that request text can never become control tokens."""
    return tuple(m.render(values, ascii_json=ascii_json)["content"] for m in spec.messages if m.slots())
