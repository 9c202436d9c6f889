"""`python -m bench`: run several systems on one workload and report them side by side.

Examples:
  # CPU, real data lengths cut for CPU, tiny random model, fp32, with a token-budget sweep
  python -m bench --items ../shared/data/creative_writing_items.dev.jsonl.gz --n-pairs 24 --max-chars 600 \\
      --model tiny --dtypes fp32 --sweep-budgets 4096,8192,16384,32768,65536 --out /tmp/bench-cpu
  # synthetic pairs (no data), a checkpoint of your own, bf16 and fp32
  python -m bench --model /path/to/ckpt --dtypes bf16,fp32 --n-pairs 200
  # fp8 drift on your own pairs before trusting fp8 (GPU: bf16 vs fp8; CPU: the exact, slow twin)
  python -m bench --model /path/to/ckpt --pairs-jsonl my_pairs.jsonl --systems judge_core --backends packed \
      --dtypes bf16 --compare-quantization fp8
  # shared prefixes: scenario rows (card pairs, GRPO anchor, round-robin, a tournament round), shared vs unshared
  python -m bench --prefix-scenarios --help
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _ints(text: str) -> tuple[int, ...]:
    """'4096,8k' -> (4096, 8192)."""
    out = []
    for x in (t.strip().lower() for t in text.split(",")):
        if x:
            out.append(int(x[:-1]) * 1024 if x.endswith("k") else int(x))
    return tuple(out)


def _names(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def build_parser() -> argparse.ArgumentParser:
    from .suite import ALL_SYSTEMS

    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    w = p.add_argument_group("workload (default: synthetic pairs with dev-data-like lengths)")
    src = w.add_mutually_exclusive_group()
    src.add_argument("--items", help="creative-writing items .jsonl(.gz): pairs built with the card's filter")
    src.add_argument("--pairs-jsonl", help="any JSONL of pairs (instruction, response_1, response_2[, score_1, score_2])")
    w.add_argument("--n-pairs", type=int, default=24)
    w.add_argument("--seed", type=int, default=42)
    w.add_argument("--max-chars", type=int, default=None, help="cut each response to this many characters")
    w.add_argument("--synthetic-response-median", type=int, default=None,
                   help="synthetic workload: response median in tokens (default 1400, as the dev data)")
    m = p.add_argument_group("model and systems")
    m.add_argument("--model", default="tiny", help="tiny | 4b-random (GPU) | a checkpoint dir")
    m.add_argument("--device", default=None, help="cpu | cuda (default: cuda if available)")
    m.add_argument("--systems", default=",".join(ALL_SYSTEMS), help=f"comma list of {','.join(ALL_SYSTEMS)}")
    m.add_argument("--backends", default="hf,packed", help="judge_core backends (a missing one is reported skipped)")
    m.add_argument("--dtypes", default="fp32", help="comma list of fp32,bf16")
    m.add_argument("--token-budget", default="32768",
                   help="judge_core token budget; a comma list runs one judge_core system per budget")
    m.add_argument("--plain-rows", type=int, default=8, help="rows per batch of the plain HF baseline")
    m.add_argument("--reference-pairs", type=int, default=None, help="reference twin on the first K pairs only")
    m.add_argument("--no-cutoff", action="store_true", help="skip the reference run with the card's top-10 cutoff")
    m.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads (1 gives stable CPU timings on a shared machine)")
    m.add_argument("--repeats", type=int, default=1, help="time each system N times, report the fastest")
    m.add_argument("--compare-quantization", default=None, choices=("fp8",),
                   help="also run every judge_core system with this quantization (fp8: W8A8 at load) and report "
                        "its drift against the same system unquantized (max/mean |dp1|, verdict agreement): run it "
                        "on your own pairs (--pairs-jsonl) before trusting fp8")
    s = p.add_argument_group("sweeps")
    s.add_argument("--sweep-budgets", default="", help="e.g. 4096,8192,16384,32768,65536")
    s.add_argument("--sweep-lengths", default="", help="response tokens per point, e.g. 128,256,512,1024")
    s.add_argument("--sweep-pairs", type=int, default=4)
    s.add_argument("--replicas", default="",
                   help="also time judge_core on a local Ray with these replica counts, e.g. 1,2 (bench/replicas.py)")
    p.add_argument("--cpu-row", action="store_true",
                   help="run only the CPU row (4B head sizes at tiny width, 64 real pairs, 1 and 2 threads): "
                        "`python -m bench.cpu_row --help` for its options")
    o = p.add_argument_group("output")
    o.add_argument("--out", default=None, help="output dir (default /tmp/judge_core_bench/<time>)")
    o.add_argument("--work-dir", default="/tmp/judge_core_bench", help="where built checkpoints go")
    o.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--prefix-scenarios"]:  # shared vs unshared prefixes, scenario rows (bench/prefix_scenarios.py)
        from .prefix_scenarios import main as prefix_main

        return prefix_main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.cpu_row:
        from .cpu_row import main as cpu_row_main

        return cpu_row_main(["--out", os.path.join(args.out, "cpu_row.json")] if args.out else [])
    from .report import markdown_table, write_all
    from .suite import BenchConfig, run_bench

    argv_text = " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    cfg = BenchConfig(model=args.model, device=args.device, items=args.items, pairs_jsonl=args.pairs_jsonl,
                      n_pairs=args.n_pairs, seed=args.seed, max_chars=args.max_chars,
                      synthetic_response_median=args.synthetic_response_median, systems=_names(args.systems),
                      backends=_names(args.backends), dtypes=_names(args.dtypes), token_budget=_ints(args.token_budget),
                      plain_rows=args.plain_rows, reference_pairs=args.reference_pairs, cutoff=not args.no_cutoff,
                      sweep_budgets=_ints(args.sweep_budgets), sweep_lengths=_ints(args.sweep_lengths),
                      sweep_pairs=args.sweep_pairs, compare_quantization=args.compare_quantization, repeats=args.repeats, threads=args.threads, progress=not args.no_progress, work_dir=args.work_dir,
                      command=f"python -m bench {argv_text}")
    results = run_bench(cfg)
    if args.replicas:  # Ray Data, 1 vs N replicas (on a shared 2-core CPU: Ray's overhead, not scaling)
        from .replicas import format_row, replicas_rows

        results["replicas"] = replicas_rows(args.model, args.n_pairs, replicas=_ints(args.replicas),
                                            threads=args.threads or 1)
    out = args.out or os.path.join(args.work_dir, time.strftime("%Y%m%d-%H%M%S"))
    paths = write_all(results, out)
    print(markdown_table(results))
    for row in results.get("replicas", []):
        print(format_row(row))
    print(f"wrote {paths['json']}, {paths['markdown']}" + "".join(f", {p}" for p in paths["plots"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
