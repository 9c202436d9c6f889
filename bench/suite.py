"""One bench run: workload -> systems -> metrics -> sweeps -> targets, as one results dict.

`run_bench(BenchConfig(...))` is what `python -m bench` calls (bench/gpu_run.py has its own steps).
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from . import metrics
from .cost import CostModel, measured_matmul_peak
from .models import resolve_model
from .systems import DTYPES, SystemRun, SystemSpec, gptq_checkpoint, retime, run_system
from .sweeps import prompt_length_sweep, token_budget_sweep
from .workloads import BenchPair, card_pairs, jsonl_pairs, read_items, synthetic_pairs

ALL_SYSTEMS = ("judge_core", "gptq", "plain", "reference", "vllm")
GPU_TARGET_TOKENS_PER_S = 60_000  # 57% of the ~105k tokens/s ceiling at 4k context (DESIGN §5)


@dataclass
class BenchConfig:
    model: str = "tiny"                     # tiny | 4b-random | a checkpoint dir
    device: str | None = None               # cpu | cuda; default: cuda if available
    items: str | None = None                # creative-writing items .jsonl(.gz): card-filtered pairs
    pairs_jsonl: str | None = None          # any pairs JSONL
    n_pairs: int = 24
    seed: int = 42
    max_chars: int | None = None            # truncate each response to this many characters
    synthetic_response_median: int | None = None  # synthetic workload: override the 1.4k-token median
    systems: tuple[str, ...] = ALL_SYSTEMS
    backends: tuple[str, ...] = ("hf", "packed")
    dtypes: tuple[str, ...] = ("fp32",)
    token_budget: int | tuple[int, ...] = 32768  # several: one judge_core system per budget
    plain_rows: int = 8
    reference_pairs: int | None = None      # the reference twin scores only the first K pairs (slow)
    fp32_pairs: int | None = None           # fp32 systems score only the first K pairs (GPU: parity, not speed)
    cutoff: bool = True                     # also run the reference with the card's top-10 rule
    sweep_budgets: tuple[int, ...] = ()
    sweep_lengths: tuple[int, ...] = ()     # response tokens per point of the prompt-length sweep
    sweep_pairs: int = 4
    sweep_systems: tuple[str, ...] = ("judge_core", "plain")
    compare_quantization: str | None = None  # "fp8": each judge_core system also quantized, drift reported
    warmup_pairs: int = 1
    repeats: int = 1                        # time each system this many times, keep the fastest
    progress: bool = True
    threads: int | None = None              # torch intra-op threads for the run (restored afterwards)
    reuse_systems: bool | None = None       # keep built systems for the sweeps; default: on CPU only (memory)
    work_dir: str = "/tmp/judge_core_bench"
    command: str = ""


def _git_commit() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True,
                               timeout=10).stdout.strip()
    except Exception:
        return "unknown"
    return f"{head}{' + uncommitted work' if dirty else ''}" if head else "unknown"


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_description(device: torch.device) -> dict:
    out = {"cpu": _cpu_name(), "cpu_cores": os.cpu_count(), "torch": torch.__version__, "python": sys.version.split()[0]}
    try:
        import transformers

        out["transformers"] = transformers.__version__
    except ImportError:
        pass
    if device.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(device)
        out["gpu_memory_gib"] = round(torch.cuda.get_device_properties(device).total_memory / 2**30, 1)
        out["device_name"] = out["gpu"]
    else:
        out["device_name"] = f"{out['cpu_cores']}-core CPU ({out['cpu']}), no GPU" if not torch.cuda.is_available() \
            else f"CPU ({out['cpu']})"
    return out


def load_workload(cfg: BenchConfig, tokenizer) -> tuple[list[BenchPair], str]:
    if cfg.items:
        pairs = card_pairs(read_items(cfg.items), cfg.n_pairs, seed=cfg.seed, max_chars=cfg.max_chars)
        desc = f"card-filtered pairs from {Path(cfg.items).name} (seed {cfg.seed})"
    elif cfg.pairs_jsonl:
        pairs = jsonl_pairs(cfg.pairs_jsonl, max_chars=cfg.max_chars, limit=cfg.n_pairs)
        desc = f"pairs from {Path(cfg.pairs_jsonl).name}"
    else:
        kw = {}
        if cfg.synthetic_response_median:
            kw = {"response_median": cfg.synthetic_response_median,
                  "response_p90": cfg.synthetic_response_median * 1.5}
        pairs = synthetic_pairs(cfg.n_pairs, seed=cfg.seed, tokenizer=tokenizer, max_chars=cfg.max_chars, **kw)
        desc = f"synthetic pairs (dev-data-like token lengths, seed {cfg.seed})"
    if cfg.max_chars:
        desc += f", responses cut to {cfg.max_chars} chars"
    return pairs, desc


def build_specs(cfg: BenchConfig, path: str, device: torch.device) -> tuple[list[SystemSpec], list[dict]]:
    """The systems to run, and any rows for systems that could not even be specified (skipped)."""
    specs, skipped = [], []
    budgets = (cfg.token_budget,) if isinstance(cfg.token_budget, int) else tuple(cfg.token_budget)

    def tag(budget: int) -> str:  # names carry the budget only when several are compared
        return "" if len(budgets) == 1 else f" @{budget // 1024}k" if budget % 1024 == 0 else f" @{budget}"

    if "judge_core" in cfg.systems:
        for backend in cfg.backends:
            for dt in cfg.dtypes:
                for b in budgets:
                    specs.append(SystemSpec(f"judge_core {backend} {dt}{tag(b)}", "judge_core", path, dt, backend,
                                            options={"token_budget": b}))
                    if cfg.compare_quantization:
                        q = cfg.compare_quantization
                        specs.append(SystemSpec(f"judge_core {backend} {dt} {q}{tag(b)}", "judge_core", path, dt,
                                                backend, options={"token_budget": b, "quantization": q,
                                                                  "unquantized": specs[-1].name}))
    if "gptq" in cfg.systems:
        qdir, why = gptq_checkpoint(path, os.path.join(cfg.work_dir, "gptq-rtn-" + Path(path).name))
        if qdir is None:
            skipped.append({"name": "judge_core gptq", "kind": "judge_core", "status": "skipped", "reason": why})
        else:
            for backend in cfg.backends:
                for dt in cfg.dtypes:
                    for b in budgets:
                        specs.append(SystemSpec(f"judge_core gptq-rtn {backend} {dt}{tag(b)}", "judge_core", qdir,
                                                dt, backend, weights="gptq", options={"token_budget": b}))
    if "plain" in cfg.systems:
        for dt in cfg.dtypes:
            specs.append(SystemSpec(f"plain HF batched {dt}", "plain", path, dt,
                                    options={"rows_per_batch": cfg.plain_rows}))
    if "reference" in cfg.systems:
        specs.append(SystemSpec("reference twin fp32", "reference", path, "fp32", options={"role": "reference"}))
        if cfg.cutoff:
            specs.append(SystemSpec("reference twin fp32, card top-10 cutoff", "reference", path, "fp32",
                                    options={"top_k": 10, "role": "cutoff"}))
    if "vllm" in cfg.systems:
        specs.append(SystemSpec("vLLM card code bf16", "vllm", path, "bf16"))
    return specs, skipped


def _lengths(run: SystemRun) -> list[int]:
    return [t for s in run.scores if s.ok for t in s.tokens]


def _targets(rows: list[dict], device: torch.device, model: str) -> list[dict]:
    ok = [r for r in rows if r["status"] == "ok" and r.get("role") not in ("cutoff",)]
    tps = {r["name"]: r["speed"]["prompt_tokens_per_s"] for r in ok}
    engine = {n: v for n, v in tps.items() if n.startswith("judge_core")}
    others = {n: v for n, v in tps.items() if not n.startswith("judge_core")}
    if not engine:
        return [{"target": "judge_core measured", "met": False, "detail": "no judge_core system ran"}]
    best_name = max(engine, key=engine.get)
    best = engine[best_name]
    out = []
    if device.type == "cuda":
        bf16 = {n: v for n, v in engine.items() if n.endswith("bf16")}
        if bf16:
            name = max(bf16, key=bf16.get)
            out.append({"target": f">= {GPU_TARGET_TOKENS_PER_S:,} prompt tokens/s in bf16" +
                        ("" if model == "4b-random" else " (model is not the 4B shape: indicative only)"),
                        "met": bf16[name] >= GPU_TARGET_TOKENS_PER_S, "detail": f"{name}: {bf16[name]:,.0f} tokens/s"})
    for other, value in sorted(others.items()):
        out.append({"target": f"judge_core ahead of {other}", "met": best > value,
                    "detail": f"{best_name} {best:,.0f} vs {value:,.0f} tokens/s ({best / value:.2f}x)"})
    return out


def quantization_drift(runs: list[SystemRun]) -> list[dict]:
    """Each quantized judge_core run against the same system unquantized, on the pairs both scored
    (judge_core.fp8.drift.compare_scores), in the drift table's keys."""
    from judge_core.fp8.drift import compare_scores

    by_name = {r.spec.name: r for r in runs if r.ok}
    out = []
    for run in by_name.values():
        base = by_name.get(run.spec.options.get("unquantized"))
        if base is None:
            continue
        k = min(len(run.scores), len(base.scores))
        d = compare_scores(base.scores[:k], run.scores[:k])
        out.append({"system": run.spec.name, "against": base.spec.name, "pairs_compared": d["n"],
                    "failed": d["failed"], "max_abs_delta_p1": d["max_abs_dp1"],
                    "mean_abs_delta_p1": d["mean_abs_dp1"], "verdict_agreement": d["verdict_agreement"],
                    "speedup": base.seconds / run.seconds if run.seconds else None})
    return out


def run_bench(cfg: BenchConfig) -> dict:
    """Run the whole bench; torch's thread count is set to `cfg.threads` for the run and restored."""
    previous_threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _run_bench(cfg)
    finally:
        torch.set_num_threads(previous_threads)


def _run_bench(cfg: BenchConfig) -> dict:
    from transformers import AutoTokenizer

    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    Path(cfg.work_dir).mkdir(parents=True, exist_ok=True)
    path, model_desc = resolve_model(cfg.model, cfg.work_dir)
    tokenizer = AutoTokenizer.from_pretrained(path)
    pairs, workload_desc = load_workload(cfg, tokenizer)
    cost = CostModel.from_pretrained(path)
    peaks = {}
    for dt in sorted({*cfg.dtypes, "fp32"}):
        peaks[dt] = measured_matmul_peak(device, DTYPES[dt])

    specs, skipped_rows = build_specs(cfg, path, device)
    reuse = cfg.reuse_systems if cfg.reuse_systems is not None else device.type == "cpu"
    cache: dict | None = {} if reuse else None
    runs: list[SystemRun] = []
    subsets = []
    # With systems kept alive, repeats go round-robin over all systems (see systems.retime);
    # otherwise each system is timed `repeats` times in a row before the next is loaded.
    repeats_in_a_row = 1 if cache is not None else cfg.repeats
    for spec in specs:
        subset = pairs
        if spec.kind == "reference" and cfg.reference_pairs:
            subset = pairs[: cfg.reference_pairs]
        elif spec.dtype == "fp32" and cfg.fp32_pairs:
            subset = pairs[: cfg.fp32_pairs]
        if cfg.progress:
            print(f"[bench] {spec.name}: {len(subset)} pairs on {device}", file=sys.stderr, flush=True)
        run = run_system(spec, subset, device, warmup_pairs=cfg.warmup_pairs, repeats=repeats_in_a_row,
                         progress=cfg.progress, cache=cache)
        if cfg.progress:
            tail = f"{run.stats.get('real_tokens', 0) / run.seconds:,.0f} prompt tok/s" if run.ok else run.reason
            print(f"[bench]   {run.status}: {tail}", file=sys.stderr, flush=True)
        runs.append(run)
        subsets.append(subset)
    if cache is not None and cfg.repeats > 1:
        rounds = range(cfg.repeats - 1)
        if cfg.progress:
            from tqdm.auto import tqdm

            rounds = tqdm(rounds, desc="round-robin repeats", unit="round")
        for _ in rounds:
            for run, subset in zip(runs, subsets):
                retime(run, subset, device, cache)

    reference = next((r for r in runs if r.ok and r.spec.options.get("role") == "reference"), None)
    cutoff_run = next((r for r in runs if r.ok and r.spec.options.get("role") == "cutoff"), None)

    rows = list(skipped_rows)
    for run in runs:
        spec = run.spec
        subset = pairs[: len(run.scores)] if run.ok else pairs
        row = {"name": spec.name, "kind": spec.kind, "backend": spec.backend, "dtype": spec.dtype,
               "weights": spec.weights, "role": spec.options.get("role"), "status": run.status, "reason": run.reason,
               "pairs": len(run.scores), "load_seconds": run.load_seconds}
        if run.ok:
            lengths = _lengths(run)
            row["speed"] = metrics.speed_metrics(run.stats, run.seconds, len(run.scores), lengths, cost,
                                                 peaks[spec.dtype if spec.dtype in peaks else "fp32"]["flops"])
            row["memory"] = {"peak_gpu_bytes": run.peak_gpu_bytes, "peak_rss_bytes": run.peak_rss_bytes,
                             "rss_before_load_bytes": run.rss_before_load_bytes,
                             "peak_rss_over_preload_bytes": (run.peak_rss_bytes or 0) - (run.rss_before_load_bytes or 0),
                             "rss_peak_is_process_lifetime": run.rss_peak_is_process_lifetime}
            row["stats"] = {k: v for k, v in run.stats.items() if k != "traceback"}
            if reference is not None and run is not reference:
                k = min(len(run.scores), len(reference.scores))
                row["vs_reference"] = metrics.agreement(run.scores[:k], reference.scores[:k])
            row["card"] = metrics.card_metrics(run.scores, subset)
            row["p1"] = [s.p1 if s.ok else None for s in run.scores]
        else:
            row["stats"] = run.stats
        rows.append(row)

    drift = []
    by_name = {r.spec.name: r for r in runs if r.ok}
    for name, run in by_name.items():
        if " bf16" in name:
            twin = by_name.get(name.replace(" bf16", " fp32"))
            if twin is not None:
                k = min(len(run.scores), len(twin.scores))
                d = metrics.agreement(run.scores[:k], twin.scores[:k])
                drift.append({"system": name, "against": twin.spec.name, **d})

    drift += quantization_drift(runs)

    first_full = next((r for r in runs if r.ok and len(r.scores) == len(pairs)), None)
    all_lengths = _lengths(first_full) if first_full else []
    workload = {"description": workload_desc, "n_pairs": len(pairs), "prompts": 2 * len(pairs),
                "labelled_pairs": sum(p.label is not None for p in pairs)}
    if all_lengths:
        q = sorted(all_lengths)
        workload.update(prompt_tokens_total=sum(q), prompt_tokens_median=int(statistics.median(q)),
                        prompt_tokens_p90=q[int(0.9 * (len(q) - 1))], prompt_tokens_max=q[-1])

    sweeps = {}
    judge_specs = [s for s in specs if s.kind == "judge_core" and s.weights == "dense" and s.name in by_name
                   and s.dtype == cfg.dtypes[0]]
    if cfg.sweep_budgets and judge_specs:
        fastest = max(judge_specs, key=lambda s: by_name[s.name].stats["real_tokens"] / by_name[s.name].seconds)
        sweeps["token_budget"] = token_budget_sweep(fastest, pairs, cfg.sweep_budgets, device,
                                                     repeats=cfg.repeats, progress=cfg.progress, cache=cache)
    if cfg.sweep_lengths:
        # The sweeps are about speed: one dtype (the first asked for), dense weights, no accuracy-only runs.
        sweep_specs = [s for s in specs if s.name in by_name and s.kind in cfg.sweep_systems and s.weights == "dense"
                       and s.options.get("role") is None and s.dtype == cfg.dtypes[0]]
        sweeps["prompt_length"] = prompt_length_sweep(sweep_specs, list(cfg.sweep_lengths), cfg.sweep_pairs, device,
                                                      tokenizer=tokenizer, seed=cfg.seed, repeats=cfg.repeats,
                                                      progress=cfg.progress, cache=cache)

    if cache:
        cache.clear()
    machine = machine_description(device)
    machine["torch_threads"] = torch.get_num_threads()
    results = {
        "meta": {"command": cfg.command, "commit": _git_commit(), "date_utc": datetime.datetime.now(
            datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "device": str(device),
            "device_name": machine["device_name"], "machine": machine, "model": model_desc,
            "config": {k: v for k, v in asdict(cfg).items() if k != "command"}},
        "workload": workload,
        "cost_model": cost.describe(),
        "matmul_peak": peaks,
        "systems": rows,
        "drift": drift,
        "cutoff": metrics.cutoff_effect(reference.scores, cutoff_run.scores)
        if reference is not None and cutoff_run is not None else {},
        "sweeps": sweeps,
    }
    results["targets"] = _targets(rows, device, cfg.model)
    return results
