"""The systems a bench run compares, each built from a spec and run the same way.

A system is anything with `compare_many(pairs, progress=...) -> list[PairScore]`:
  judge_core  `Judge.from_pretrained(path, backend=..., dtype=..., quantization=...)`, any backend / dtype /
              weight format
  reference   `ReferenceJudge`: one prompt at a time, full-vocabulary log-softmax (the card's algorithm)
  plain       `PlainHFBaseline`: a careful user's batched transformers loop
  vllm        `VLLMCardJudge`: the card's own vLLM code (skipped where vllm is not importable)
`run_system` loads one, warms it up, times it on the workload, records peak memory, and never raises:
a system that cannot load is "skipped: <reason>", one that fails while scoring is "failed: <reason>".
"""

from __future__ import annotations

import gc
import inspect
import resource
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from judge_core.scoring import PairScore

from .workloads import BenchPair

DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}


@dataclass
class SystemSpec:
    """What to build. kind: judge_core | reference | plain | vllm."""

    name: str
    kind: str
    path: str
    dtype: str = "fp32"
    backend: str | None = None          # judge_core only: hf | packed | auto
    weights: str = "dense"              # dense | gptq (what the checkpoint at `path` holds)
    options: dict = field(default_factory=dict)  # token_budget, top_k, rows_per_batch, ...

    @property
    def torch_dtype(self) -> torch.dtype:
        if self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}: expected one of {sorted(DTYPES)}")
        return DTYPES[self.dtype]


@dataclass
class SystemRun:
    """One system's run over the workload. `scores` in workload order; empty unless status == "ok"."""

    spec: SystemSpec
    status: str = "ok"                  # ok | skipped | failed
    reason: str = ""
    scores: list[PairScore] = field(default_factory=list)
    load_seconds: float = 0.0
    seconds: float = 0.0                # wall time of compare_many over the workload (tokenize + forward)
    stats: dict = field(default_factory=dict)  # prompts, real_tokens, computed_tokens, batches, ...
    peak_gpu_bytes: int | None = None   # torch.cuda.max_memory_allocated during the timed run
    peak_rss_bytes: int | None = None   # process peak resident set during the timed run (model included)
    rss_before_load_bytes: int | None = None  # resident set before this system was built: the difference is
                                              # what this system added (other cached systems excluded)
    rss_peak_is_process_lifetime: bool = False

    @property
    def ok(self) -> bool:
        return self.status == "ok"


# ---------------------------------------------------------------------------------------------
# Peak memory

def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) for this process; False where not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _current_rss_bytes() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _peak_rss_bytes() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------------------------------------
# Building

def spec_key(spec: SystemSpec) -> tuple:
    """What identifies a built system (two specs with one key can share the loaded model)."""
    return (spec.kind, spec.path, spec.dtype, spec.backend, spec.weights, spec.options.get("top_k"),
            spec.options.get("rows_per_batch"), spec.options.get("token_budget"), spec.options.get("quantization"))


def build_system(spec: SystemSpec, device: torch.device, cache: dict | None = None):
    """The object with `compare_many`; raises if the system cannot be built here.

    cache: spec_key -> built system. A hit is returned as is; the top-10 reference reuses a loaded
    reference model (only the cutoff differs). Keeping systems alive saves loads on the CPU bench,
    where loading (mostly the 248k-token tokenizer) costs more than scoring the smoke workload.
    """
    if cache is not None:
        key = spec_key(spec)
        if key in cache:
            return cache[key]
        if spec.kind == "reference":
            plain_key = key[:5] + (None,) + key[6:]
            if plain_key in cache:
                from judge_core.reference import ReferenceJudge

                base = cache[plain_key]
                cache[key] = ReferenceJudge(base.model, base.tokenizer, top_k=spec.options.get("top_k"))
                return cache[key]
        cache[key] = _build(spec, device)
        return cache[key]
    return _build(spec, device)


def _build(spec: SystemSpec, device: torch.device):
    if spec.kind == "judge_core":
        from judge_core import Judge

        kwargs = {k: v for k, v in spec.options.items()
                  if k in ("token_budget", "ascii_json", "max_context", "quantization", "fp8_compute")}
        return Judge.from_pretrained(spec.path, backend=spec.backend or "auto", dtype=spec.torch_dtype,
                                     device=device, **kwargs)
    if spec.kind == "reference":
        from judge_core.reference import ReferenceJudge

        return ReferenceJudge.from_pretrained(spec.path, dtype=spec.torch_dtype, device=device,
                                              top_k=spec.options.get("top_k"))
    if spec.kind == "plain":
        from .plain_hf import PlainHFBaseline

        return PlainHFBaseline(spec.path, dtype=spec.torch_dtype, device=device,
                               rows_per_batch=spec.options.get("rows_per_batch", 8),
                               padding_side=spec.options.get("padding_side", "right"))
    if spec.kind == "vllm":
        from .vllm_card import VLLMCardJudge, vllm_available

        ok, why = vllm_available()
        if not ok:
            raise ImportError(why)
        return VLLMCardJudge(spec.path, dtype="bfloat16" if spec.dtype in ("bf16", "bfloat16") else "float32")
    raise ValueError(f"unknown system kind {spec.kind!r}: expected judge_core, reference, plain or vllm")


def _stats_of(system, scores: list[PairScore], seconds: float) -> dict:
    stats = dict(getattr(system, "last_run_stats", None) or {})
    if "real_tokens" not in stats:  # the reference twin: one prompt per forward, nothing padded
        real = sum(sum(s.tokens) for s in scores if s.ok)
        n_prompts = 2 * sum(1 for s in scores if s.ok)
        stats.update(prompts=n_prompts, real_tokens=real, computed_tokens=real, batches=n_prompts)
    stats["forward_seconds"] = stats.pop("seconds", None)
    stats["wall_seconds"] = seconds
    return stats


def run_system(spec: SystemSpec, pairs: Sequence[BenchPair], device: str | torch.device, *,
               warmup_pairs: int = 1, repeats: int = 1, progress: bool = False,
               cache: dict | None = None) -> SystemRun:
    """Build, warm up, time and tear down one system. Never raises.

    repeats: time the whole workload this many times and keep the fastest (on a shared machine the
    minimum is the least disturbed measurement); every time is kept in `stats["repeat_seconds"]`.
    cache: keep the built system there for later runs and sweeps (see `build_system`).
    """
    device = torch.device(device)
    run = SystemRun(spec)
    tuples = [p.as_tuple() for p in pairs]
    system = None
    gc.collect()
    run.rss_before_load_bytes = _current_rss_bytes()
    try:
        t0 = time.perf_counter()
        try:
            system = build_system(spec, device, cache)
        except Exception as e:  # a missing backend, package or kernel: report and carry on
            run.status, run.reason = "skipped", f"{type(e).__name__}: {e}"[:300]
            return run
        _sync(device)
        run.load_seconds = time.perf_counter() - t0
        try:
            if warmup_pairs:  # first-call costs (kernel selection, compilation, thread pools) are not throughput
                system.compare_many(tuples[:warmup_pairs])
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            run.rss_peak_is_process_lifetime = not _reset_peak_rss()
            times = []
            for _ in range(max(1, repeats)):
                _sync(device)
                t0 = time.perf_counter()
                scores = system.compare_many(tuples, progress=progress)
                _sync(device)
                times.append(time.perf_counter() - t0)
            run.seconds = min(times)
        except Exception as e:
            run.status, run.reason = "failed", f"{type(e).__name__}: {e}"[:300]
            run.stats["traceback"] = traceback.format_exc()[-2000:]
            return run
        run.peak_rss_bytes = _peak_rss_bytes()
        if device.type == "cuda":
            run.peak_gpu_bytes = int(torch.cuda.max_memory_allocated(device))
        run.scores = list(scores)
        run.stats = _stats_of(system, run.scores, run.seconds)
        run.stats["repeat_seconds"] = times
        bad = [s.error for s in run.scores if not s.ok]
        if bad:
            run.stats["pair_errors"] = len(bad)
            run.stats["first_pair_error"] = bad[0]
        return run
    finally:
        del system
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()


def retime(run: SystemRun, pairs: Sequence[BenchPair], device: str | torch.device, cache: dict) -> None:
    """Time a cached, already warmed system once more on the same pairs; keep the fastest time.

    The suite calls this round-robin over all systems, so that a slow stretch on a shared machine
    hits every system alike instead of whichever one happened to run during it.
    """
    if not run.ok:
        return
    device = torch.device(device)
    system = build_system(run.spec, device, cache)
    tuples = [p.as_tuple() for p in pairs]
    _sync(device)
    t0 = time.perf_counter()
    system.compare_many(tuples)
    _sync(device)
    seconds = time.perf_counter() - t0
    run.stats.setdefault("repeat_seconds", []).append(seconds)
    if seconds < run.seconds:
        run.seconds = seconds
        run.stats["wall_seconds"] = seconds
        if getattr(system, "last_run_stats", None) and system.last_run_stats.get("seconds") is not None:
            run.stats["forward_seconds"] = system.last_run_stats["seconds"]


# ---------------------------------------------------------------------------------------------
# GPTQ: a quantized copy of the checkpoint, when judge_core.gptq can make one

def gptq_checkpoint(path: str, out_dir: str | None = None) -> tuple[str | None, str]:
    """Quantize `path` (RTN, no calibration data) with `judge_core.gptq.quantize_checkpoint`.

    Returns (quantized dir, "") or (None, reason) when the quantizer is not there or fails.
    """
    try:
        from judge_core.gptq import quantize_checkpoint
    except Exception as e:
        return None, f"judge_core.gptq.quantize_checkpoint not importable ({type(e).__name__}: {e})"[:300]
    out_dir = out_dir or tempfile.mkdtemp(prefix="bench-gptq-")
    params = inspect.signature(quantize_checkpoint).parameters
    kwargs = {}
    for name, value in (("method", "rtn"), ("calibration", None)):
        if name in params:
            kwargs[name] = value
    try:
        quantize_checkpoint(str(path), str(out_dir), **kwargs)
    except Exception as e:
        return None, f"quantize_checkpoint failed: {type(e).__name__}: {e}"[:300]
    if not (Path(out_dir) / "config.json").exists():
        return None, f"quantize_checkpoint wrote no config.json into {out_dir}"
    return str(out_dir), ""
