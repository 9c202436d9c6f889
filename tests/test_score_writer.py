"""OrderedWriter (judge_core/cli/score_writer.py): rows announced as the input is read, finished in any
order, written in input order; keys of written rows forgotten so memory stays flat on huge files."""

from __future__ import annotations

import io
import json
import random

import pytest

from judge_core.cli.score_writer import OrderedWriter, Sink


def test_rows_announced_as_read_are_written_in_input_order_with_flat_memory():
    out, journal = io.BytesIO(), io.BytesIO()
    writer = OrderedWriter(Sink(out, "out", gz=False, owned=False), Sink(journal, "journal", gz=False, owned=False))
    n, window = 3 * OrderedWriter.TRIM_ROWS + 123, 50
    rng = random.Random(0)
    most_known = 0
    for start in range(0, n, window):  # the stream's shape: a window read, its rows finished out of order
        keys = [("line", i) for i in range(start, min(n, start + window))]
        for key in keys:
            writer.expect([key])
        for key in rng.sample(keys, len(keys)):
            writer.put(key, {"row": key[1]})
        most_known = max(most_known, len(writer.position))
    rows = [json.loads(line)["row"] for line in out.getvalue().splitlines()]
    assert rows == list(range(n)) and writer.written == n and writer.scored == n
    assert most_known <= OrderedWriter.TRIM_ROWS + window  # written keys are forgotten as the cursor moves
    assert journal.getvalue()  # rows finished ahead of the cursor were journaled


def test_unknown_and_twice_announced_rows_are_errors():
    writer = OrderedWriter(Sink(io.BytesIO(), "out", gz=False, owned=False))
    writer.expect([("line", 0)])
    with pytest.raises(RuntimeError, match="announced twice"):
        writer.expect([("line", 0)])
    with pytest.raises(RuntimeError, match="not announced"):
        writer.put(("line", 7), {"p1": 1.0})
    writer.put(("line", 0), {"p1": 1.0})
    writer.put(("line", 0), {"p1": 2.0})  # a finished row again: ignored
    assert writer.written == 1 and writer.scored == 1
