"""A fake Hugging Face hub cache built in a test: tiny checkpoints filed under real repo ids.

The layout is huggingface_hub's own (`models--org--name/refs/<ref>` holding a commit hash,
`snapshots/<hash>/<files>`), so resolving a repo id offline goes through huggingface_hub exactly as it
would on a user's machine with the real checkpoint downloaded.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

JUDGE_REPO = "selfhypnosis-ai/Qwen3.5-4B-Creative-Writing-Judge"
GPTQ_REPO = "selfhypnosis-ai/Qwen3.5-4B-Creative-Writing-Judge-GPTQ-4bit"


def add_to_cache(cache: Path, repo_id: str, checkpoint: Path, ref: str = "main") -> Path:
    """Copy `checkpoint` into `cache` as the snapshot `ref` of `repo_id`; returns the snapshot dir."""
    commit = hashlib.sha1(f"{repo_id}@{ref}".encode()).hexdigest()
    repo_dir = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo_dir / "snapshots" / commit
    shutil.copytree(checkpoint, snapshot, dirs_exist_ok=True)
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / ref).write_text(commit)
    return snapshot
