"""Trainer prompts and completions -> the judge's instruction and response text.

Trainers hand over either plain strings or chat messages (TRL's conversational format, slime's
chat prompts): a prompt is a list of {"role", "content"} and a completion a list of assistant
messages; `content` is a string or a list of parts ({"type": "text", "text": ...}).
The judge sees the last user turn as the instruction (the system prompt and earlier turns are the
policy's context, not the task the judge compares on) and the assistant text as the response.
A value that fits neither shape is returned unchanged, so that it becomes that sample's error.
"""

from __future__ import annotations

from typing import Any


def content_text(content: Any) -> Any:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) for p in content):
        texts = [p.get("text") for p in content if p.get("type", "text") == "text"]
        if all(isinstance(t, str) for t in texts):
            return "".join(texts)
    return content


def is_chat(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(m, dict) and "role" in m for m in value)


def instruction_text(prompt: Any) -> Any:
    """A chat prompt -> its last user message's text; anything else unchanged."""
    if is_chat(prompt):
        users = [m for m in prompt if m["role"] == "user"]
        return content_text(users[-1].get("content")) if users else prompt
    return prompt


def response_text(completion: Any) -> Any:
    """A chat completion (assistant messages) -> their text joined; anything else unchanged."""
    if is_chat(completion):
        parts = [content_text(m.get("content")) for m in completion if m["role"] == "assistant"]
        if parts and all(isinstance(p, str) for p in parts):
            return "".join(parts)
    return completion
