"""Fidelity at the real Qwen3.5-4B shape (random weights), on the CPU or a GPU: fp32 parity against the
reference twin, bf16 drift of both backends, fp8 drift, and the fp8 fast path against its twin.

    python -m bench.fidelity_4b --device cpu --pairs 3 --max-chars 1200 --items ITEMS.jsonl.gz   # 2-core CPU
    python -m bench.fidelity_4b --device cuda --pairs 6 --max-chars 3000 --items ITEMS.jsonl.gz

Why on the CPU too: the H100 run at 7ef3a96 found packed fp32 0.056 pp from the twin at this shape
(1e-3 pp on the tiny model). The CPU has no TF32 and no Triton in the fp32 path, so the same comparison
here says whether the gap is the GPU's arithmetic or a real difference only this shape exposes; and
the bf16-vs-fp32 drift is the yardstick fp8's drift needs (random weights amplify rounding).

Every system loads from one bf16 checkpoint on disk by the public loading path (built once into
--model-dir: ~8 GB), one system in memory at a time (fp32 4B is ~15 GB), in this order:
  reference twin fp32 (judge_core/reference.py over the hf fp32 model), hf fp32, packed fp32,
  packed bf16, hf bf16, packed fp8 (twin), packed fp8 (scaled_mm, where torch runs it).
Comparisons: each system against the twin; fp8 against packed bf16; fp8 scaled_mm against fp8 twin;
packed bf16 against hf bf16. Rows go to --out as each exists (JSONL); a table ends the run.
Random weights: the figures say how much arithmetic moves a 4B-shaped judge, not how the trained
judge's verdicts move (`python -m bench --compare-quantization fp8` on the real checkpoint does that).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# (system name, backend, dtype, quantization, fp8 compute)
SYSTEMS = (
    ("hf fp32", "hf", "fp32", None, None),
    ("packed fp32", "packed", "fp32", None, None),
    ("packed bf16", "packed", "bf16", None, None),
    ("hf bf16", "hf", "bf16", None, None),
    ("packed fp8 twin", "packed", "bf16", "fp8", "twin"),
    ("packed fp8 scaled_mm", "packed", "bf16", "fp8", "scaled_mm"),
)
# (system, against): what each comparison row measures.
COMPARISONS = [(name, "reference twin fp32") for name, *_ in SYSTEMS] + [
    ("packed bf16", "hf bf16"),
    ("packed fp8 twin", "packed bf16"),
    ("packed fp8 scaled_mm", "packed fp8 twin"),
]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.fidelity_4b", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--max-chars", type=int, default=1200, help="responses cut to this many characters")
    p.add_argument("--items", default=None, help="creative-writing items .jsonl(.gz): card-filtered real pairs "
                                                 "(default: synthetic pairs with dev-data lengths)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random 4B weights")
    p.add_argument("--model-dir", default=None,
                   help="the bf16 checkpoint, built there when missing (default: under $JUDGE_CORE_CACHE)")
    p.add_argument("--token-budget", type=int, default=8192)
    p.add_argument("--systems", default=",".join(name for name, *_ in SYSTEMS),
                   help="comma-separated subset of the systems (the reference twin always runs)")
    p.add_argument("--out", default="bench/out/fidelity_4b.jsonl")
    return p


def _model_dir(args) -> Path:
    if args.model_dir:
        return Path(args.model_dir)
    from judge_core.embedded.tokenizer import cache_dir

    return cache_dir() / "bench" / f"qwen3_5-4b-random-seed{args.seed}"


def _pairs(args, tok) -> tuple[list, str]:
    from .workloads import card_pairs, read_items, synthetic_pairs

    if args.items:
        pairs = card_pairs(read_items(args.items), args.pairs, max_chars=args.max_chars)
        return pairs, f"{len(pairs)} card-filtered pairs of {Path(args.items).name}, cut to {args.max_chars} chars"
    pairs = synthetic_pairs(args.pairs, seed=44, tokenizer=tok, max_chars=args.max_chars)
    return pairs, f"{len(pairs)} synthetic pairs (seed 44), cut to {args.max_chars} chars"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    wanted = [s for s in args.systems.split(",") if s]
    known = {name for name, *_ in SYSTEMS}
    if set(wanted) - known:
        raise SystemExit(f"--systems: unknown {sorted(set(wanted) - known)}: expected some of {sorted(known)}")

    import torch
    from transformers import AutoTokenizer

    from judge_core.dtypes import parse_dtype
    from judge_core.fp8.linear import scaled_mm_problem
    from judge_core.reference import ReferenceJudge

    from .gpu_rows import Recorder, agreement_of, free_memory, load_judge, loaded, timed_row
    from .models import save_4b_random
    from .suite import _git_commit, machine_description

    device = torch.device(args.device)
    rec = Recorder(Path(args.out), time.perf_counter(), name="fidelity_4b")
    rec.row(row="meta", command="python -m bench.fidelity_4b " + " ".join(sys.argv[1:] if argv is None else argv),
            commit=_git_commit(), machine=machine_description(device), torch=torch.__version__,
            torch_threads=torch.get_num_threads())
    path = _model_dir(args)
    if not ((path / "config.json").exists() and (path / "tokenizer.json").exists()):
        t = time.perf_counter()
        save_4b_random(path, seed=args.seed, device=args.device)
        rec.row(row="build", path=str(path), seconds=round(time.perf_counter() - t, 1))
    tok = AutoTokenizer.from_pretrained(str(path))
    pairs, desc = _pairs(args, tok)
    rec.row(row="workload", description=desc, model=f"Qwen3.5-4B text shape, random bf16 weights (seed {args.seed})")

    scores: dict[str, list] = {}
    # The card's algorithm over the hf fp32 model (the yardstick), then the engine's hf fp32 on the same weights.
    hf32, _, _ = loaded(rec, "hf fp32", lambda: load_judge(str(path), "hf", torch.float32, device,
                                                          args.token_budget, tok), device)
    _, scores["reference twin fp32"] = timed_row(rec, "reference twin fp32", ReferenceJudge(hf32.backend.model, tok),
                                                 pairs, device, system="reference", dtype="fp32")
    if "hf fp32" in wanted:
        _, scores["hf fp32"] = timed_row(rec, "hf fp32", hf32, pairs, device, system="judge_core", backend="hf",
                                         dtype="fp32")
    del hf32
    free_memory(device)
    for name, backend, dtype, quantization, compute in SYSTEMS:
        if name not in wanted or name in scores:
            continue
        if compute == "scaled_mm" and scaled_mm_problem(device):
            rec.row(row=name, status="skipped", reason=scaled_mm_problem(device))
            continue
        judge, _, _ = loaded(rec, name, lambda: load_judge(str(path), backend, parse_dtype(dtype), device,
                                                           args.token_budget, tok, quantization=quantization,
                                                           fp8_compute=compute or "auto"), device)
        _, scores[name] = timed_row(rec, name, judge, pairs, device, system="judge_core", backend=backend,
                                    dtype=dtype, quantization=quantization, fp8_compute=compute)
        del judge
        free_memory(device)

    compared = [(name, against, rec.row(row=f"{name} vs {against}", **agreement_of(scores[name], scores[against])))
                for name, against in COMPARISONS if name in scores and against in scores]
    print("\n| system | against | pairs | max abs dp1 (pp) | mean abs dp1 (pp) | verdicts agree |")
    print("|---|---|--:|--:|--:|--:|")
    for name, against, acc in compared:
        if acc.get("pairs_compared"):
            print(f"| {name} | {against} | {acc['pairs_compared']} | {acc['max_abs_delta_p1']:.3g} | "
                  f"{acc['mean_abs_delta_p1']:.3g} | {acc['verdict_agreement']:.0%} |")
    print("\np1 per pair: " + "; ".join(f"{n}: {[round(s.p1, 3) for s in got]}" for n, got in scores.items()),
          flush=True)
    rec.say(f"rows in {rec.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
