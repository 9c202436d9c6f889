"""Things the project builds itself so that it runs with no download: tokenizer, tiny judges, sample."""

from .checkpoint import build_checkpoint, build_model, default_checkpoint, qwen3_5_text_config
from .tokenizer import tokenizer_dir

__all__ = ["build_checkpoint", "build_model", "default_checkpoint", "qwen3_5_text_config", "tokenizer_dir"]
