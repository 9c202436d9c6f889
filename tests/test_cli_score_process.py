"""`judge-core score` as real processes: one writer per OUTPUT (flock), Ctrl-C, a stale lock after kill -9."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from judge_core.cli.main import main

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and flock")

ROOT = Path(__file__).resolve().parents[1]
N_ROWS = 40

# A `score` process whose judge takes `delay` seconds per pair (so that it is still running when poked).
SLOW_SCORE = r"""
import sys, time
import judge_core.cli.score as score_cli
from judge_core.cli.main import main
from judge_core.scoring import combine_passes

class SlowJudge:
    def judge_stream(self, items, on_result, *, progress=False):
        for i, _ in enumerate(items):
            time.sleep(float(sys.argv[1]))
            on_result(i, combine_passes((1.0, 0.0), (0.0, 1.0)))

score_cli.judge_from_args = lambda args: SlowJudge()
sys.exit(main(sys.argv[2:]))
"""


@pytest.fixture()
def input_file(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"id": i, "instruction": "Rate.", "response_1": "a", "response_2": "b"}) + "\n"
                            for i in range(N_ROWS)))
    return path


def start_slow(inp, out, delay, *extra):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-c", SLOW_SCORE, str(delay), "score", "tiny", str(inp), "-o", str(out), "--no-progress",
            *extra]
    # SIGINT back to its default in the child: a test run started in the background (`pytest &`, nohup in
    # a script) inherits SIGINT ignored, Python then installs no KeyboardInterrupt handler, and the Ctrl-C
    # test's SIGINT would be dropped (seen: the first run finished all 40 rows with exit 0).
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_for_rows(proc, out, n, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if out.exists() and out.read_text().count("\n") >= n:
            return
        if proc.poll() is not None:
            raise AssertionError(f"score ended early ({proc.returncode}): {proc.stderr.read()}")
        time.sleep(0.1)
    raise AssertionError(f"no {n} rows in {out} after {timeout} s")


def lines_of(out):
    text = out.read_text()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_second_run_is_refused_and_ctrl_c_ends_cleanly(input_file, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    first = start_slow(input_file, out, 0.3)
    try:
        wait_for_rows(first, out, 2)
        # a second run on the same OUTPUT, with or without --resume, is refused and names the first one's PID
        for flags in (["--resume"], []):
            assert main(["score", "tiny", str(input_file), "-o", str(out), "--no-progress", *flags]) == 2
            err = capsys.readouterr().err
            assert str(out) in err and f"pid {first.pid}" in err and err.count("\n") == 1, err
        first.send_signal(signal.SIGINT)
        _, stderr = first.communicate(timeout=60)
    finally:
        first.kill()
    assert first.returncode == 130, stderr
    last = stderr.strip().splitlines()[-1]
    rows = lines_of(out)
    assert last == f"interrupted: {len(rows)} rows written, rerun with --resume", stderr
    assert "Traceback" not in stderr
    assert [r["id"] for r in rows] == list(range(len(rows)))
    assert not os.path.exists(f"{out}.lock")


def test_lock_of_a_killed_run_does_not_block(input_file, tmp_path):
    out = tmp_path / "out.jsonl"
    first = start_slow(input_file, out, 0.3)
    try:
        wait_for_rows(first, out, 2)
    finally:
        first.kill()  # SIGKILL: no cleanup, OUT.lock stays behind with a dead PID
        first.communicate(timeout=60)
    assert os.path.exists(f"{out}.lock")
    done = len(lines_of(out))
    resumer = start_slow(input_file, out, 0.0, "--resume")
    _, stderr = resumer.communicate(timeout=120)
    assert resumer.returncode == 0, stderr
    assert f"resuming: {done} rows already in" in stderr
    assert [r["id"] for r in lines_of(out)] == list(range(N_ROWS))
