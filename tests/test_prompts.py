import json

import pytest

from judge_core.prompts import SYSTEM_PROMPT, render_prompt, user_content


# The model card's system message, word for word (DESIGN.md section 1): one changed character moves every verdict.
CARD_SYSTEM_PROMPT = (
    "You are a specialized AI assistant tasked with evaluating two responses to a given instruction. Your purpose "
    "is to fairly compare the quality of each response and select the better one. The user provides the "
    "instruction and the two responses A and B. Evaluate based on accuracy, clarity, and originality, "
    "considering repetitive or unoriginal responses as lower quality.")


def test_system_prompt_is_the_cards_text():
    assert SYSTEM_PROMPT == CARD_SYSTEM_PROMPT


def test_user_content_ascii_and_unicode():
    text = "He said “hi” — café"
    ascii_json = user_content("Write.", text, "b")
    assert "\\u201c" in ascii_json and "“" not in ascii_json
    assert list(json.loads(ascii_json)) == ["instruction", "A", "B"]
    assert json.loads(ascii_json)["A"] == text
    unicode_json = user_content("Write.", text, "b", ascii_json=False)
    assert "“" in unicode_json and json.loads(unicode_json) == json.loads(ascii_json)


def test_render_prompt_uses_template_and_kwargs(qwen_tokenizer):
    prompt = render_prompt(qwen_tokenizer, "I", "a", "b")
    assert prompt.startswith("<|im_start|>system\n" + SYSTEM_PROMPT + "<|im_end|>\n<|im_start|>user\n")
    assert prompt.endswith("<|im_end|>\n<|im_start|>assistant\n<think>\n")
    no_think = render_prompt(qwen_tokenizer, "I", "a", "b", chat_template_kwargs={"enable_thinking": False})
    assert no_think.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")


def test_missing_chat_template_is_a_clear_error(qwen_tokenizer):
    class NoTemplate:
        chat_template = None

    with pytest.raises(ValueError, match="no chat_template"):
        render_prompt(NoTemplate(), "I", "a", "b")
