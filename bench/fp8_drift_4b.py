"""FP8 drift at the real Qwen3.5-4B shape (random weights), without writing the model to disk.

    python -m bench.fp8_drift_4b --device cpu --pairs 3 --response-words 60     # ~8 min on 2 CPU cores
    python -m bench.fp8_drift_4b --device cuda --pairs 64                        # seconds on an H100

Builds the 4B text shape in bf16 (on `--device`), our packed model from it, scores the pairs in bf16,
then swaps the projections to W8A8 FP8 in place (judge_core.fp8.swap, the same swap as
`quantization="fp8"`) and scores them again: fp8 on the CPU is the twin, which rounds exactly as the
GPU's scaled GEMM does, so the drift measured here is fp8's, not the CPU's. Prints one JSON line.
Random weights: the figure says how much fp8 rounding moves a 4B-shaped judge, not how the trained
judge's verdicts move (run `python -m bench --compare-quantization fp8` on the real checkpoint for that).
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import time


def synthetic_pairs(n: int, words: int, seed: int = 0) -> list[tuple[str, str, str]]:
    rng = random.Random(seed)
    vocab = ("the night river carried a lantern past sleeping houses while her brother counted stars and "
             "the old dog dreamed of summer fields under a copper moon").split()
    text = lambda k: " ".join(rng.choice(vocab) for _ in range(k)).capitalize() + "."  # noqa: E731
    return [(f"Write a short story about {rng.choice(vocab)}.", text(words), text(words + rng.randint(-10, 10)))
            for _ in range(n)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.fp8_drift_4b", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--response-words", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    import torch
    from transformers import AutoTokenizer

    from judge_core.api import Judge
    from judge_core.backends.packed import PackedBackend
    from judge_core.embedded import build_model, tokenizer_dir
    from judge_core.fp8.drift import compare_scores
    from judge_core.fp8.swap import quantize_model_fp8_
    from judge_core.prompts import candidate_token_ids

    device = torch.device(args.device)
    t0 = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir()))
    hf = build_model("text", size="4b", seed=args.seed, dtype=torch.bfloat16, device=device)
    backend = PackedBackend.from_hf_model(hf, candidate_ids=candidate_token_ids(tokenizer))
    del hf
    gc.collect()
    built = time.perf_counter() - t0
    judge = Judge(backend, tokenizer, token_budget=32768)
    pairs = synthetic_pairs(args.pairs, args.response_words, args.seed)

    t = time.perf_counter()
    bf16 = judge.compare_many(pairs)
    bf16_s = time.perf_counter() - t
    tokens = judge.last_run_stats["real_tokens"]
    swapped = quantize_model_fp8_(backend.model)
    gc.collect()
    t = time.perf_counter()
    fp8 = judge.compare_many(pairs)
    fp8_s = time.perf_counter() - t
    compute = sorted({getattr(m, "_resolved", (None, None))[1] for m in backend.model.modules()
                      if getattr(m, "_resolved", None)})
    print(json.dumps({"shape": "Qwen3.5-4B text, random weights", "device": str(device), "pairs": len(pairs),
                      "prompt_tokens": tokens, "build_s": round(built, 1), "bf16_s": round(bf16_s, 1),
                      "fp8_s": round(fp8_s, 1), "fp8_layers": len(swapped), "fp8_compute": compute,
                      "bf16_p1": [round(s.p1, 3) for s in bf16], "fp8_p1": [round(s.p1, 3) for s in fp8],
                      "drift_fp8_vs_bf16": compare_scores(bf16, fp8)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
