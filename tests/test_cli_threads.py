"""--threads on every command that runs a model reaches torch.get_num_threads(); the default never asks for
more threads than free cores (judge_core.threads)."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from judge_core import threads as threads_mod
from judge_core.cli.main import SUBCOMMANDS, build_parser, main


@pytest.fixture(autouse=True)
def keep_torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("command", ["score", "demo", "rank", "serve", "quantize", "warmup"])
def test_every_model_command_takes_threads(command):
    assert command in SUBCOMMANDS
    positional = {"score": ["tiny", "in.jsonl", "-o", "o.jsonl"], "demo": [], "rank": ["tiny", "i.jsonl", "-o", "d"],
                  "serve": ["tiny"], "quantize": ["tiny", "out"], "warmup": ["tiny"]}[command]
    args = build_parser().parse_args([command, *positional, "--threads", "3"])
    assert args.threads == "3"
    assert build_parser().parse_args([command, *positional]).threads == "auto"


def test_score_threads_reach_torch(tmp_path, capsys):
    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps({"id": 1, "instruction": "Rate.", "response_1": "a", "response_2": "b"}) + "\n")
    for n in (1, 2):
        out = tmp_path / f"out{n}.jsonl"
        assert main(["score", "tiny", str(inp), "-o", str(out), "--no-progress", "--device", "cpu",
                     "--threads", str(n)]) == 0
        err = capsys.readouterr().err
        print(f"--threads {n}: torch.get_num_threads() = {torch.get_num_threads()}")
        assert torch.get_num_threads() == n
        assert f"cpu, {n} thread{'s' if n > 1 else ''}," in err  # the judge line says what ran


def test_bad_threads_value_stops_before_the_model_loads(tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    assert main(["score", "tiny", str(tmp_path / "in.jsonl"), "-o", str(out), "--threads", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --threads '0'") and err.count("\n") == 1
    with pytest.raises(ValueError, match="threads must be a positive int"):
        from judge_core.api import Judge

        Judge.from_pretrained("tiny", threads=0)


def test_library_threads_keyword(monkeypatch):
    from judge_core.api import Judge

    judge = Judge.from_pretrained("tiny", device="cpu", backend="hf", threads=1)
    assert torch.get_num_threads() == 1
    assert judge.compare("Rate.", "a", "b").ok
    # None (the library default) leaves torch's setting alone
    torch.set_num_threads(2)
    assert threads_mod.configure_threads(None, "cpu") == 2 == torch.get_num_threads()


def test_auto_never_exceeds_free_cores(monkeypatch):
    assert threads_mod.free_cores(cpus=2, load=4.3) == 1  # the shared 2-core machine of the issue
    assert threads_mod.free_cores(cpus=8, load=2.4) == 6
    assert threads_mod.free_cores(cpus=4, load=0.0) == 4
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads_mod, "free_cores", lambda: 1)
    torch.set_num_threads(2)
    assert threads_mod.configure_threads("auto", "cpu") == 1 == torch.get_num_threads()
    monkeypatch.setattr(threads_mod, "free_cores", lambda: 64)
    assert threads_mod.configure_threads("auto", "cpu") == 1  # auto only ever lowers torch's count
    # an OMP_NUM_THREADS the user set is theirs
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.setattr(threads_mod, "free_cores", lambda: 1)
    torch.set_num_threads(2)
    assert threads_mod.configure_threads("auto", "cpu") == 2
    # a model on a GPU: the CPU setting is not touched
    assert threads_mod.configure_threads(1, "cuda") is None and torch.get_num_threads() == 2


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="needs /proc/stat")
def test_busy_cores_sees_a_spinning_process_now():
    """The sample sees work running now (a spinning child), not the last minute's average."""
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        busy = threads_mod.busy_cores()
    finally:
        child.kill()
        child.wait()
    print(f"busy cores with one spinning child: {busy:.2f} of {os.cpu_count()}")
    assert 0.6 <= busy <= os.cpu_count()
