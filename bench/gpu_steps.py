"""bench/gpu_run.py's steps, most important first; each writes its rows through the Recorder as it goes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from .gpu_rows import agreement_of, free_memory, load_judge, loaded, sync, timed_row

FP32_PARITY_TOLERANCE = 1e-2  # percentage points of p1; fp32 paths agree to ~1e-4 on the tiny model
EIGHT_GIB = 8 * 1024**3


def build(args, rec, device, state) -> None:
    t = time.perf_counter()
    if args.cpu_dry_run:
        path, desc = _dry_run_model(args)
    else:
        from .models import save_4b_random

        path, desc = Path(args.model_dir), "Qwen3.5-4B text shape, random bf16 weights built on the GPU"
        if not ((path / "config.json").exists() and (path / "tokenizer.json").exists()):
            save_4b_random(path, tokenizer_dir=args.tokenizer_dir)
    state["path"] = str(path)
    rec.row(row="build", model=desc, path=str(path), seconds=round(time.perf_counter() - t, 1))


def _dry_run_model(args) -> tuple[str, str]:
    """--model-dir when it holds a checkpoint (CI passes its tiny fixture), else the tiny model built there."""
    if (Path(args.model_dir) / "config.json").exists():
        return str(args.model_dir), f"checkpoint {args.model_dir}"
    from .models import resolve_model

    return resolve_model("tiny", Path(args.model_dir).parent)


def workload(args, rec, state) -> None:
    from transformers import AutoTokenizer

    from .workloads import card_pairs, read_items, synthetic_pairs

    tok = AutoTokenizer.from_pretrained(state["path"])
    max_chars = 200 if args.cpu_dry_run else None
    if args.items:
        items = read_items(args.items)
        pool = card_pairs(items, args.pairs + args.new_pairs + args.parity_pairs, max_chars=max_chars)
        a, b = pool[:args.pairs], pool[args.pairs:args.pairs + args.new_pairs]
        parity = [p.truncated(args.parity_chars) for p in pool[args.pairs + args.new_pairs:]]
        desc = f"card-filtered pairs of {Path(args.items).name}"
    else:
        a = synthetic_pairs(args.pairs, seed=42, tokenizer=tok, max_chars=max_chars)
        # Set B: other lengths (a longer median), so its batches have shapes set A never made.
        b = synthetic_pairs(args.new_pairs, seed=43, tokenizer=tok, max_chars=max_chars, response_median=1700,
                            response_p90=2600)
        parity = synthetic_pairs(args.parity_pairs, seed=44, tokenizer=tok,
                                 max_chars=min(args.parity_chars, max_chars or args.parity_chars))
        desc = "synthetic pairs with dev-data token lengths (A seed 42, B seed 43 longer, parity seed 44)"
    state.update(set_a=a, set_b=b, parity=parity, tok=tok)
    rec.row(row="workload", description=desc, set_a_pairs=len(a), set_b_pairs=len(b), parity_pairs=len(parity))


def packed(args, rec, device, state) -> None:
    import torch

    from judge_core.memory import auto_token_budget

    judge, load_s, weights = loaded(rec, f"packed {args.fast}", lambda: load_judge(
        state["path"], "packed", args.fast_torch_dtype, device, args.token_budget, state["tok"]), device)
    common = dict(system="judge_core", backend="packed", dtype=args.fast, weights="dense",
                  token_budget=args.token_budget,
                  load_seconds=round(load_s, 1), weights_bytes=weights,
                  auto_budget_here=auto_token_budget(_cfg(state), device))
    timed_row(rec, f"packed {args.fast} cold (first call in this process)", judge, state["set_a"], device,
              phase="cold", **common)
    _, state["packed_warm_scores"] = timed_row(rec, f"packed {args.fast} warm", judge, state["set_a"], device,
                                               phase="warm", **common)
    timed_row(rec, f"packed {args.fast} new shapes (set B, first time)", judge, state["set_b"], device,
              phase="new-shapes", **common)
    timed_row(rec, f"packed {args.fast} warm (set B again)", judge, state["set_b"], device, phase="warm-b", **common)
    # What `judge-core warmup` does once per machine: tune every pack shape this budget can make and keep
    # the choices in the kernel cache; the `fresh` step's new process then starts from that cache.
    from judge_core.warmup import warmup

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    stats = warmup(judge.backend, args.token_budget, judge.max_context)
    rec.row(row=f"packed {args.fast} warm-up over all pack shapes (fills the kernel cache, as judge-core warmup)",
            seconds=round(stats["seconds"], 2), warmup_packs=stats["packs"], warmup_tokens=stats["tokens"],
            peak_gpu_gib=round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None,
            **common)
    _, state["parity_scores"][f"packed {args.fast} (speed system)"] = timed_row(
        rec, f"packed {args.fast} parity pairs", judge, state["parity"], device, phase="parity", **common)


def _cfg(state) -> dict:
    from judge_core.checkpoint import read_config, text_config

    return text_config(read_config(state["path"]))


def gptq(args, rec, device, state) -> None:
    import torch

    from judge_core.gptq import quantize_checkpoint
    from judge_core.memory import budget_for, free_bytes_of_card

    qdir = Path(state["path"]).parent / (Path(state["path"]).name + "-gptq-rtn")
    t = time.perf_counter()
    if not (qdir / "config.json").exists():
        quantize_checkpoint(state["path"], qdir, method="rtn", device=device)
    rec.row(row="gptq quantize (rtn, g128)", seconds=round(time.perf_counter() - t, 1), path=str(qdir),
            device=str(device))
    judge, load_s, weights = loaded(rec, f"packed GPTQ {args.fast}", lambda: load_judge(
        str(qdir), "packed", args.fast_torch_dtype, device, args.token_budget, state["tok"]), device)
    common = dict(system="judge_core", backend="packed", dtype=args.fast, weights="gptq-rtn-4bit",
                  load_seconds=round(load_s, 1), weights_bytes=weights)
    timed_row(rec, f"gptq packed {args.fast} first call", judge, state["set_a"], device, phase="first",
              token_budget=args.token_budget, **common)
    timed_row(rec, f"gptq packed {args.fast} warm", judge, state["set_a"], device, phase="warm",
              token_budget=args.token_budget, **common)
    if device.type != "cuda":
        rec.row(row="gptq 8 GiB cap", status="skipped", reason="needs CUDA (memory caps)")
        return
    total = torch.cuda.get_device_properties(device).total_memory
    weights = weights or torch.cuda.memory_allocated(device)
    auto8 = budget_for(free_bytes_of_card(EIGHT_GIB), weights, _cfg(state), torch.bfloat16)
    # The caching allocator may hold what an 8 GiB card leaves after its CUDA context, no more.
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(free_bytes_of_card(EIGHT_GIB) / total, device)
    try:
        for budget, label in ((args.token_budget, "default"), (auto8, "auto for 8 GiB")):
            judge.token_budget = budget
            timed_row(rec, f"gptq packed {args.fast} under an 8 GiB cap, {label} budget {budget}", judge,
                      state["set_a"], device, phase="8gib-cap", token_budget=budget, **common)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, device)


def fp8(args, rec, device, state) -> None:
    """W8A8 FP8 quantized at load (issue 12): speed and drift against the bf16 packed rows of the same
    pairs, and the fast path (torch._scaled_mm) against the exact twin on the parity pairs."""
    import torch

    from judge_core.fp8.drift import compare_scores

    if device.type == "cuda" and torch.cuda.get_device_capability(device) < (8, 9):
        rec.row(row="fp8", status="skipped", reason=f"sm_{''.join(map(str, torch.cuda.get_device_capability(device)))}"
                                                    " has no FP8 GEMMs (sm_89+)")
        return
    judge, load_s, weights = loaded(rec, f"packed fp8 {args.fast}", lambda: load_judge(
        state["path"], "packed", args.fast_torch_dtype, device, args.token_budget, state["tok"],
        quantization="fp8"), device)
    common = dict(system="judge_core", backend="packed", dtype=args.fast, weights="fp8-w8a8-dynamic",
                  token_budget=args.token_budget, load_seconds=round(load_s, 1), weights_bytes=weights)
    timed_row(rec, f"fp8 packed {args.fast} first call", judge, state["set_a"], device, phase="first", **common)
    _, fast_scores = timed_row(rec, f"fp8 packed {args.fast} warm", judge, state["set_a"], device, phase="warm",
                               **common)
    base = state.get("packed_warm_scores")
    if base is not None:
        drift = compare_scores(base, fast_scores)
        rec.row(row=f"fp8 vs {args.fast} drift, packed, {len(base)} pairs", max_abs_delta_p1=drift["max_abs_dp1"],
                pairs_compared=drift["n"], status="ok" if drift["n"] else "no pairs scored", **drift)
    if base is None or not state["parity"]:
        return
    # Fast path vs the exact twin on the parity pairs: the same fp8 weights, only the GEMM differs.
    from judge_core.fp8.linear import FP8Linear

    parity = [p.as_tuple() for p in state["parity"]]
    fast = judge.compare_many(parity)
    layers = [m for m in judge.backend.model.modules() if isinstance(m, FP8Linear)]
    for layer in layers:
        layer.compute, layer._resolved = "twin", None
    twin = judge.compare_many(parity)
    parity_drift = compare_scores(twin, fast)
    rec.row(row=f"fp8 fast path vs fp8 twin, {len(parity)} parity pairs", fp8_layers=len(layers),
            max_abs_delta_p1=parity_drift["max_abs_dp1"], pairs_compared=parity_drift["n"],
            status="ok" if parity_drift["n"] else "no pairs scored", **parity_drift)
    del judge
    if device.type == "cuda":
        torch.cuda.empty_cache()


def hf(args, rec, device, state) -> None:
    judge, load_s, weights = loaded(rec, f"hf {args.fast}", lambda: load_judge(
        state["path"], "hf", args.fast_torch_dtype, device, args.token_budget, state["tok"]), device)
    common = dict(system="judge_core", backend="hf", dtype=args.fast, weights="dense", token_budget=args.token_budget,
                  load_seconds=round(load_s, 1), weights_bytes=weights)
    timed_row(rec, f"hf {args.fast} first call", judge, state["set_a"], device, phase="first", **common)
    timed_row(rec, f"hf {args.fast} warm", judge, state["set_a"], device, phase="warm", **common)
    _, state["parity_scores"][f"hf {args.fast} (speed system)"] = timed_row(
        rec, f"hf {args.fast} parity pairs", judge, state["parity"], device, phase="parity", **common)


def fresh(args, rec, device, state) -> None:
    cmd = [sys.executable, "-m", "bench.gpu_run", "--fresh-process-row", "--model-dir", args.model_dir,
           "--out", args.out, "--pairs", str(args.pairs), "--token-budget", str(args.token_budget)]
    if args.cpu_dry_run:
        cmd.append("--cpu-dry-run")
    if args.items:
        cmd += ["--items", args.items]
    env = dict(os.environ)  # TRITON_CACHE_DIR etc.: the cache this run filled
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parent.parent), env.get("PYTHONPATH", "")])
    remaining = max(30.0, args.max_seconds + 120 - rec.elapsed())
    rec.say(f"child process: {' '.join(cmd[1:])}")
    done = subprocess.run(cmd, env=env, timeout=remaining, capture_output=True, text=True)
    print(done.stdout[-3000:], done.stderr[-2000:] if done.returncode else "", sep="", flush=True)
    # The child appended its own rows to the JSONL; read them back for the table.
    rows = [json.loads(line) for line in rec.path.read_text().splitlines() if line.strip()]
    rec.rows.extend(r for r in rows[len(rec.rows):])
    if done.returncode:
        rec.row(row="fresh process", status="failed", reason=f"exit {done.returncode}: {done.stderr[-400:]}")


def fresh_process_child(args, rec, device) -> int:
    """A new process with a filled kernel cache: load, load-time warm-up, first call on set A."""
    from transformers import AutoTokenizer

    from judge_core.warmup import warmup

    path = _dry_run_model(args)[0] if args.cpu_dry_run else str(Path(args.model_dir))
    judge, load_s, weights = loaded(rec, f"packed {args.fast} (fresh process)", lambda: load_judge(
        path, "packed", args.fast_torch_dtype, device, args.token_budget), device)
    t = time.perf_counter()
    stats = warmup(judge.backend, judge.token_budget, judge.max_context)
    common = dict(system="judge_core", backend="packed", dtype=args.fast, weights="dense",
                  token_budget=args.token_budget, load_seconds=round(load_s, 1))
    rec.row(row="fresh process: load-time warm-up", seconds=round(time.perf_counter() - t, 2),
            warmup_packs=stats["packs"], warmup_tokens=stats["tokens"], **common)
    from .workloads import card_pairs, read_items, synthetic_pairs

    tok = AutoTokenizer.from_pretrained(path)
    max_chars = 200 if args.cpu_dry_run else None
    pairs = (card_pairs(read_items(args.items), args.pairs, max_chars=max_chars) if args.items else
             synthetic_pairs(args.pairs, seed=42, tokenizer=tok, max_chars=max_chars))
    timed_row(rec, f"packed {args.fast} fresh process, kernel cache filled + warm-up (first call)", judge, pairs,
              device,
              phase="cold-cached", **common)
    return 0


def parity(args, rec, device, state) -> None:
    import torch

    from judge_core.reference import ReferenceJudge

    parity, scores = state["parity"], state["parity_scores"]
    hf32, load_s, _ = loaded(rec, "hf fp32", lambda: load_judge(
        state["path"], "hf", torch.float32, device, args.token_budget, state["tok"]), device)
    reference = ReferenceJudge(hf32.backend.model, hf32.tokenizer)  # the same fp32 weights, the card's algorithm
    _, ref = timed_row(rec, "reference twin fp32 parity pairs", reference, parity, device, system="reference",
                       dtype="fp32", phase="parity")
    _, scores["hf fp32"] = timed_row(rec, "hf fp32 parity pairs", hf32, parity, device, system="judge_core",
                                     backend="hf", dtype="fp32", phase="parity")
    del hf32, reference
    free_memory(device)
    packed32, _, _ = loaded(rec, "packed fp32", lambda: load_judge(
        state["path"], "packed", torch.float32, device, args.token_budget, state["tok"]), device)
    _, scores["packed fp32"] = timed_row(rec, "packed fp32 parity pairs", packed32, parity, device, system="judge_core",
                                         backend="packed", dtype="fp32", phase="parity")
    del packed32
    for name, got in scores.items():
        acc = agreement_of(got, ref)
        kind = "drift" if name in state["drift_names"] else "parity"  # speed systems drift; fp32 twins must agree
        ok = acc.get("pairs_compared", 0) > 0 and (kind == "drift" or acc["max_abs_delta_p1"] <= FP32_PARITY_TOLERANCE)
        if kind == "parity" and not ok:
            state["failed_parity"].append(name)
        rec.row(row=f"{kind} {name} vs reference twin fp32", **acc,
                tolerance=FP32_PARITY_TOLERANCE if kind == "parity" else None,
                status="ok" if ok else "FAIL")
        print(f"{kind} {name} vs reference fp32 ({acc.get('pairs_compared')} pairs): max |d p1| = "
              f"{acc.get('max_abs_delta_p1', float('nan')):.3g} pp, verdicts agree "
              f"{acc.get('verdict_agreement', float('nan')):.0%}", flush=True)


def plain(args, rec, device, state) -> None:
    import torch

    from .plain_hf import PlainHFBaseline

    plain, load_s, _ = loaded(rec, f"plain transformers {args.fast}", lambda: PlainHFBaseline(
        state["path"], dtype=args.fast_torch_dtype, device=device, rows_per_batch=args.plain_rows), device)
    cap = min(args.plain_seconds, max(5.0, args.max_seconds + 60 - rec.elapsed()))
    pairs, chunk = state["set_a"], max(1, args.plain_rows // 2)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    done, tokens, t = 0, 0, time.perf_counter()
    while done < len(pairs) and time.perf_counter() - t < cap:  # whole batches until the time cap
        scores = plain.compare_many([p.as_tuple() for p in pairs[done:done + chunk]])
        done += len(scores)
        tokens += sum(sum(s.tokens) for s in scores if s.ok)
    sync(device)
    seconds = time.perf_counter() - t
    peak = int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None
    rec.row(row=f"plain transformers {args.fast}, {args.plain_rows} rows per batch (capped at {cap:.0f} s)",
            system="plain", dtype=args.fast, phase="first-calls", pairs=done, prompts=2 * done, prompt_tokens=tokens,
            seconds=round(seconds, 3), prompt_tokens_per_s=tokens / max(seconds, 1e-9), load_seconds=round(load_s, 1),
            peak_gpu_bytes=peak, peak_gpu_gib=None if peak is None else round(peak / 2**30, 2),
            capped=done < len(pairs))


def csrc(args, rec, device) -> None:
    from .csrc_row import run_rows

    for row in run_rows(device, dry_run=args.cpu_dry_run, repeats=3 if args.cpu_dry_run else 20):
        name = f"csrc {row.pop('op')} {row.pop('impl')}"
        row.pop("row")
        rec.row(row=name, **row)
