"""Tiny random judges the project builds itself: the embedded default, test fixtures, bench models.

Weights are random, so verdicts mean nothing; what matters is that the checkpoints have exactly the
layout of the real ones (text-only `model.layers.N...` or multimodal `model.language_model.layers.N...`
plus `model.visual.*`), the real vocabulary size and the real tokenizer, so that every loader and
every prompt path is exercised as it would be on `selfhypnosis-ai/Qwen3.5-4B-Creative-Writing-Judge`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch

from .tokenizer import cache_dir, copy_tokenizer_to

# The embedded default's name in the cache; a new name whenever what it builds changes.
EMBEDDED_NAME = "tiny-qwen3_5-judge-v1"
# What a complete checkpoint dir holds: a build interrupted before the last of these was written is redone.
CHECKPOINT_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")

LAYOUTS = ("text", "multimodal", "qwen3")

# Real Qwen3.5 vocabulary (the tokenizer's special tokens sit at 248044..248076).
QWEN3_5_VOCAB = 248320


def qwen3_5_text_config(size: str = "tiny", **overrides):
    """A Qwen3.5 text config: "tiny" (CPU tests) or "4b" (the judge's real shape, DESIGN §2)."""
    from transformers import Qwen3_5TextConfig

    if size == "tiny":
        # Four layers so that the 3:1 linear/full pattern holds once; widths divisible by 8 so the
        # tiny model can be GPTQ-packed.
        fields = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
                      num_key_value_heads=2, head_dim=16, linear_key_head_dim=16, linear_value_head_dim=16,
                      linear_num_key_heads=2, linear_num_value_heads=4)
    elif size == "4b":
        fields = dict(hidden_size=2560, intermediate_size=9216, num_hidden_layers=32, num_attention_heads=16,
                      num_key_value_heads=4, head_dim=256, linear_key_head_dim=128, linear_value_head_dim=128,
                      linear_num_key_heads=16, linear_num_value_heads=32)
    else:
        raise ValueError(f"unknown model size {size!r}: expected 'tiny' or '4b'")
    fields.update(vocab_size=QWEN3_5_VOCAB, tie_word_embeddings=True, max_position_embeddings=32768,
                  linear_conv_kernel_dim=4, bos_token_id=None, eos_token_id=248046, pad_token_id=248044)
    fields.update(overrides)
    return Qwen3_5TextConfig(**fields)


def _tiny_vision_config():
    from transformers.models.qwen3_5.configuration_qwen3_5 import Qwen3_5VisionConfig

    return Qwen3_5VisionConfig(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                               patch_size=4, num_position_embeddings=16)


@torch.no_grad()
def _spread_weights(model: torch.nn.Module, seed: int, scale: float) -> None:
    """Redraw every floating weight so the random judge has opinions.

    The stock init (std 0.02, norms at exactly 1) makes a 4-layer model's "A" and "B" logits almost
    equal, so every p1 would be ~50% and a parity test could not tell right from wrong.
    """
    # One generator per device, each seeded alike. The noise is drawn where the parameter lives: a
    # CUDA model (the 4B bench shape) never moves gigabytes of CPU noise over PCIe, and mixing a CPU
    # generator's output into CUDA weights is what broke the 4B build. CPU parameters consume the CPU
    # generator in parameter order exactly as before, so the tiny test models stay bit-identical.
    generators: dict[torch.device, torch.Generator] = {}
    for name, p in model.named_parameters():
        if not p.is_floating_point():
            continue
        if p.device not in generators:
            generators[p.device] = torch.Generator(device=p.device).manual_seed(seed)
        noise = torch.randn(p.shape, generator=generators[p.device], dtype=torch.float32, device=p.device)
        if name.endswith("A_log") or name.endswith("dt_bias"):
            p.add_((0.1 * noise).to(p.dtype))
        elif p.ndim == 1:  # norm weights, biases: stay near their init
            p.add_((0.1 * noise).to(p.dtype))
        else:
            fan_in = p.shape[-1]
            p.copy_((noise * (scale / fan_in**0.5)).to(p.dtype))


def build_model(layout: str = "text", *, size: str = "tiny", seed: int = 0, scale: float = 1.0,
                dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu", **config_overrides):
    """An in-memory random model with the given layout (no tokenizer, nothing written)."""
    from transformers import Qwen3_5Config, Qwen3_5ForCausalLM, Qwen3_5ForConditionalGeneration

    if layout not in LAYOUTS:
        raise ValueError(f"unknown checkpoint layout {layout!r}: expected one of {LAYOUTS}")
    torch.manual_seed(seed)
    if layout == "qwen3":
        from transformers import Qwen3Config, Qwen3ForCausalLM

        cfg = Qwen3Config(vocab_size=QWEN3_5_VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, head_dim=16, tie_word_embeddings=True,
                          max_position_embeddings=32768, eos_token_id=248046, pad_token_id=248044,
                          **config_overrides)
        with torch.device(device):
            model = Qwen3ForCausalLM(cfg).to(dtype)
    elif layout == "text":
        cfg = qwen3_5_text_config(size, **config_overrides)
        with torch.device(device):
            model = Qwen3_5ForCausalLM(cfg).to(dtype)
    else:
        text = qwen3_5_text_config(size, **config_overrides)
        cfg = Qwen3_5Config(text_config=text.to_dict(), vision_config=_tiny_vision_config().to_dict(),
                            tie_word_embeddings=True)
        with torch.device(device):
            model = Qwen3_5ForConditionalGeneration(cfg).to(dtype)
    _spread_weights(model, seed, scale)
    model.tie_weights()
    return model.eval()


def build_checkpoint(out_dir: str | os.PathLike, layout: str = "text", *, seed: int = 0, scale: float = 1.0,
                     **config_overrides) -> Path:
    """Write a tiny random judge (safetensors + config + real Qwen3.5 tokenizer) to `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = build_model(layout, seed=seed, scale=scale, **config_overrides)
    model.save_pretrained(str(out))
    copy_tokenizer_to(out)
    return out


def is_complete(path: Path) -> bool:
    return all((path / name).is_file() for name in CHECKPOINT_FILES)


def default_checkpoint() -> Path:
    """The embedded default judge: a tiny random text-layout Qwen3.5, built once into the cache.

    Built in a temporary directory and renamed into place, so an interrupted build (Ctrl-C) or a second
    process building at the same time never leaves a half-written judge behind; an incomplete one left
    by an older version is rebuilt.
    """
    target = cache_dir() / EMBEDDED_NAME
    if is_complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{EMBEDDED_NAME}-"))
    try:
        build_checkpoint(tmp, "text", seed=0)
        if target.exists() and not is_complete(target):
            shutil.rmtree(target, ignore_errors=True)   # a partial build from before atomic builds
        try:
            tmp.rename(target)
        except OSError:
            if not is_complete(target):  # not a lost race: something else is in the way
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
