"""The reference twin: the card's algorithm, the slow and obvious way (DESIGN §1).

One prompt at a time, no batching, no padding, the model's own head over the whole vocabulary at the
last position, a full-vocabulary log-softmax,
then the logprobs of "A" and "B". With `top_k=10` it reproduces the card's vLLM call
(`logprobs=10`): a label token missing from the top 10 gets logprob -100. Tests and the bench hold
every fast path against this.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterable

import torch

from .backends.base import device_scope
from .checkpoint import Checkpoint
from .embedded.resolve import resolve_model
from .dtypes import check_dtype, parse_dtype
from .loader import load_hf_model
from .ops.kernels import no_tf32
from .pairs import PairError, normalize_pair
from .plan import dual_pass
from .prompts import check_template_kwargs, render_prompt
from .scoring import PairScore, combine_passes
from .tokenizer_cache import load_tokenizer

MISSING_LOGPROB = -100.0  # the card's stand-in for a token outside the returned top-k


class ReferenceJudge:
    def __init__(self, model: torch.nn.Module, tokenizer, *, top_k: int | None = None, ascii_json: bool = True,
                 chat_template_kwargs: dict | None = None, spec=None):
        """spec: a judge spec (judge_core.specs.load_spec's argument) for `judge_items`; None is the card's."""
        from .specs import load_spec
        from .specs.render import label_token_ids

        self.model = model.eval()
        self.tokenizer = tokenizer
        self.top_k = top_k
        self.ascii_json = ascii_json
        self.chat_template_kwargs = check_template_kwargs(chat_template_kwargs)
        self.spec = load_spec(spec)
        # The spec's label tokens (for the default spec "A", "B"), each checked as one token in context: as Judge.
        self.label_ids = label_token_ids(tokenizer, self.spec, ascii_json=ascii_json,
                                         chat_template_kwargs=self.chat_template_kwargs)

    @classmethod
    def from_pretrained(cls, path, *, dtype: torch.dtype | str = torch.float32, device="cpu", top_k: int | None = None,
                        ascii_json: bool = True, chat_template_kwargs: dict | None = None,
                        revision: str | None = None, quantization: str | None = None,
                        fp8_compute: str = "twin", spec=None) -> "ReferenceJudge":
        """quantization="fp8": the same W8A8 quantize-at-load as Judge (an FP8 checkpoint is fp8 anyway);
        fp8_compute defaults to the twin, the exact reference of the GPU path."""

        from .fp8.load import plan_fp8

        dtype = check_dtype(parse_dtype(dtype))
        ckpt = Checkpoint.open(resolve_model(path, revision=revision))
        fp8 = plan_fp8(quantization, ckpt.quant, torch.device(device), fp8_compute, where=str(ckpt.path))
        model = load_hf_model(ckpt, dtype=dtype, device=torch.device(device))
        if fp8 is not None:
            fp8.apply_(model)
        return cls(model, load_tokenizer(ckpt.path), top_k=top_k, ascii_json=ascii_json,
                   chat_template_kwargs=chat_template_kwargs, spec=spec)

    @torch.inference_mode()
    def pass_logprobs(self, instruction: str, a: str, b: str) -> tuple[tuple[float, float], int]:
        """(logprob of "A", logprob of "B") for one pass, and the prompt's token count."""
        text = render_prompt(self.tokenizer, instruction, a, b, ascii_json=self.ascii_json,
                             chat_template_kwargs=self.chat_template_kwargs)
        out, tokens = self.text_logprobs(text)
        return (out[0], out[1]), tokens

    @torch.inference_mode()
    def text_logprobs(self, text: str) -> tuple[list[float], int]:
        """Full-vocabulary logprobs of each label token (label_ids) after `text` (a whole prompt), and its
        token count."""
        ids = self.tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        param = next(self.model.parameters())
        # fp32 is exact fp32 (no TF32 in cuBLAS/cuDNN), as in the engine's fp32 mode (ops/kernels.py).
        exact = no_tf32() if param.device.type == "cuda" and param.dtype == torch.float32 else contextlib.nullcontext()
        # logits_to_keep=1: the full head at the last position only, as vLLM computes it for max_tokens=1.
        with exact, device_scope(param.device):
            logits = self.model(input_ids=ids.to(param.device), use_cache=False, logits_to_keep=1).logits[0, -1].float()
        logprobs = torch.log_softmax(logits, dim=-1)
        out = []
        if self.top_k is not None:
            top = set(torch.topk(logprobs, self.top_k).indices.tolist())
        for token_id in self.label_ids:
            if self.top_k is not None and token_id not in top:
                out.append(MISSING_LOGPROB)
            else:
                out.append(float(logprobs[token_id]))
        return out, int(ids.shape[1])

    def judge_items(self, items: Iterable[Any]) -> list:
        """Any spec's items the slow way: each pass rendered and run alone, the full-vocabulary logprobs of
        the labels, then the spec's arithmetic (PairScore for pairwise kinds, PointScore for pointwise)."""
        from .specs.items import ItemError, normalize_item, pass_slots
        from .specs.readout import PointScore, pair_from_passes, point_score
        from .specs.render import render_spec_prompt

        spec, results = self.spec, []
        for raw in items:
            try:
                passes = pass_slots(spec, normalize_item(spec, raw))
            except ItemError as e:
                results.append(PairScore.failed(str(e)) if spec.pairwise else
                               PointScore.failed(str(e), len(spec.labels)))
                continue
            runs = [self.text_logprobs(render_spec_prompt(self.tokenizer, spec, slots, ascii_json=self.ascii_json,
                                                          chat_template_kwargs=self.chat_template_kwargs))
                    for slots in passes]
            if spec.pairwise:  # a softmax over two logprobs is the softmax over the two logits
                results.append(pair_from_passes(spec, [r[0] for r in runs], [r[1] for r in runs]))
            else:
                results.append(point_score(spec, runs[0][0], runs[0][1]))
        return results

    def compare(self, instruction: str, response_1: str, response_2: str) -> PairScore:
        first, second = dual_pass((instruction, response_1, response_2))
        lp1, n1 = self.pass_logprobs(*first)
        lp2, n2 = self.pass_logprobs(*second)
        return combine_passes(lp1, lp2, (n1, n2))

    def compare_many(self, pairs: Iterable[Any], *, progress: bool = False) -> list[PairScore]:
        pairs = list(pairs)
        if progress:
            from tqdm.auto import tqdm

            pairs = tqdm(pairs, unit="pair", desc="reference")
        results = []
        for raw in pairs:
            try:
                results.append(self.compare(*normalize_pair(raw)))
            except PairError as e:
                results.append(PairScore.failed(str(e)))
        return results
