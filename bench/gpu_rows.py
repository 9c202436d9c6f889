"""bench/gpu_run.py's rows: a JSONL recorder that survives a timeout, one timed scoring run per row, loads."""

from __future__ import annotations

import gc
import json
import os
import time
from pathlib import Path


class Recorder:
    """Prints progress with the elapsed time and appends each row to a JSONL file at once (fsync'd)."""

    def __init__(self, path: Path, t0: float, *, append: bool = False, name: str = "gpu_run"):
        self.path, self.t0, self.rows, self.name = path, t0, [], name
        path.parent.mkdir(parents=True, exist_ok=True)
        if not append:
            path.write_text("")

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def say(self, text: str) -> None:
        print(f"[{self.name} {self.elapsed():6.1f}s] {text}", flush=True)

    def row(self, **row) -> dict:
        row = {"elapsed_s": round(self.elapsed(), 1), **row}
        self.rows.append(row)
        with open(self.path, "a") as f:
            f.write(json.dumps(row, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())
        if "prompt_tokens_per_s" in row:
            self.say(f"{row['row']}: {row['prompt_tokens_per_s']:,.0f} prompt tok/s, {row['seconds']:.1f} s, "
                     f"peak {row.get('peak_gpu_gib')} GiB")
        else:
            self.say(f"{row.get('row')}: {row.get('status', 'ok')} {row.get('reason', '')}".rstrip())
        return row


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free_memory(device) -> None:
    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def kernels_of(system) -> object:
    """The model's kernel choices when it exposes them (`model.kernels.describe()`), else None."""
    backend = getattr(system, "backend", None)
    kernels = getattr(getattr(backend, "model", None), "kernels", None)
    describe = getattr(kernels, "describe", None)
    try:
        return describe() if callable(describe) else None
    except Exception as e:  # noqa: BLE001 - a report must not fail the bench
        return f"describe() failed: {type(e).__name__}: {e}"


def timed_row(rec: Recorder, name: str, scorer, pairs, device, **extra) -> tuple[dict, list]:
    """Score `pairs` once with `scorer` (compare_many), timed from the first token to the last logit; one row."""
    import torch

    tuples = [p.as_tuple() for p in pairs]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync(device)
    t = time.perf_counter()
    scores = scorer.compare_many(tuples)
    sync(device)
    seconds = time.perf_counter() - t
    stats = dict(getattr(scorer, "last_run_stats", None) or {})
    tokens = sum(sum(s.tokens) for s in scores if s.ok)
    peak = int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None
    row = rec.row(row=name, pairs=len(pairs), prompts=2 * len(pairs), prompt_tokens=tokens, seconds=round(seconds, 3),
                  prompt_tokens_per_s=tokens / max(seconds, 1e-9), batches=stats.get("batches"),
                  oom_splits=stats.get("oom_splits"), pair_errors=sum(not s.ok for s in scores),
                  peak_gpu_bytes=peak, peak_gpu_gib=None if peak is None else round(peak / 2**30, 2),
                  kernels=kernels_of(scorer), **extra)
    return row, scores


def load_judge(path, backend, dtype, device, budget, tokenizer=None, quantization=None, fp8_compute="auto"):
    """Judge.from_pretrained's steps, with one tokenizer shared by every system (loading the 248k-token
    tokenizer again per system costs seconds on a busy host, and changes nothing measured)."""
    from judge_core import Judge
    from judge_core.backends import load_backend
    from judge_core.checkpoint import Checkpoint
    from judge_core.fp8.load import plan_fp8
    from judge_core.specs import load_spec
    from judge_core.specs.render import label_token_ids

    if tokenizer is None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(path)
    ckpt = Checkpoint.open(path)
    label_ids = label_token_ids(tokenizer, load_spec())  # the default spec's, as Judge.from_pretrained reads them
    engine = load_backend(backend, ckpt, dtype=dtype, device=device, label_ids=label_ids,
                          fp8=plan_fp8(quantization, ckpt.quant, device, fp8_compute))
    return Judge(engine, tokenizer, token_budget=budget)


def loaded(rec: Recorder, name: str, build, device):
    import torch

    before = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
    t = time.perf_counter()
    system = build()
    sync(device)
    weights = (torch.cuda.memory_allocated(device) - before) if device.type == "cuda" else None
    rec.say(f"loaded {name} in {time.perf_counter() - t:.1f} s"
            + (f" ({weights / 2**30:.2f} GiB on the GPU)" if weights is not None else ""))
    return system, time.perf_counter() - t, weights


def agreement_of(scores, reference) -> dict:
    from .metrics import agreement

    k = min(len(scores), len(reference))
    return agreement(scores[:k], reference[:k])



def print_table(rows: list[dict]) -> None:
    print("\n| row | pairs | prompt tok/s | seconds | peak GPU GiB | note |")
    print("|---|--:|--:|--:|--:|---|")
    for r in rows:
        if r.get("row") == "meta":
            continue
        if "prompt_tokens_per_s" in r:
            note = "; ".join(f"{k}={r[k]}" for k in ("oom_splits", "pair_errors") if r.get(k))
            print(f"| {r['row']} | {r['pairs']} | {r['prompt_tokens_per_s']:,.0f} | {r['seconds']:.1f} | "
                  f"{r.get('peak_gpu_gib') if r.get('peak_gpu_gib') is not None else '-'} | {note} |")
        elif "max_abs_delta_p1" in r:
            print(f"| {r['row']} | {r['pairs_compared']} | max abs dp1 {r['max_abs_delta_p1']:.3g} pp, "
                  f"verdicts {r['verdict_agreement']:.0%} | | | {r.get('status')} |")
        else:
            reason = str(r.get("reason", ""))[:80]
            print(f"| {r['row']} | | {r.get('status', 'ok')} | {r.get('seconds', '')} | | {reason} |")
    print(flush=True)
