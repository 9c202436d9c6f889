"""GPTQ 4-bit judges without auto-gptq: the format, a dequantizing Linear, a loader and a quantizer.

Heavy pieces (transformers, triton) are imported inside the functions that need them.
"""

from .format import QuantConfig, is_gptq_checkpoint
from .linear import GPTQLinear
from .loader import load_gptq_model
from .quantize import dequantize_checkpoint, quantize_checkpoint

__all__ = ["GPTQLinear", "QuantConfig", "dequantize_checkpoint", "is_gptq_checkpoint", "load_gptq_model",
           "quantize_checkpoint"]
