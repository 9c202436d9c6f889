"""One tokenizer per checkpoint directory per process, reloaded when a tokenizer file changes."""

from __future__ import annotations

import shutil

from transformers import AutoTokenizer

from judge_core import Judge
from judge_core.tokenizer_cache import clear_tokenizer_cache, load_tokenizer


def test_judges_on_one_checkpoint_share_the_tokenizer(tiny_text_ckpt):
    first = Judge.from_pretrained(tiny_text_ckpt, backend="packed")
    second = Judge.from_pretrained(tiny_text_ckpt, backend="hf")
    assert first.tokenizer is second.tokenizer
    pair = ("Write a poem.", "Roses.", "Violets.")
    assert first.prompt(*pair) == second.prompt(*pair)
    # the numbers do not depend on which judge loaded the tokenizer
    alone = Judge(first.backend, AutoTokenizer.from_pretrained(str(tiny_text_ckpt))).compare(*pair)
    assert alone.p1 == first.compare(*pair).p1 and alone.tokens == first.compare(*pair).tokens


def test_a_changed_tokenizer_file_loads_afresh(tiny_text_ckpt, tmp_path):
    copy = tmp_path / "ckpt"
    shutil.copytree(tiny_text_ckpt, copy)
    clear_tokenizer_cache()
    before = load_tokenizer(copy)
    assert load_tokenizer(copy) is before
    config = copy / "tokenizer_config.json"
    config.write_text(config.read_text(encoding="utf-8") + "\n", encoding="utf-8")   # same content, new size
    after = load_tokenizer(copy)
    assert after is not before
    assert after("hello world")["input_ids"] == before("hello world")["input_ids"]
