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


INSTRUCTION_WIDTH = 40  # characters of the instruction shown per row


def add_arguments(parser) -> None:
    from .model_arg import add_threads_argument

    parser.add_argument("--backend", default="auto", help="auto | hf | packed")
    parser.add_argument("--no-reference", action="store_true", help="skip the check against the reference twin")
    add_threads_argument(parser)


def shorten(text: str, width: int = INSTRUCTION_WIDTH) -> str:
    """`text` on one line, cut to `width` characters with an ellipsis where it was cut."""
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 1].rstrip() + "…"


def run(args) -> int:
    import time

    import torch

    from ..api import Judge
    from ..embedded import EMBEDDED
    from ..reference import ReferenceJudge
    from ..threads import parse_threads
    from ..wording import plural
    from .model_arg import threads_problem, usage_error

    if threads_problem(args):
        raise usage_error(threads_problem(args))
    rows = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines() if line.strip()]
    judge = Judge.from_pretrained(EMBEDDED, backend=args.backend, threads=parse_threads(args.threads))
    t0 = time.perf_counter()
    scores = judge.compare_many(rows, progress=True)
    seconds = time.perf_counter() - t0
    stats = judge.last_run_stats
    device = torch.device(judge.backend.device)
    threads = f", {plural(torch.get_num_threads(), 'thread')}" if device.type == "cpu" else ""
    print(f"\njudge: {judge.path} (backend {judge.backend.name}, {str(judge.backend.dtype).removeprefix('torch.')}, "
          f"{device}{threads})")
    print(f"{'id':<10} {'p1':>7} {'p2':>7} {'pass1 P(A)':>11} {'pass2 P(A)':>11}  instruction")
    for row, s in zip(rows, scores):
        print(f"{row['id']:<10} {s.p1:7.3f} {s.p2:7.3f} {s.pass1[0]:11.3f} {s.pass2[0]:11.3f}  {shorten(row['instruction'])}")
    print(f"{plural(stats['prompts'], 'prompt')}, {plural(stats['real_tokens'], 'token')} in "
          f"{plural(stats['batches'], 'batch')}, {seconds:.2f} s ({stats['real_tokens'] / seconds:,.0f} tokens/s)")
    if not args.no_reference:
        ref = ReferenceJudge.from_pretrained(judge.path).compare_many(rows)
        worst = max(abs(a.p1 - b.p1) for a, b in zip(scores, ref))
        print(f"reference twin: max |delta p1| = {worst:.2e} percentage points")
        if worst > 1e-3:
            print("error: the engine disagrees with the reference twin", file=sys.stderr)
            return 1
    return 0
