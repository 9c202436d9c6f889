"""The public API: `Judge` scores pairs of responses with the dual-pass A/B logit judge.

    judge = Judge.from_pretrained("selfhypnosis-ai/Qwen3.5-4B-Creative-Writing-Judge")
    score = judge.compare(instruction, response_1, response_2)   # PairScore, score.p1 in percent

The data's way: pairs -> two prompts each (prompts.py) -> token ids (one bulk tokenizer call) ->
token-budget batches (plan.py) -> backend forward (runner.py, backends/) -> two logits per prompt ->
PairScore per pair, in input order (scoring.py).
"""

from __future__ import annotations

import time
from typing import Any, Iterable, Sequence

import torch

from .backends import load_backend
from .loader import read_config, text_config
from .pairs import PairError, normalize_pair
from .plan import dual_pass, plan_batches
from .prompts import candidate_token_ids, render_prompt
from .runner import run_batches
from .scoring import PairScore, combine_passes

# Pairs tokenized and planned together: bounds host memory on huge inputs while leaving the
# length sort enough prompts to make batches with little padding.
CHUNK_PAIRS = 4096


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_dtype(device: torch.device) -> torch.dtype:
    # Never fp16 for Qwen3.5: some weights overflow it (DESIGN §4). bf16 on GPU, fp32 on CPU.
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def resolve_dtype(dtype: Any, device: torch.device) -> torch.dtype:
    if dtype is None:
        return default_dtype(device)
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp32": torch.float32, "float32": torch.float32,
             "fp16": torch.float16, "float16": torch.float16}
    if str(dtype) not in names:
        raise ValueError(f"unknown dtype {dtype!r}: expected one of {sorted(names)}")
    return names[str(dtype)]


class Judge:
    """A pairwise judge over one checkpoint. Build with `Judge.from_pretrained`."""

    def __init__(self, backend, tokenizer, *, token_budget: int = 32768, ascii_json: bool = True,
                 max_context: int | None = None, **template_kwargs):
        if not isinstance(token_budget, int) or token_budget < 1:
            raise ValueError(f"token_budget must be a positive int, got {token_budget!r}")
        self.backend = backend
        self.tokenizer = tokenizer
        self.token_budget = token_budget
        self.ascii_json = ascii_json
        self.template_kwargs = template_kwargs
        self.max_context = int(max_context or backend.max_context)
        self.candidate_ids = candidate_token_ids(tokenizer)
        self.last_run_stats: dict = {}

    @classmethod
    def from_pretrained(cls, path_or_repo_id, *, dtype=None, device=None, token_budget: int | str = 32768,
                        backend: str = "auto", ascii_json: bool = True, max_context: int | None = None,
                        **template_kwargs) -> "Judge":
        from transformers import AutoTokenizer

        path = str(path_or_repo_id)
        device = torch.device(device) if device is not None else default_device()
        dtype = resolve_dtype(dtype, device)
        config = read_config(path)
        tokenizer = AutoTokenizer.from_pretrained(path)
        candidates = candidate_token_ids(tokenizer)
        engine = load_backend(backend, path, dtype=dtype, device=device, candidate_ids=candidates, config=config)
        if token_budget == "auto":
            from .gptq.budget import auto_token_budget

            token_budget = auto_token_budget(text_config(config), device)
        return cls(engine, tokenizer, token_budget=token_budget, ascii_json=ascii_json, max_context=max_context,
                   **template_kwargs)

    # -- request -> prompt -> tokens ------------------------------------------------------------
    def prompt(self, instruction: str, a: str, b: str) -> str:
        """The exact prompt text of one pass (A and B as shown)."""
        return render_prompt(self.tokenizer, instruction, a, b, ascii_json=self.ascii_json, **self.template_kwargs)

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        if not texts:
            return []
        # One call for the whole chunk: the fast tokenizer runs it in parallel in Rust.
        return self.tokenizer(texts, add_special_tokens=False)["input_ids"]

    # -- scoring ---------------------------------------------------------------------------------
    def compare(self, instruction: str, response_1: str, response_2: str) -> PairScore:
        return self.compare_many([(instruction, response_1, response_2)])[0]

    def compare_many(self, pairs: Iterable[Any], *, progress=False, on_result=None) -> list[PairScore]:
        """Score every pair; results in input order. A bad pair gets `error` set; nothing raises for it.

        progress: False, True (a tqdm bar with pairs/s and tokens/s), or a tqdm-like object to update
        (by 1 per pair, when both of its passes are done).
        on_result: None, or `on_result(index, PairScore)` called once per pair as soon as it is done
        (completion order; index = position in `pairs`): rejected pairs at once, scored pairs right
        after the batch that completes their second pass. Lets a caller save verdicts as they come.
        """
        pairs = list(pairs)
        bar, own_bar = self._progress_bar(progress, len(pairs))
        totals = {"pairs": len(pairs), "prompts": 0, "real_tokens": 0, "computed_tokens": 0, "batches": 0,
                  "oom_splits": 0, "seconds": 0.0}
        results: list[PairScore] = []
        try:
            for start in range(0, len(pairs), CHUNK_PAIRS):
                results.extend(self._score_chunk(pairs[start:start + CHUNK_PAIRS], bar, totals, on_result, start))
        finally:
            if own_bar:
                bar.close()
        self.last_run_stats = totals
        return results

    def _score_chunk(self, pairs: Sequence[Any], bar, totals: dict, on_result=None, offset: int = 0
                     ) -> list[PairScore]:
        results: list[PairScore | None] = [None] * len(pairs)

        def finish(i: int, score: PairScore) -> None:
            results[i] = score
            if bar is not None:
                bar.update(1)
            if on_result is not None:
                on_result(offset + i, score)

        texts: list[str] = []
        owner: list[int] = []  # owner[k] = index of the pair that prompt k belongs to (2 per pair)
        for i, raw in enumerate(pairs):
            try:
                pair = normalize_pair(raw)
            except PairError as e:
                finish(i, PairScore.failed(str(e)))
                continue
            for shown in dual_pass(pair):
                texts.append(self.prompt(*shown))
                owner.append(i)
        sequences = self.tokenize(texts)

        runnable: list[int] = []  # prompt indices that go to the model
        for k in range(0, len(sequences), 2):
            i = owner[k]
            longest = max(len(sequences[k]), len(sequences[k + 1]))
            if longest > self.max_context:
                finish(i, PairScore.failed(
                    f"prompt of {longest} tokens exceeds the model's context of {self.max_context} tokens",
                    tokens=(len(sequences[k]), len(sequences[k + 1]))))
            else:
                runnable += [k, k + 1]

        lengths = [len(sequences[k]) for k in runnable]
        batches = plan_batches(lengths, self.token_budget, self.backend.counts_padding)
        t0 = time.perf_counter()
        done_tokens = 0
        passes: dict[int, tuple] = {}  # prompt index -> (logit A, logit B) or an error message
        stats = {"computed_tokens": 0, "batches": 0, "oom_splits": 0, "seconds": 0.0}

        # One run_batches call per planned batch, so that pairs are finished (and reported) as soon as
        # the batch holding their second pass is done rather than after the whole chunk.
        for batch in batches:
            prompts = [runnable[j] for j in batch]
            logits, errors, batch_stats = run_batches(self.backend, [sequences[k] for k in prompts],
                                                      [list(range(len(prompts)))])
            for key in stats:
                stats[key] += batch_stats[key]
            for pos, k in enumerate(prompts):
                passes[k] = errors.get(pos) or tuple(logits[pos].tolist())
            done_tokens += sum(lengths[j] for j in batch)
            if bar is not None:
                bar.set_postfix(tok_s=f"{done_tokens / max(time.perf_counter() - t0, 1e-9):,.0f}", refresh=False)
            for k in sorted({k - k % 2 for k in prompts}):  # pass 1 of each pair touched by this batch
                if k in passes and k + 1 in passes and results[owner[k]] is None:
                    tokens = (len(sequences[k]), len(sequences[k + 1]))
                    failure = next((p for p in (passes[k], passes[k + 1]) if isinstance(p, str)), None)
                    finish(owner[k], PairScore.failed(failure, tokens=tokens) if failure
                           else combine_passes(passes[k], passes[k + 1], tokens))

        totals["prompts"] += len(runnable)
        totals["real_tokens"] += sum(lengths)
        for key in ("computed_tokens", "batches", "oom_splits", "seconds"):
            totals[key] += stats[key]
        return results  # type: ignore[return-value]

    @staticmethod
    def _progress_bar(progress, total: int):
        if progress is False or progress is None:
            return None, False
        if progress is True:
            from tqdm.auto import tqdm

            return tqdm(total=total, unit="pair", desc="judging", dynamic_ncols=True), True
        return progress, False
