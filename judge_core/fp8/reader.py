"""Reading a pre-quantized FP8 checkpoint through any tensor reader: fp8 weights come out dequantized
(float32), their scale tensors disappear, and the names of the layers that were fp8 are remembered so
that quantize-at-load (`quantize_model_fp8_(model, only=reader.fp8_modules)`) turns exactly those back
into FP8Linears. Block-scaled weights are thereby re-rounded per output channel (fp8.linear explains why).

The wrapped reader needs `keys()`, `get(key)`, `shape(key)`, `in` and `path` (models.weights'
CheckpointReader / StateDictReader); keys are whatever it uses (ours or the checkpoint's).
"""

from __future__ import annotations

import torch

from .format import FP8_DTYPE, FP8Config
from .quantize import dequantize_fp8_tensor

SCALE_SUFFIXES = (".weight_scale_inv", ".weight_scale")          # transformers / DeepSeek, vLLM per-tensor
STATIC_SUFFIXES = (".activation_scale", ".input_scale")


class FP8CheckpointReader:
    """A reader over `reader` that serves fp8 `<m>.weight` as float32 W = fp8 * scale and hides the scales."""

    def __init__(self, reader, cfg: FP8Config):
        self.reader, self.cfg, self.path = reader, cfg, reader.path
        keys = set(reader.keys())
        static = sorted(k for k in keys if k.endswith(STATIC_SUFFIXES))
        if static:
            raise ValueError(f"{reader.path}: static activation scales {static[:3]} are not supported "
                             "(activation_scheme 'dynamic' only)")
        self._scale_of: dict[str, str] = {}
        for key in keys:
            for suffix in SCALE_SUFFIXES:
                if key.endswith(suffix):
                    weight = key[: -len(suffix)] + ".weight"
                    if weight not in keys:
                        raise ValueError(f"{reader.path}: scale {key!r} has no weight {weight!r}")
                    self._scale_of[weight] = key
        self.fp8_modules = sorted(w.removesuffix(".weight") for w in self._scale_of)
        self._keys = keys - set(self._scale_of.values())

    def keys(self) -> set[str]:
        return set(self._keys)

    def __contains__(self, key: str) -> bool:
        return key in self._keys

    def shape(self, key: str) -> tuple[int, ...]:
        return self.reader.shape(key)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: self.shape(k) for k in self._keys}

    def raw_key(self, key: str) -> str:
        """The checkpoint's own name of `key` (for messages), where the wrapped reader knows it."""
        return self.reader.raw_key(key) if hasattr(self.reader, "raw_key") else key

    def get(self, key: str) -> torch.Tensor:
        tensor = self.reader.get(key)
        scale_key = self._scale_of.get(key)
        if scale_key is None:
            if tensor.dtype == FP8_DTYPE:
                raise ValueError(f"{self.path}: {key!r} is float8 but has no weight_scale_inv / weight_scale")
            return tensor
        if tensor.dtype != FP8_DTYPE:
            raise ValueError(f"{self.path}: {key!r} has a scale but dtype {tensor.dtype}, expected {FP8_DTYPE}")
        scale = self.reader.get(scale_key)
        block = self.cfg.weight_block_size if scale.dim() == 2 and scale.shape[1] != 1 else None
        return dequantize_fp8_tensor(tensor, scale, block)
