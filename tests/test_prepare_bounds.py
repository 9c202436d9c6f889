"""A pair too long for the context by its characters alone is answered before it is rendered or
tokenized (prepare.py), in the library as in the service: one 15 MB response once cost a minute of
tokenizing and a gigabyte of token lists just to learn it was too long."""

from __future__ import annotations

import pytest

from judge_core.api import Judge
from judge_core.prepare import char_limit


@pytest.fixture(scope="module")
def judge(tiny_text_ckpt):
    loaded = Judge.from_pretrained(tiny_text_ckpt, backend="packed", device="cpu", dtype="fp32")
    return Judge(loaded.backend, loaded.tokenizer, max_context=100)


def test_char_bound_answers_before_tokenizing(judge):
    seen: list[int] = []
    real = judge.prompt_tokens

    def recording(prompts, users):
        seen.extend(len(p) for p in prompts)
        return real(prompts, users)

    recording.max_chars_per_token = real.max_chars_per_token
    judge.prompt_tokens = recording
    try:
        limit = char_limit(judge)
        assert limit == 100 * real.max_chars_per_token == 100 * 256  # Qwen3.5: 128-byte tokens, x2 for NFC
        over = ("Write.", "x" * (limit + 1), "y")
        under = ("Write.", "word " * 1000, "y")  # fewer characters than the bound, over 100 tokens
        fits = ("Write.", "ok", "fine")
        scores = judge.compare_many([over, under, fits])
    finally:
        judge.prompt_tokens = real
    print(scores[0].error)
    print(scores[1].error)
    assert scores[0].error == (f"prompt of over 100 tokens ({limit + 8} characters; a token covers at most 256) "
                               "exceeds the model's context of 100 tokens")
    assert scores[0].tokens == (0, 0)  # not tokenized
    # The pair under the character bound is tokenized and found over the context by its tokens.
    assert "exceeds the model's context of 100 tokens" in scores[1].error and scores[1].tokens[0] > 100
    assert scores[2].ok
    assert max(seen) < limit  # the long pair's prompts never reached the tokenizer
