"""MODEL -> checkpoint directory: the one place that knows the name `tiny`.

    resolve_model("tiny")                                   # the embedded tiny random judge, built once
    resolve_model("/models/judge")                          # a local checkpoint directory
    resolve_model("org/name", revision="v1")                # a hub repo id, through the Hugging Face cache

Used by Judge.from_pretrained, the reference twin, every command of the CLI, the quantizers and the
bench, so that a name means the same thing everywhere. `tiny` is reserved: a local directory of that
name is `./tiny`.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..checkpoint import CheckpointError, resolve
from .checkpoint import EMBEDDED_NAME, default_checkpoint

EMBEDDED = "tiny"


def is_embedded(name) -> bool:
    return isinstance(name, str) and name == EMBEDDED


def resolve_model(name: str | os.PathLike, revision: str | None = None, token: str | bool | None = None,
                  cache_dir: str | os.PathLike | None = None) -> Path:
    """A checkpoint directory for `tiny`, a local directory or a hub repo id (judge_core.checkpoint.resolve).

    A revision with `tiny` is an error: the embedded judge is built on this machine and has none."""
    if is_embedded(name):
        if revision is not None:
            raise CheckpointError(f"revision {revision!r} was given for {EMBEDDED!r}, the embedded judge built on "
                                  f"this machine, which has no revisions: drop --revision (revision=), or name a "
                                  f"hub repo id")
        return default_checkpoint()
    return resolve(name, revision=revision, token=token, cache_dir=cache_dir)


def model_label(name: str | os.PathLike, revision: str | None = None) -> str:
    """The model as the user named it (plus revision), for caches tied to a judge: not where it lives, so
    moving JUDGE_CORE_CACHE or the hub cache does not invalidate them; `tiny` names its build."""
    if is_embedded(name):
        return f"{EMBEDDED}:{EMBEDDED_NAME}"
    return os.fspath(name) + (f"@{revision}" if revision else "")
