"""A replica's fatal device errors (judge_core/ray/faults.py): told from OOM, and the process exits. No Ray needed."""

import subprocess
import sys
from pathlib import Path

import torch

from judge_core.ray.faults import EXIT_FATAL_DEVICE, is_fatal_device_error

ROOT = Path(__file__).resolve().parents[1]


def test_fatal_device_errors_are_told_from_out_of_memory():
    assert is_fatal_device_error(RuntimeError("CUDA error: an illegal memory access was encountered"))
    assert is_fatal_device_error(RuntimeError("CUDA error: device-side assert triggered"))
    assert not is_fatal_device_error(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert not is_fatal_device_error(ValueError("instruction must be a string"))
    assert not is_fatal_device_error(RuntimeError("shape mismatch"))


def test_a_fatal_device_error_ends_the_process_with_its_own_status():
    code = ("from judge_core.ray.faults import exit_for_restart\n"
            "try:\n    exit_for_restart(RuntimeError('CUDA error: an illegal memory access was encountered'))\n"
            "finally:\n    print('cleanup ran')\n")  # os._exit: no finally, no atexit, nothing touches the device
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == EXIT_FATAL_DEVICE
    assert "fatal device error, exiting so that Ray restarts this replica" in done.stderr
    assert "cleanup ran" not in done.stdout
