"""The candidate tokens' rows of the output head: all the judge ever needs of a 248k-row lm_head.

One function for both backends: the hf backend passes the transformers model's output embedding, the
packed loader the head it read from the checkpoint. A head may be an nn.Linear (untied lm_head, maybe
with a bias), an nn.Embedding (tied), or a quantized layer (GPTQLinear, FP8 layers: anything with
`dequantized_weight(dtype)`, read dequantized). Rows, bias and softcap come back in float32: the head
matmul costs nothing at two rows, so it is done in full precision.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn


@dataclass
class CandidateHead:
    rows: torch.Tensor                 # float32 [C, hidden]
    bias: torch.Tensor | None = None   # float32 [C]
    softcap: float | None = None       # final_logit_softcapping of the config (Gemma-style), None for Qwen

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden [N, hidden] (any float dtype) -> float32 logits [N, C]."""
        out = hidden.float() @ self.rows.T
        if self.bias is not None:
            out = out + self.bias
        if self.softcap:
            out = torch.tanh(out / self.softcap) * self.softcap
        return out


def read_candidate_head(head: nn.Module | torch.Tensor, candidate_ids: Sequence[int], *,
                        softcap: float | None = None) -> CandidateHead:
    """The rows of `candidate_ids` of `head` (a module as above, or a weight tensor [vocab, hidden])."""
    ids = [int(i) for i in candidate_ids]
    if isinstance(head, torch.Tensor):
        weight, bias = head, None
    elif hasattr(head, "dequantized_weight"):
        weight, bias = head.dequantized_weight(torch.float32), getattr(head, "bias", None)
    else:
        weight, bias = head.weight, getattr(head, "bias", None)
    vocab = weight.shape[0]
    bad = [i for i in ids if not 0 <= i < vocab]
    if bad:
        raise ValueError(f"candidate token ids {bad} are outside the head's {vocab} rows")
    index = torch.tensor(ids, dtype=torch.long, device=weight.device)
    rows = weight.detach().index_select(0, index).float()
    bias_rows = None if bias is None else bias.detach().index_select(0, index.to(bias.device)).float()
    return CandidateHead(rows=rows, bias=bias_rows, softcap=float(softcap) if softcap else None)
