"""Shared fixtures: tiny random judges with the real Qwen3.5 tokenizer, built once per test session."""

from __future__ import annotations

import os

import pytest

# transformers picks flash-linear-attention by import alone (DESIGN §3); tests run the torch paths.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_ckpt_factory(tmp_path_factory):
    """build(layout="text"|"multimodal"|"qwen3", seed=0, **config_overrides) -> checkpoint dir (cached)."""
    from judge_core.embedded import build_checkpoint

    built: dict = {}

    def build(layout: str = "text", seed: int = 0, **overrides):
        key = (layout, seed, tuple(sorted(overrides.items())))
        if key not in built:
            out = tmp_path_factory.mktemp(f"tiny-{layout}-{seed}")
            built[key] = build_checkpoint(out, layout, seed=seed, **overrides)
        return built[key]

    return build


@pytest.fixture(scope="session")
def tiny_text_ckpt(tiny_ckpt_factory):
    return tiny_ckpt_factory("text")


@pytest.fixture(scope="session")
def tiny_mm_ckpt(tiny_ckpt_factory):
    return tiny_ckpt_factory("multimodal")


@pytest.fixture(scope="session")
def tiny_qwen3_ckpt(tiny_ckpt_factory):
    return tiny_ckpt_factory("qwen3")


@pytest.fixture(scope="session")
def qwen_tokenizer():
    from transformers import AutoTokenizer

    from judge_core.embedded import tokenizer_dir

    return AutoTokenizer.from_pretrained(str(tokenizer_dir()))


@pytest.fixture(scope="session")
def reference_scores():
    """scores(path, pairs) -> the reference twin's results (judge_core.reference), computed once per
    (checkpoint, pairs) for the whole test run: the twin is the slowest thing the parity tests run."""
    from judge_core.reference import ReferenceJudge

    twins: dict = {}
    results: dict = {}

    def scores(path, pairs):
        key = (str(path), tuple(tuple(p) for p in pairs))
        if key not in results:
            if str(path) not in twins:
                twins[str(path)] = ReferenceJudge.from_pretrained(path)
            results[key] = twins[str(path)].compare_many(pairs)
        return results[key]

    return scores
