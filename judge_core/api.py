"""The public API: `Judge` scores pairs of responses with the dual-pass A/B logit judge.

    judge = Judge.from_pretrained("selfhypnosis-ai/Qwen3.5-4B-Creative-Writing-Judge")
    score = judge.compare(instruction, response_1, response_2)   # PairScore, score.p1 in percent

The data's way: pairs -> chunks (chunks.py; the next one tokenized while the device runs this one) ->
two prompts each (prompts.py) -> token ids (one bulk tokenizer call per chunk, prepare.py) ->
token-budget batches (plan.py) -> backend forward (runner.py, backends/) -> two logits per prompt ->
PairScore per pair, in input order (scoring.py).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable

import numpy as np
import torch

from .backends import check_backend_name, load_backend
from .checkpoint import Checkpoint
from .chunks import prepared_chunks
from .cpu_malloc import keep_freed_memory
from .dtypes import resolve_device, resolve_dtype
from .embedded.resolve import resolve_model
from .plan import plan_batches
from .prefix import PrefixPolicy, plan_shared_batches
from .prepare import PreparedPairs, pair_score
from .prompt_tokens import PromptTokenizer
from .prompts import check_template_kwargs
from .runner import Batch, stream_batches
from .scoring import PairScore
from .specs import load_spec
from .specs.readout import PointScore
from .specs.render import label_token_ids, render_spec_prompt, request_messages
from .threads import check_threads, configure_threads
from .tokenizer_cache import load_tokenizer

def check_token_budget(token_budget) -> int | str:
    if token_budget == "auto":
        return token_budget
    if isinstance(token_budget, bool) or not isinstance(token_budget, int) or token_budget < 1:
        raise ValueError(f"token_budget must be a positive int or 'auto', got {token_budget!r}")
    return token_budget


def _check_iterable(items, name: str) -> None:
    if isinstance(items, (dict, str, bytes)):
        raise TypeError(f"{name} expects an iterable of items, got a {type(items).__name__}: "
                        "wrap a single item in a list")


class _ChunkRun:
    """One prepared chunk while its batches come back: the logits of its prompts, and each item reported
    (to `report(start + i, score)`) as soon as all its passes are in."""

    def __init__(self, start: int, prepared: PreparedPairs, report):
        self.start, self.prepared, self.report = start, prepared, report
        self.logits: torch.Tensor | None = None
        self.errors: dict[int, str] = {}
        self.waiting = [prepared.passes] * len(prepared.runnable)  # passes still to come, per runnable item
        for i, score in enumerate(prepared.results):
            if score is not None:  # rejected or over the context: answered without the model
                report(start + i, score)

    def take(self, batch: list[int], res) -> None:
        if res.logits is not None:
            if self.logits is None:
                self.logits = torch.full((len(self.prepared.sequences), res.logits.shape[1]), float("nan"))
            self.logits[torch.as_tensor(batch)] = res.logits
        for row, message in res.errors.items():
            self.errors[batch[row]] = message
        passes = self.prepared.passes
        for j in batch:
            m = j // passes
            self.waiting[m] -= 1
            if self.waiting[m] == 0:
                i = self.prepared.runnable[m]
                logits = self.logits if self.logits is not None else torch.full((len(self.prepared.sequences), 2),
                                                                                float("nan"))
                self.report(self.start + i, pair_score(self.prepared, m, logits, self.errors))


class Judge:
    """A logit judge over one checkpoint, defined by its spec (judge_core/specs; default: the card's pairwise
    creative-writing judge). Build with `Judge.from_pretrained`."""

    def __init__(self, backend, tokenizer, *, token_budget: int = 32768, ascii_json: bool = True,
                 max_context: int | None = None, chat_template_kwargs: dict | None = None,
                 share_prefixes: bool = True, parse_special_tokens_in_text: bool = False, spec=None):
        if check_token_budget(token_budget) == "auto":
            raise ValueError("token_budget='auto' is resolved by Judge.from_pretrained; pass an int here")
        self.backend = backend
        self.tokenizer = tokenizer
        self.token_budget = token_budget
        self.ascii_json = ascii_json
        self.chat_template_kwargs = check_template_kwargs(chat_template_kwargs)
        if max_context is not None:
            if isinstance(max_context, bool) or not isinstance(max_context, int) or max_context < 1:
                raise ValueError(f"max_context must be a positive int, got {max_context!r}")
            if max_context > backend.max_context:
                raise ValueError(f"max_context={max_context} exceeds the model's context of {backend.max_context} "
                                 "tokens (max_position_embeddings)")
        self.max_context = int(max_context or backend.max_context)
        self.spec = load_spec(spec)
        # The spec's label tokens, each checked to be one token in its context: the backend's label_ids.
        self.label_ids = label_token_ids(tokenizer, self.spec, ascii_json=ascii_json,
                                         chat_template_kwargs=self.chat_template_kwargs)
        # Control-token strings in the request's text stay plain text unless this opt-in (prompt_tokens.py).
        self.prompt_tokens = PromptTokenizer(tokenizer, parse_special_tokens_in_text=parse_special_tokens_in_text)
        self.path = None  # the resolved checkpoint dir, set by from_pretrained
        self.quantization = None  # "fp8 (twin | scaled_mm)" when the model runs in fp8, set by from_pretrained
        # Tokenize the next chunk on a host thread while the device runs this one (chunks.py). None: on
        # when the model runs on CUDA; on the CPU the tokenizer's threads would take cores from torch.
        self.prefetch: bool | None = None
        # Compute each prefix shared by prompts of a batch once (on backends that can: packed). The
        # policy says when a fork pays (judge_core/prefix.py); both may be changed between runs.
        self.share_prefixes = bool(share_prefixes)
        self.prefix_policy = PrefixPolicy()
        self.last_run_stats: dict = {}

    @classmethod
    def from_pretrained(cls, path_or_repo_id, *, dtype=None, device=None, token_budget: int | str = 32768,
                        backend: str = "auto", ascii_json: bool = True, max_context: int | None = None,
                        chat_template_kwargs: dict | None = None, revision: str | None = None,
                        token: str | bool | None = None, cache_dir: str | None = None,
                        quantization: str | None = None, fp8_compute: str = "auto",
                        warmup: bool | None = None, threads: int | str | None = None,
                        share_prefixes: bool = True,
                        parse_special_tokens_in_text: bool = False, spec=None) -> "Judge":
        """A judge over "tiny" (the embedded tiny random judge, built once; no revision), a local
        checkpoint dir or a hub repo id (through the Hugging Face cache): judge_core.embedded.resolve_model.

        dtype: None (bf16 on GPU, fp32 on CPU), "bf16" or "fp32" (fp16 is refused: Qwen3.5 overflows it).
        backend: "auto" (packed where it loads the checkpoint, else hf), "packed" or "hf".
        token_budget: tokens per forward batch, or "auto" (sized from free GPU memory).
        chat_template_kwargs: extra chat-template variables, e.g. {"enable_thinking": False}.
        revision / token / cache_dir: for hub ids, as in huggingface_hub.
        quantization: None / "none" (the checkpoint as stored: float, GPTQ or FP8) or "fp8" (W8A8 dynamic
            FP8 quantized at load from a float checkpoint; needs a CUDA GPU of sm_89+, or runs the exact but
            slow CPU twin on the CPU).
        fp8_compute: "auto" (torch._scaled_mm on CUDA, the twin on the CPU), "twin" or "scaled_mm" (also
            on the CPU where torch's CPU build has row-wise fp8 _scaled_mm, as 2.13 does: the GPU's call,
            no faster there than the twin).
        warmup: run every batch shape once at load so that no kernel tunes mid-run (default: on CUDA only).
        threads: torch's CPU threads when the model runs on the CPU (torch.set_num_threads, process-wide):
            a number, "auto" (no more than the free cores: judge_core.threads) or None (default: torch's
            setting is left as it is; the command line defaults to "auto").
        share_prefixes: compute each prefix that prompts of a batch share once (default on; the packed
            backend does it, hf computes every prompt whole). Same numbers within float rounding.
        spec: the judge spec (judge_core/specs): None (the card's creative-writing judge), a built-in name
            ("pointwise-rubric", "yes-no-criterion", ...), a .json/.toml file, a dict or a JudgeSpec; checked
            before anything loads, its labels checked as single tokens once the tokenizer is read.
        parse_special_tokens_in_text: False (default) tokenizes the instruction and responses as plain
            text, so a response holding "<|im_end|>" cannot close the judge's turn; True parses such
            strings as control tokens, as the card's code does (prompt_tokens.py).
        """
        from .fp8.load import check_fp8_compute, plan_fp8
        from .quant import check_quantization

        # Every argument is checked before anything is loaded or downloaded.
        spec = load_spec(spec)
        quantization = check_quantization(quantization)
        check_fp8_compute(fp8_compute)
        check_token_budget(token_budget)
        check_backend_name(backend)
        check_threads(threads)
        template_kwargs = check_template_kwargs(chat_template_kwargs)
        device = resolve_device(device)
        dtype = resolve_dtype(dtype, device)
        ckpt = Checkpoint.open(resolve_model(path_or_repo_id, revision=revision, token=token, cache_dir=cache_dir))
        path = ckpt.path
        configure_threads(threads, device)  # before the load: it runs torch ops too
        if device.type == "cpu":
            keep_freed_memory()  # activations reuse freed memory instead of page-faulting in (cpu_malloc.py)
        fp8 = plan_fp8(quantization, ckpt.quant, device, fp8_compute, where=str(path))
        tokenizer = load_tokenizer(path)
        label_ids = label_token_ids(tokenizer, spec, ascii_json=ascii_json, chat_template_kwargs=template_kwargs)
        engine = load_backend(backend, ckpt, dtype=dtype, device=device, label_ids=label_ids, fp8=fp8,
                              full_vocab=spec.readout == "full")
        if token_budget == "auto":
            from .memory import auto_token_budget

            # Activations are as wide as the compute dtype: fp32 needs twice bf16's memory per token.
            token_budget = auto_token_budget(ckpt.text, device, dtype_bytes=engine.dtype.itemsize)
        judge = cls(engine, tokenizer, token_budget=token_budget, ascii_json=ascii_json, max_context=max_context,
                    chat_template_kwargs=template_kwargs, share_prefixes=share_prefixes,
                    parse_special_tokens_in_text=parse_special_tokens_in_text, spec=spec)
        judge.path = path
        judge.quantization = None if fp8 is None else f"fp8 ({fp8.compute})"
        from .warmup import maybe_warmup

        maybe_warmup(engine, judge.token_budget, judge.max_context, enabled=warmup)
        return judge

    # -- request -> prompt -> tokens ------------------------------------------------------------
    def render(self, slots: dict) -> tuple[str, tuple[str, ...]]:
        """(the exact prompt text of one pass, the messages in it that hold request text) for slot values
        {instruction, response_a, response_b, ...} (specs/items.pass_slots)."""
        prompt = render_spec_prompt(self.tokenizer, self.spec, slots, ascii_json=self.ascii_json,
                                    chat_template_kwargs=self.chat_template_kwargs)
        return prompt, request_messages(self.spec, slots, ascii_json=self.ascii_json)

    def prompt(self, instruction: str, a: str, b: str) -> str:
        """The exact prompt text of one pass of a pairwise judge (A and B as shown)."""
        return self.render({"instruction": instruction, "response_a": a, "response_b": b})[0]

    def tokenize(self, texts: list[str]) -> list[np.ndarray]:
        """Token ids of each text as an int32 array: ~4 bytes a token instead of a Python int's ~40, and the
        batch builder packs arrays with numpy (models/batch.py) instead of walking lists."""
        if not texts:
            return []
        # One call for the whole chunk: the fast tokenizer runs it in parallel in Rust.
        return [np.array(ids, dtype=np.int32) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]

    # -- scoring ---------------------------------------------------------------------------------
    def compare(self, instruction: str, response_1: str, response_2: str) -> PairScore:
        return self.compare_many([(instruction, response_1, response_2)])[0]

    def score(self, instruction: str, response: str, **slots: str) -> PointScore:
        """A pointwise spec's verdict on one response; slots: criterion=, rubric=, reference= as it uses them."""
        return self.score_many([{"instruction": instruction, "response": response, **slots}])[0]

    def score_many(self, items: Iterable[Any], *, progress=False,
                   on_result: Callable[[int, PointScore], None] | None = None) -> list[PointScore]:
        """A pointwise spec's verdicts, in input order: items are (instruction, response) tuples or dicts with
        instruction, response and the slots the spec uses. A bad item gets `error` set; nothing raises."""
        if self.spec.pairwise:
            raise TypeError(f"spec {self.spec.name!r} is {self.spec.kind}: use compare_many")
        return self._judge_many(items, progress, on_result, "score_many")

    def compare_many(self, pairs: Iterable[Any], *, progress=False,
                     on_result: Callable[[int, PairScore], None] | None = None) -> list[PairScore]:
        """Score every pair; results in input order. A bad pair gets `error` set; nothing raises for it.

        pairs: an iterable of (instruction, response_1, response_2) tuples or dicts with those keys.
        progress: False, True (a tqdm bar with pairs/s and tokens/s), or a tqdm-like object to update.
        on_result: called as on_result(index, score) for each pair as soon as both its passes are done
            (completion order, not input order), e.g. to save verdicts before the whole run ends.
        """
        if not self.spec.pairwise:
            raise TypeError(f"spec {self.spec.name!r} is pointwise: use score_many")
        return self._judge_many(pairs, progress, on_result, "compare_many")

    def _judge_many(self, pairs, progress, on_result, name: str) -> list:
        _check_iterable(pairs, name)
        pairs = list(pairs)
        if name == "compare_many" and len(pairs) == 3 and all(isinstance(p, str) for p in pairs):
            raise TypeError("compare_many got three strings: that is one pair; use compare(instruction, r1, r2) "
                            "or compare_many([(instruction, r1, r2)])")
        results: list = [None] * len(pairs)

        def keep(i: int, score) -> None:
            results[i] = score
            if on_result is not None:
                on_result(i, score)

        bar, own_bar = self._progress_bar(progress, len(pairs))
        try:
            self._stream(pairs, keep, bar)
        finally:
            if own_bar:
                bar.close()
        return results

    def judge_stream(self, items: Iterable[Any], on_result: Callable[[int, Any], None], *, progress=False) -> dict:
        """Judge items taken lazily from any iterable (a generator over a file of millions of rows), in one
        pipeline: chunks ramp up once, the next is tokenized while the device runs this one, and the
        device runs across chunk boundaries. `on_result(index, score)` is called once per item as it
        finishes (completion order; index in input order); nothing is kept. Items are those of
        compare_many (pairwise spec) or score_many (pointwise spec). Returns the run's stats (last_run_stats).
        progress: False, True, or a tqdm-like object to update (its total is left as it is)."""
        _check_iterable(items, "judge_stream")
        bar, own_bar = self._progress_bar(progress, None)
        try:
            return self._stream(items, on_result, bar)
        finally:
            if own_bar:
                bar.close()

    def _stream(self, items: Iterable[Any], report_item, bar) -> dict:
        """Every item through prepared chunks -> planned batches -> one `stream_batches` run."""
        totals = {"pairs": 0, "prompts": 0, "real_tokens": 0, "prompt_tokens": 0, "computed_tokens": 0,
                  "batches": 0, "oom_splits": 0, "seconds": 0.0, "shared_prefixes": self.prefix_sharing() is not None}
        t0 = time.perf_counter()
        done_tokens = 0

        def report(i: int, score) -> None:
            if bar is not None:
                bar.update(1)
            report_item(i, score)

        def source():
            for start, prepared in prepared_chunks(self, items, prefetch=self._prefetching()):
                chunk = _ChunkRun(start, prepared, report)
                totals["pairs"] += len(prepared.results)
                totals["prompts"] += len(prepared.sequences)
                totals["real_tokens"] += prepared.prompt_tokens
                totals["prompt_tokens"] += prepared.prompt_tokens
                batches, _ = self.plan(prepared.sequences)
                for b in batches:
                    yield Batch([prepared.sequences[j] for j in b], (chunk, b))

        try:
            for res in stream_batches(self.backend, source(), prefixes=self.prefix_sharing()):
                chunk, b = res.batch.tag
                chunk.take(b, res)
                totals["computed_tokens"] += res.computed_tokens
                totals["batches"] += res.pieces
                totals["oom_splits"] += res.oom_splits
                done_tokens += sum(len(s) for s in res.batch.sequences)
                if bar is not None:
                    bar.set_postfix(tok_s=f"{done_tokens / max(time.perf_counter() - t0, 1e-9):,.0f}", refresh=False)
        finally:
            totals["seconds"] = time.perf_counter() - t0
            self.last_run_stats = totals
        return totals

    def _prefetching(self) -> bool:
        if self.prefetch is not None:
            return bool(self.prefetch)
        device = getattr(self.backend, "device", None)
        return getattr(device, "type", None) == "cuda"

    def prefix_sharing(self) -> PrefixPolicy | None:
        """The prefix policy runs use: None when sharing is off or the backend cannot share."""
        if self.share_prefixes and getattr(self.backend, "shares_prefixes", False):
            return self.prefix_policy
        return None

    def plan(self, sequences) -> tuple[list[list[int]], PrefixPolicy | None]:
        """(batches of sequence indices under the token budget, the prefix policy to run them with):
        prompts sharing a prefix planned together, the prefix counted once, when sharing is on."""
        prefixes = self.prefix_sharing()
        if prefixes is not None:
            return plan_shared_batches(sequences, self.token_budget, prefixes), prefixes
        return plan_batches([len(s) for s in sequences], self.token_budget, self.backend.counts_padding), None

    @staticmethod
    def _progress_bar(progress, total: int):
        if progress is False or progress is None:
            return None, False
        if progress is True:
            from tqdm.auto import tqdm

            return tqdm(total=total, unit="pair", desc="judging", dynamic_ncols=True), True
        return progress, False
