"""The backend contract (backends/base.py): both backends derive from `Backend`, the async handle lives with the
contract, and no backend imports a floor above it (runner, api, serve, cli)."""

from __future__ import annotations

import ast
from pathlib import Path

import torch

import judge_core
from judge_core import runner
from judge_core.backends import base
from judge_core.backends.hf import HFBackend
from judge_core.backends.packed import PackedBackend

ABOVE = ("runner", "api", "serve", "cli", "prepare", "chunks", "tournament", "rewards", "ray", "integrations")


def test_both_backends_implement_the_contract():
    for cls in (HFBackend, PackedBackend):
        assert issubclass(cls, base.Backend) and "candidate_logits_async" in cls.__dict__
        assert cls.candidate_logits is base.Backend.candidate_logits  # one sync form: the async one, waited for
    assert runner.PendingLogits is base.PendingLogits and runner.ReadyLogits is base.ReadyLogits
    handle = base.PendingLogits(torch.arange(6, dtype=torch.bfloat16).reshape(2, 3))
    assert handle.result().dtype == torch.float32 and handle.result().tolist() == [[0, 1, 2], [3, 4, 5]]


def test_backends_import_only_downward():
    folder = Path(judge_core.__file__).parent / "backends"
    found = []
    for path in sorted(folder.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level >= 2 and node.module:
                if node.module.split(".")[0] in ABOVE:
                    found.append(f"{path.name}: from {'.' * node.level}{node.module}")
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("judge_core."):
                if node.module.split(".")[1] in ABOVE:
                    found.append(f"{path.name}: from {node.module}")
    print(found or "no upward imports")
    assert found == []
