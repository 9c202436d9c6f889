"""Backend `hf`: any decoder-only transformers checkpoint, right-padded batches, label rows only.

Right padding with no attention mask is exact for causal models: no real token ever looks at the
padding to its right (DESIGN §3). The base model's output is already final-normed; we gather each
row's last real position and multiply by the label rows of the output embedding only, so the
[tokens x 248k] logits tensor is never built.

No prefix sharing (`shares_prefixes = False`): every prompt is computed whole, shared prefix or not;
`Judge(share_prefixes=True)` over this backend plans and runs exactly as with sharing off.
"""

from __future__ import annotations

import contextlib
from typing import Sequence

import torch

from ..candidate_head import read_candidate_head
from ..checkpoint import Checkpoint, text_config
from ..dtypes import check_dtype
from ..loader import load_hf_model
from .base import Backend, PendingLogits, device_scope


class HFBackend(Backend):
    name = "hf"
    counts_padding = True
    shares_prefixes = False

    def __init__(self, checkpoint: Checkpoint | str, *, dtype: torch.dtype, device: torch.device,
                 label_ids: list[int], full_vocab: bool = False):
        """checkpoint: a Checkpoint, or a checkpoint dir / hub id (opened here). full_vocab: return
        full-vocabulary log-probabilities of the label tokens (a spec's readout "full"), not logits."""
        ckpt = Checkpoint.open(checkpoint)
        self.device = torch.device(device)
        self.dtype = check_dtype(dtype)
        self.label_ids = [int(i) for i in label_ids]
        self.model = load_hf_model(ckpt, dtype=dtype, device=self.device)
        self.base = self.model.base_model  # embeddings + layers + final norm, no lm_head
        # The model's config object, not the dict: it holds the class defaults config.json may omit.
        text = text_config(self.model.config)
        self.max_context = int(getattr(text, "max_position_embeddings", None) or 32768)
        pad = getattr(text, "pad_token_id", None)
        self.pad_id = int(pad) if pad is not None else 0  # any valid id: nothing ever reads it
        # The label rows only (a GPTQ head read dequantized), with bias and softcap if the model has them.
        self.head = read_candidate_head(self.model.get_output_embeddings(), label_ids,
                                        softcap=getattr(text, "final_logit_softcapping", None),
                                        full_vocab=full_vocab).to(self.device)

    def candidate_logits_async(self, batch: Sequence[Sequence[int]]):
        """Launch the batch; `.result()` of the handle waits for the logits of the spec's label tokens
        (label_ids), [rows, C] float32 on the CPU."""
        from ..ops.kernels import no_tf32
        # fp32 is exact fp32 on a GPU too: TF32 off (the GDN kernels are routed by hf_kernels).
        exact = no_tf32() if self.device.type == "cuda" and self.dtype == torch.float32 else contextlib.nullcontext()
        with device_scope(self.device), exact:
            return PendingLogits(self._device_logits(batch))

    @torch.inference_mode()
    def _device_logits(self, batch: Sequence[Sequence[int]]) -> torch.Tensor:
        rows = len(batch)
        lengths = torch.tensor([len(s) for s in batch])
        width = int(lengths.max())
        ids = torch.full((rows, width), self.pad_id, dtype=torch.long)
        for r, seq in enumerate(batch):
            ids[r, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        if self.device.type == "cuda":
            ids = ids.pin_memory()
        ids = ids.to(self.device, non_blocking=True)
        hidden = self.base(input_ids=ids, use_cache=False).last_hidden_state  # [rows, width, H]
        last_cols = lengths - 1
        if self.device.type == "cuda":  # a pageable copy would synchronize the stream every batch
            last_cols = last_cols.pin_memory()
        last = hidden[torch.arange(rows, device=self.device), last_cols.to(self.device, non_blocking=True)]  # [rows, H]
        return self.head.logits(last)
