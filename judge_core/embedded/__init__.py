"""Things the project builds itself so that it runs with no download: tokenizer, tiny judges, sample."""

from .checkpoint import build_checkpoint, build_model, default_checkpoint, qwen3_5_text_config
from .resolve import EMBEDDED, model_label, resolve_model
from .tokenizer import tokenizer_dir

__all__ = ["EMBEDDED", "build_checkpoint", "build_model", "default_checkpoint", "model_label", "qwen3_5_text_config",
           "resolve_model", "tokenizer_dir"]
