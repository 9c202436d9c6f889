"""GPTQLinear: a Linear whose weight lives as 4-bit GPTQ tensors and is made dense only for its matmul.

The dense weight exists only inside forward and is freed when the matmul returns, so at most one
layer's dequantized weight is alive at a time and memory stays near the 4-bit size (the caching
allocator reuses the same block layer after layer).
"""

from __future__ import annotations

import torch
from torch import nn

from .dequant import dequantize, dequantize_reference
from .format import PACK, QuantConfig


class GPTQLinear(nn.Module):
    """y = x @ W^T + b with W [out, in] stored as GPTQ 4-bit.

    Buffers (names as in the checkpoint): qweight int32 [in/8, out], qzeros int32 [groups, out/8],
    scales fp16 [groups, out], g_idx int32 [in], bias [out] (optional, float).
    """

    def __init__(self, in_features: int, out_features: int, n_groups: int, cfg: QuantConfig, *, bias: bool = False,
                 device=None):
        super().__init__()
        if in_features % PACK or out_features % PACK:
            raise ValueError(f"GPTQLinear: in_features={in_features}, out_features={out_features}: both must be "
                             f"multiples of {PACK} to pack 4-bit values into int32 words")
        self.in_features, self.out_features, self.n_groups, self.cfg = in_features, out_features, n_groups, cfg
        int32 = dict(dtype=torch.int32, device=device)
        self.register_buffer("qweight", torch.empty(in_features // PACK, out_features, **int32))
        self.register_buffer("qzeros", torch.empty(n_groups, out_features // PACK, **int32))
        self.register_buffer("scales", torch.empty(n_groups, out_features, dtype=torch.float16, device=device))
        self.register_buffer("g_idx", torch.empty(in_features, **int32))
        if bias:
            self.register_buffer("bias", torch.empty(out_features, device=device))
        else:
            self.bias = None

    def _apply(self, fn, recurse=True):
        """Device moves apply to all buffers, but a model-wide dtype cast (`.to(bf16)`, `.half()`) must not
        re-round the stored fp16 scales: they go through `fn` as their int16 bits, which casts skip."""
        scales = self.scales
        super()._apply(fn, recurse)
        if scales is not None and scales.dtype == torch.float16 and self.scales.dtype != torch.float16:
            self.scales = fn(scales.view(torch.int16)).view(torch.float16)
        return self

    @classmethod
    def from_packed(cls, tensors: dict[str, torch.Tensor], cfg: QuantConfig, bias: torch.Tensor | None = None,
                    device=None) -> "GPTQLinear":
        """A layer from checkpoint tensors {qweight, qzeros, scales, g_idx} (e.g. `algorithm.pack_layer`)."""
        qweight = tensors["qweight"]
        layer = cls(qweight.shape[0] * PACK, qweight.shape[1], tensors["scales"].shape[0], cfg,
                    bias=bias is not None, device="meta")
        device = device or qweight.device
        for name in ("qweight", "qzeros", "scales", "g_idx"):
            expected = getattr(layer, name)
            value = tensors[name].to(device=device, dtype=expected.dtype)
            if value.shape != expected.shape:
                raise ValueError(f"GPTQLinear.from_packed: {name} shape {tuple(value.shape)} != "
                                 f"{tuple(expected.shape)}")
            setattr(layer, name, value)
        if bias is not None:
            layer.bias = bias.to(device)
        return layer

    def dequantized_weight_t(self, dtype: torch.dtype) -> torch.Tensor:
        """W^T [in, out] in `dtype` (kernel on CUDA, twin elsewhere)."""
        return dequantize(self.qweight, self.qzeros, self.scales, self.g_idx, self.cfg, dtype)

    def dequantized_weight(self, dtype: torch.dtype = torch.float32, *, reference: bool = False) -> torch.Tensor:
        """W [out, in] in `dtype`, as an nn.Linear would hold it (a copy: callers own the memory)."""
        fn = dequantize_reference if reference else dequantize
        return fn(self.qweight, self.qzeros, self.scales, self.g_idx, self.cfg, dtype).t().contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., in] -> [..., out] in x's dtype."""
        weight_t = self.dequantized_weight_t(x.dtype)
        y = torch.matmul(x, weight_t)
        del weight_t  # the only dense copy: freed before the next layer dequantizes
        if self.bias is not None:
            y = y + self.bias.to(y.dtype)
        return y

    def extra_repr(self) -> str:
        c = self.cfg
        return (f"in_features={self.in_features}, out_features={self.out_features}, bits={c.bits}, "
                f"group_size={c.group_size}, desc_act={c.desc_act}, sym={c.sym}, format={c.checkpoint_format}, "
                f"bias={self.bias is not None}")
