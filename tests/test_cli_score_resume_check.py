"""`judge-core score --resume` checks OUT against INPUT (ids, order, parse) and refuses, naming the line,
when they do not match; the good case completes OUT with one row per input row, in input order, and the
summary counts what this run did apart from what was already there. Real runs of the embedded `tiny`."""

import gzip
import io
import json
import os
import sys

import pytest

from judge_core.cli.main import main

N_ROWS = 32


def pair(ident, i):
    return {"id": ident, "instruction": f"Rate {i}.", "response_1": "word " * (i % 7 + 1),
            "response_2": "other " * (i % 5 + 2)}


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def rows_of(path):
    text = path.read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def score(inp, out, *extra):
    return main(["score", "tiny", str(inp), "-o", str(out), "--no-progress", "--device", "cpu", *extra])


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("resume-check")


@pytest.fixture(scope="module")
def input_file(workdir):
    return write_jsonl(workdir / "in.jsonl", [pair(f"q{i}", i) for i in range(N_ROWS)])


@pytest.fixture(scope="module")
def reference(workdir, input_file):
    out = workdir / "reference.jsonl"
    assert score(input_file, out) == 0
    rows = rows_of(out)
    assert [r["id"] for r in rows] == [f"q{i}" for i in range(N_ROWS)]
    return rows


def lines(rows):
    return "".join(json.dumps(r) + "\n" for r in rows)


def assert_refused(capsys, out, before: bytes, *named):
    err = capsys.readouterr().err
    print(err)
    assert err.startswith("error: --resume: ") and err.count("\n") == 1, err  # one line, before the model loaded
    assert "judge:" not in err
    for text in named:
        assert text in err, text
    assert out.read_bytes() == before  # nothing changed
    assert not os.path.exists(f"{out}.lock")


def test_garbage_line_in_the_middle_is_refused_naming_it(input_file, reference, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    text = lines(reference[:9]) + "garbage\n" + lines(reference[10:20])
    out.write_text(text)
    assert score(input_file, out, "--resume") == 2
    assert_refused(capsys, out, text.encode(), f"{out} line 10 is not a verdict row", "invalid JSON", "--overwrite")

    # a JSON line that is no verdict row, in the middle or last
    for bad in ('{"id": "q9", "note": "hand-edited"}\n', '[1, 2]\n'):
        text = lines(reference[:9]) + bad + lines(reference[10:12])
        out.write_text(text)
        assert score(input_file, out, "--resume") == 2
        assert_refused(capsys, out, text.encode(), f"{out} line 10 is not a verdict row")


def test_out_of_another_input_is_refused(input_file, reference, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    out.write_text(lines(reference))
    before = out.read_bytes()
    other = write_jsonl(tmp_path / "other.jsonl", [pair(f"other{i}", i) for i in range(6)])
    assert score(other, out, "--resume") == 2
    assert_refused(capsys, out, before, f"{out} line 1 answers id 'q0', but input row 1 (line 1 of {other}) has id "
                                        "'other0'")

    # the same ids, fewer rows: OUT holds rows no input row asks for (the 38 rows for 6)
    prefix = write_jsonl(tmp_path / "prefix.jsonl", [pair(f"q{i}", i) for i in range(6)])
    assert score(prefix, out, "--resume") == 2
    assert_refused(capsys, out, before, f"{out} has {N_ROWS} rows, but {prefix} has only 6")

    # the same ids in another order
    swapped = [pair(f"q{i}", i) for i in range(N_ROWS)]
    swapped[3], swapped[4] = swapped[4], swapped[3]
    moved = write_jsonl(tmp_path / "moved.jsonl", swapped)
    assert score(moved, out, "--resume") == 2
    assert_refused(capsys, out, before, f"{out} line 4 answers id 'q3', but input row 4 (line 4 of {moved}) has id "
                                        "'q4'")


def test_journal_of_another_input_is_refused(input_file, reference, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    out.write_text(lines(reference[:5]))
    journal = tmp_path / "out.jsonl.partial"
    journal.write_text(json.dumps({"key": ["id", "zzz", 1], "row": {"id": "zzz", "p1": 50.0, "p2": 50.0}}) + "\n")
    assert score(input_file, out, "--resume") == 2
    assert_refused(capsys, out, lines(reference[:5]).encode(), f"{journal} holds a finished row for id 'zzz'")
    assert journal.exists()


def test_damaged_gzip_is_refused(input_file, reference, tmp_path, capsys):
    out = tmp_path / "out.jsonl.gz"
    first, second = gzip.compress(lines(reference[:4]).encode()), gzip.compress(lines(reference[4:8]).encode())
    damaged = first[:30] + bytes(b ^ 0xFF for b in first[30:40]) + first[40:] + second
    out.write_bytes(damaged)
    assert score(input_file, out, "--resume") == 2
    assert_refused(capsys, out, damaged, "damaged gzip data")


def test_good_resume_completes_in_order_and_counts_what_was_there(input_file, reference, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    # a killed run: 20 rows in OUT, a torn 21st, rows 23 and 25 finished early and kept in the journal
    out.write_text(lines(reference[:20]) + json.dumps(reference[20])[:25])
    journal = tmp_path / "out.jsonl.partial"
    journal.write_text("".join(json.dumps({"key": ["id", r["id"], 1], "row": r}) + "\n"
                               for r in (reference[22], reference[24], reference[3])))  # row 4 is in OUT already
    assert score(input_file, out, "--resume") == 0
    err = capsys.readouterr().err
    print(err)
    rows = rows_of(out)
    assert [r["id"] for r in rows] == [f"q{i}" for i in range(N_ROWS)]  # exactly one row per input row, in order
    assert rows[:20] == reference[:20] and rows[22] == reference[22] and rows[24] == reference[24]
    worst = max(abs(a["p1"] - b["p1"]) for a, b in zip(rows, reference))
    print(f"resumed vs one-go run: max |d p1| = {worst:.2e} pp")
    assert worst < 1e-3
    # this run judged 10 rows (21, 22, 24, 26..32); 22 were there: 20 in OUT, 2 from the journal
    assert "resuming: 20 rows already in" in err and "2 finished rows in" in err
    assert (f"done: 10 scored, 0 failed (0 malformed lines) in this run; 22 rows were already there "
            f"(20 in {out}, 2 restored from {out}.partial) -> {out}") in err
    assert not journal.exists() and not os.path.exists(f"{out}.lock")

    # nothing left: a second resume judges nothing and says so
    assert score(input_file, out, "--resume") == 0
    assert rows_of(out) == rows
    assert f"done: 0 scored, 0 failed (0 malformed lines) in this run; {N_ROWS} rows were already there" in \
        capsys.readouterr().err


def test_stdin_that_does_not_continue_out_is_refused_before_writing(input_file, reference, tmp_path, monkeypatch,
                                                                    capsys):
    out = tmp_path / "out.jsonl"
    out.write_text(lines(reference[:10]))
    other = "".join(json.dumps(pair(f"other{i}", i)) + "\n" for i in range(12))
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(other.encode())))
    assert score("-", out, "--resume") == 2
    err = capsys.readouterr().err
    print(err)
    assert f"error: --resume: {out} line 1 answers id 'q0', but input row 1 (line 1 of stdin) has id 'other0'" in err
    assert out.read_text() == lines(reference[:10])
