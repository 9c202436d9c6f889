"""FP8 (e4m3) W8A8 for the judge: the checkpoint format, FP8 Linears with a CPU twin, quantize-at-load,
an FP8 checkpoint writer and a drift measure. transformers / safetensors are imported where used.
"""

from .drift import compare_scores
from .format import FP8_DTYPE, FP8_MAX, FP8Config, is_fp8_config
from .linear import FP8FusedLinear, FP8Linear, resolve_compute
from .quantize import DEFAULT_SKIP, dequantize_fp8_tensor, float_reason, quantize_activation, quantize_weight
from .reader import FP8CheckpointReader
from .swap import quantize_model_fp8_
from .writer import write_fp8_checkpoint

__all__ = ["DEFAULT_SKIP", "FP8CheckpointReader", "FP8Config", "FP8FusedLinear", "FP8Linear", "FP8_DTYPE", "FP8_MAX",
           "compare_scores", "dequantize_fp8_tensor", "float_reason", "is_fp8_config", "quantize_activation",
           "quantize_model_fp8_", "quantize_weight", "resolve_compute", "write_fp8_checkpoint"]
