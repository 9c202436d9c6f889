"""The label tokens' rows of the output head: all the judge ever needs of a 248k-row lm_head.

The labels are the spec's label tokens (judge_core/specs, their ids `label_ids`): "A"/"B" for the card's
judge, "1".."5" for a rubric score, "yes"/"no" for a criterion. `CandidateHead` gives the logits of those
tokens (the contract's name, as in `candidate_logits`). One head for both backends, any number of rows: the
hf backend passes the transformers model's output embedding, the packed loader the head it read from the
checkpoint. A head may be an nn.Linear (untied lm_head, maybe with a bias), an nn.Embedding (tied), or a
quantized layer (GPTQLinear, FP8 layers: anything with `dequantized_weight(dtype)`, read dequantized). Rows,
bias and softcap are kept in float32: the head matmul costs nothing at a few rows, so it is done in full
precision.

Readout "full" (a spec that reports full-vocabulary probabilities) also needs each row's normaliser,
logsumexp over the whole vocabulary: the head then keeps the full float head module (not a copy) and
returns log-probabilities, logit - logsumexp, computed in float32 over vocabulary slices.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

# Vocabulary rows per slice of the full-vocabulary normaliser: a [slice, hidden] float32 copy at a time
# (32k x 2560 x 4 B = 335 MB at the 4B shape) rather than the whole 248k-row head at once.
NORMALISER_SLICE = 32768


class CandidateHead(nn.Module):
    """The head over the spec's label tokens (label_ids): forward gives the logits of those tokens, [N, C].

    rows: float32 [C, hidden], one per label id; bias: float32 [C] or None; softcap: Gemma-style
    final_logit_softcapping.

    full_head: the whole head module (nn.Linear / nn.Embedding) when the readout is "full"; forward then
    returns full-vocabulary log-probabilities instead of logits.
    """

    def __init__(self, rows: torch.Tensor, bias: torch.Tensor | None = None, softcap: float | None = None,
                 full_head: nn.Module | None = None):
        super().__init__()
        self.register_buffer("rows", rows.float())
        self.register_buffer("bias", None if bias is None else bias.float())
        self.softcap = float(softcap) if softcap else None
        self.full_head = full_head  # a submodule: it moves with the model, and is never copied

    @property
    def full_vocab(self) -> bool:
        return self.full_head is not None

    def _cap(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.tanh(logits / self.softcap) * self.softcap if self.softcap else logits

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden [N, hidden] (any float dtype) -> float32 [N, C]: logits, or log-probabilities (full)."""
        out = hidden.float() @ self.rows.T
        if self.bias is not None:
            out = out + self.bias
        out = self._cap(out)
        if self.full_head is not None:
            out = out - self.log_normaliser(hidden)[:, None]
        return out

    logits = forward  # the name the backends read

    def log_normaliser(self, hidden: torch.Tensor) -> torch.Tensor:
        """logsumexp over the whole vocabulary of each row: float32 [N]."""
        weight = self.full_head.weight
        bias = getattr(self.full_head, "bias", None)
        h = hidden.float()
        parts = []
        for start in range(0, weight.shape[0], NORMALISER_SLICE):
            logits = h @ weight[start:start + NORMALISER_SLICE].float().T
            if bias is not None:
                logits = logits + bias[start:start + NORMALISER_SLICE].float()
            parts.append(torch.logsumexp(self._cap(logits), dim=-1))
        return torch.logsumexp(torch.stack(parts, dim=-1), dim=-1)


def read_candidate_head(head: nn.Module | torch.Tensor, label_ids: Sequence[int], *,
                        softcap: float | None = None, full_vocab: bool = False) -> CandidateHead:
    """The rows of the spec's label tokens `label_ids` of `head` (a module as above, or a weight tensor
    [vocab, hidden]), as a CandidateHead.

    full_vocab: keep `head` for the full-vocabulary normaliser (readout "full"); it must be a float module.
    """
    ids = [int(i) for i in label_ids]
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
    full = None
    if full_vocab:
        if not isinstance(head, nn.Module) or hasattr(head, "dequantized_weight") or \
                not isinstance(getattr(head, "weight", None), torch.Tensor):
            raise ValueError(f"readout 'full' needs the float output head to normalise over the vocabulary; this "
                             f"head is a {type(head).__name__}: use a spec with readout 'softmax'")
        full = head
    index = torch.tensor(ids, dtype=torch.long, device=weight.device)
    rows = weight.detach().index_select(0, index).float()
    bias_rows = None if bias is None else bias.detach().index_select(0, index.to(bias.device)).float()
    return CandidateHead(rows, bias_rows, softcap, full)
