"""Adapters import without their frameworks (or torch, or the server's packages) in the process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_adapters_import_without_frameworks():
    code = ("import sys\n"
            "import judge_core.integrations.trl, judge_core.integrations.verl\n"
            "import judge_core.integrations.openrlhf, judge_core.integrations.slime\n"
            "heavy = ['trl', 'verl', 'openrlhf', 'slime', 'torch', 'transformers', 'fastapi', 'uvicorn']\n"
            "print(sorted(m for m in heavy if m in sys.modules))\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    print(f"modules loaded by importing the four adapters: {out.stdout.strip()}")
    assert out.stdout.strip() == "[]"
