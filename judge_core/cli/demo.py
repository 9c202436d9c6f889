"""`judge-core demo`: the main job on the embedded default, with no download.

Builds (once, cached) a tiny random Qwen3.5 judge with the real Qwen3.5 tokenizer, scores the bundled
sample pairs with the engine, checks them against the reference twin, and prints the verdicts.
The weights are random, so the verdicts are meaningless; the path they take is the real one.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HELP = "score bundled sample pairs with the embedded tiny judge (no download)"
SAMPLE = Path(__file__).resolve().parent.parent / "embedded" / "sample_pairs.jsonl"


def add_arguments(parser) -> None:
    parser.add_argument("--backend", default="auto", help="auto | hf | packed")
    parser.add_argument("--no-reference", action="store_true", help="skip the check against the reference twin")


def run(args) -> int:
    import time

    from ..api import Judge
    from ..embedded import default_checkpoint
    from ..reference import ReferenceJudge

    path = default_checkpoint()
    rows = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines() if line.strip()]
    judge = Judge.from_pretrained(path, backend=args.backend)
    t0 = time.perf_counter()
    scores = judge.compare_many(rows, progress=True)
    seconds = time.perf_counter() - t0
    stats = judge.last_run_stats
    print(f"\njudge: {path} (backend {judge.backend.name}, {judge.backend.dtype}, {judge.backend.device})")
    print(f"{'id':<10} {'p1':>7} {'p2':>7} {'pass1 P(A)':>11} {'pass2 P(A)':>11}  instruction")
    for row, s in zip(rows, scores):
        print(f"{row['id']:<10} {s.p1:7.3f} {s.p2:7.3f} {s.pass1[0]:11.3f} {s.pass2[0]:11.3f}  {row['instruction'][:40]}")
    print(f"{stats['prompts']} prompts, {stats['real_tokens']} tokens in {stats['batches']} batches, "
          f"{seconds:.2f} s ({stats['real_tokens'] / seconds:,.0f} tokens/s)")
    if not args.no_reference:
        ref = ReferenceJudge.from_pretrained(path).compare_many(rows)
        worst = max(abs(a.p1 - b.p1) for a, b in zip(scores, ref))
        print(f"reference twin: max |delta p1| = {worst:.2e} percentage points")
        if worst > 1e-3:
            print("error: the engine disagrees with the reference twin", file=sys.stderr)
            return 1
    return 0
