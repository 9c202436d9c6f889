"""The baseline a careful user would write with plain transformers, no judge_core engine.

What "careful" means here: the card's prompt built by hand, both passes tokenized up front, prompts
sorted by length so that each batch holds similar lengths, a fixed number of rows per batch, right
padding with the tokenizer's attention mask passed as usual, and the model head run at one position
per row only (the `logits_to_keep=1` idea: with right padding each row's last real token sits at a
different index, so the user takes the base model's hidden state there and applies `lm_head` to it).
The head is still the full vocabulary and a log-softmax follows, as one would write it from the card.

What it does not do (and judge_core does): token-budget batches instead of fixed rows, candidate rows
only in the head, no mask materialisation, OOM splitting, a packed (padding-free) forward.
"""

from __future__ import annotations

import json
import time
from typing import Sequence

import torch

from judge_core.scoring import PairScore, combine_passes

from .workloads import BenchPair


def _card_prompt(tokenizer, system_prompt: str, instruction: str, a: str, b: str, ascii_json: bool) -> str:
    user = json.dumps({"instruction": instruction, "A": a, "B": b}, ensure_ascii=ascii_json)
    return tokenizer.apply_chat_template([{"role": "system", "content": system_prompt},
                                          {"role": "user", "content": user}],
                                         tokenize=False, add_generation_prompt=True)


class PlainHFBaseline:
    """A plain batched transformers judge: `compare_many(pairs) -> list[PairScore]`, `last_run_stats`.

    rows_per_batch: fixed batch size in prompts (the user's choice; 8 fits a 4B model at 3k tokens
    in bf16 on one 80 GB GPU with plenty of room).
    padding_side: "right" (default; hidden state gathered at each row's last real token) or "left"
    (attention mask + `logits_to_keep=1`, the other way a user might write it).
    """

    name = "plain HF batched"

    def __init__(self, path: str, *, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
                 rows_per_batch: int = 8, padding_side: str = "right", ascii_json: bool = True):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if padding_side not in ("right", "left"):
            raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
        if rows_per_batch < 1:
            raise ValueError(f"rows_per_batch must be >= 1, got {rows_per_batch}")
        try:  # the card's system message; fall back to DESIGN §1's text if prompts.py is absent
            from judge_core.prompts import SYSTEM_PROMPT
        except ImportError:  # pragma: no cover
            SYSTEM_PROMPT = ("You are a specialized AI assistant tasked with evaluating two responses to a given "
                             "instruction. Your purpose is to fairly compare the quality of each response and select "
                             "the better one. The user provides the instruction and the two responses A and B. "
                             "Evaluate based on accuracy, clarity, and originality, considering repetitive or "
                             "unoriginal responses as lower quality.")
        self.system_prompt = SYSTEM_PROMPT
        self.device = torch.device(device)
        self.dtype = dtype
        self.rows_per_batch = rows_per_batch
        self.padding_side = padding_side
        self.ascii_json = ascii_json
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        self.tokenizer.padding_side = padding_side
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        from judge_core.hf_kernels import use_exact_torch_kernels

        # transformers binds fla's Triton kernels by import alone: CPU tensors must take its torch paths.
        model = use_exact_torch_kernels(AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype))
        self.model = model.to(self.device).eval()
        self.label_ids = []
        for text in ("A", "B"):
            ids = self.tokenizer.encode(text, add_special_tokens=False)
            if len(ids) != 1:
                raise ValueError(f"label {text!r} is not one token: {ids}")
            self.label_ids.append(ids[0])
        self.last_run_stats: dict = {}

    @torch.inference_mode()
    def _batch_logprobs(self, encoded: list[list[int]]) -> torch.Tensor:
        """[rows, 2] log-probabilities of "A" and "B" at each prompt's last token."""
        enc = self.tokenizer.pad({"input_ids": encoded}, return_tensors="pt").to(self.device)
        if self.padding_side == "left":
            logits = self.model(**enc, logits_to_keep=1, use_cache=False).logits[:, -1]  # [rows, V]
        else:
            hidden = self.model.model(**enc, use_cache=False).last_hidden_state  # [rows, T, H]
            last = enc["attention_mask"].sum(dim=1) - 1
            logits = self.model.lm_head(hidden[torch.arange(len(encoded), device=self.device), last])  # [rows, V]
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        return logprobs[:, self.label_ids].cpu()

    def compare_many(self, pairs: Sequence[BenchPair | tuple], *, progress: bool = False) -> list[PairScore]:
        texts = []
        for p in pairs:
            instruction, r1, r2 = p.as_tuple() if isinstance(p, BenchPair) else p
            texts.append(_card_prompt(self.tokenizer, self.system_prompt, instruction, r1, r2, self.ascii_json))
            texts.append(_card_prompt(self.tokenizer, self.system_prompt, instruction, r2, r1, self.ascii_json))
        t0 = time.perf_counter()
        encoded = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        order = sorted(range(len(encoded)), key=lambda k: len(encoded[k]))
        batches = [order[i:i + self.rows_per_batch] for i in range(0, len(order), self.rows_per_batch)]
        out = torch.empty(len(encoded), 2)
        computed = 0
        iterator = batches
        if progress:
            from tqdm.auto import tqdm

            iterator = tqdm(batches, unit="batch", desc="plain HF")
        for batch in iterator:
            out[batch] = self._batch_logprobs([encoded[k] for k in batch])
            computed += len(batch) * max(len(encoded[k]) for k in batch)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - t0
        real = sum(len(e) for e in encoded)
        self.last_run_stats = {"prompts": len(encoded), "real_tokens": real, "computed_tokens": computed,
                               "batches": len(batches), "seconds": seconds}
        return [combine_passes(tuple(out[2 * i].tolist()), tuple(out[2 * i + 1].tolist()),
                               (len(encoded[2 * i]), len(encoded[2 * i + 1]))) for i in range(len(pairs))]
