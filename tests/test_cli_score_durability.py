"""`judge-core score` keeps every finished verdict through a kill, and --resume completes the file exactly."""

import gzip
import json
import os

import pytest

import judge_core.cli.score as score_cli
from length_judge import LengthJudge
from judge_core.api import Judge
from judge_core.cli.main import main

N_PAIRS = 10


@pytest.fixture(scope="module")
def tiny_judge(tiny_text_ckpt):
    # A small budget makes several batches, so pairs finish out of input order.
    return Judge.from_pretrained(tiny_text_ckpt, backend="hf", dtype="fp32", device="cpu", token_budget=700)


@pytest.fixture()
def input_file(tmp_path):
    # Longest last: the planner runs longest first, so the last rows finish first (out of order).
    lines = [json.dumps({"id": f"q{i}", "instruction": "Rate.", "response_1": "word " * (4 * i + 1),
                         "response_2": "other " * (3 * i + 2)}) for i in range(N_PAIRS)]
    lines.insert(3, "{broken")
    lines.insert(6, json.dumps({"id": "q1", "instruction": "Again.", "response_1": "dup", "response_2": "x"}))
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


class Interrupting:
    """Wraps a judge; raises KeyboardInterrupt (as Ctrl-C would) after `after` verdicts were reported."""

    def __init__(self, judge, after=None):
        self.judge, self.after, self.reported, self.judged = judge, after, [], 0

    def judge_stream(self, items, on_result, *, progress=False):
        taken = []

        def counted():
            for item in items:
                self.judged += 1
                taken.append(item)
                yield item

        def hook(i, score):
            on_result(i, score)
            self.reported.append((taken[i], score))
            if len(self.reported) == self.after:
                raise KeyboardInterrupt

        return self.judge.judge_stream(counted(), hook, progress=progress)


def run_score(out, inp, *extra):
    return main(["score", "tiny", str(inp), "-o", str(out), "--no-progress", *extra])


def strict_rows(path):
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        text = f.read()
    assert text == "" or text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def journal_rows(path):
    return [json.loads(line)["row"] for line in open(f"{path}.partial")] if os.path.exists(f"{path}.partial") else []


def reference_run(judge, input_file, out, monkeypatch):
    monkeypatch.setattr(score_cli, "judge_from_args", lambda args: judge)
    assert run_score(out, input_file) == 0
    return strict_rows(out)


@pytest.fixture()
def reference_rows(input_file, tmp_path, monkeypatch):
    return reference_run(LengthJudge("evens_first"), input_file, tmp_path / "reference.jsonl", monkeypatch)


@pytest.mark.parametrize("suffix, judge_kind", [(".jsonl", "tiny"), (".jsonl.gz", "fake"), (".jsonl", "fake")])
def test_kill_keeps_every_verdict_and_resume_completes_in_order(request, input_file, tmp_path, monkeypatch, capsys,
                                                                 suffix, judge_kind):
    judge = request.getfixturevalue("tiny_judge") if judge_kind == "tiny" else LengthJudge("evens_first")
    reference_rows = reference_run(judge, input_file, tmp_path / "reference.jsonl", monkeypatch)
    out = tmp_path / f"out{suffix}"
    killer = Interrupting(judge, after=5 if judge_kind == "tiny" else 8)
    monkeypatch.setattr(score_cli, "judge_from_args", lambda args: killer)
    capsys.readouterr()
    assert run_score(out, input_file) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("interrupted: ") and err[-1].endswith("rerun with --resume"), err[-1]
    assert "Traceback" not in "\n".join(err)

    # every verdict reported before the kill is on disk, in OUT or in the journal
    saved = strict_rows(out) + journal_rows(out)
    for pair, score in killer.reported:
        assert any(r.get("p1") == score.p1 and r.get("id") == pair["id"] for r in saved), pair["id"]
    prefix = strict_rows(out)
    assert [r.get("id") for r in prefix] == [r.get("id") for r in reference_rows[:len(prefix)]]  # in order
    if suffix == ".jsonl":
        assert journal_rows(out), "the interrupted run should have had rows finished out of order"
    if judge_kind == "fake":
        assert prefix, "the fake judge's interrupted run should have written an in-order prefix"

    resumer = Interrupting(judge)
    monkeypatch.setattr(score_cli, "judge_from_args", lambda args: resumer)
    assert run_score(out, input_file, "--resume") == 0
    rows = strict_rows(out)
    assert [r.get("id") for r in rows] == [r.get("id") for r in reference_rows]  # one row per input row, in order
    assert resumer.judged == N_PAIRS + 1 - len(killer.reported)  # finished verdicts were not judged again
    err = max(abs(a["p1"] - b["p1"]) for a, b in zip(rows, reference_rows) if "p1" in b)
    print(f"resumed vs one-go run: max |d p1| = {err:.2e}")
    assert err < 1e-3
    assert [("error" in a) for a in rows] == [("error" in b) for b in reference_rows]
    assert not os.path.exists(f"{out}.partial") and not os.path.exists(f"{out}.lock")


def test_resume_repairs_torn_last_line(input_file, reference_rows, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out.jsonl"
    whole = "".join(json.dumps(r) + "\n" for r in reference_rows[:2])
    fragment = json.dumps(reference_rows[2])[:17]  # a write cut short: no newline, not JSON
    out.write_text(whole + fragment)
    monkeypatch.setattr(score_cli, "judge_from_args", lambda args: LengthJudge("evens_first"))
    assert run_score(out, input_file, "--resume") == 0
    assert f"dropped its last {len(fragment)} bytes" in capsys.readouterr().err
    rows = strict_rows(out)  # every line whole: nothing glued onto the fragment
    assert [r.get("id") for r in rows] == [r.get("id") for r in reference_rows]
    assert rows[:2] == reference_rows[:2]


def test_resume_of_gzip_with_torn_member(input_file, reference_rows, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out.jsonl.gz"
    member = gzip.compress("".join(json.dumps(r) + "\n" for r in reference_rows[:3]).encode())
    torn = gzip.compress("".join(json.dumps(r) + "\n" for r in reference_rows[3:6]).encode())[:-9]
    out.write_bytes(member + torn)
    monkeypatch.setattr(score_cli, "judge_from_args", lambda args: LengthJudge("evens_first"))
    assert run_score(out, input_file, "--resume") == 0
    assert f"dropped its last {len(torn)} bytes" in capsys.readouterr().err
    rows = strict_rows(out)
    assert [r.get("id") for r in rows] == [r.get("id") for r in reference_rows]
    assert rows[:3] == reference_rows[:3]


def test_duplicate_ids_are_distinct_rows_on_resume(input_file, reference_rows, tmp_path, monkeypatch):
    # input rows 2 and 7 both have id "q1"; a previous run finished only the first of them
    out = tmp_path / "out.jsonl"
    first_q1 = next(i for i, r in enumerate(reference_rows) if r.get("id") == "q1")
    out.write_text("".join(json.dumps(r) + "\n" for r in reference_rows[:first_q1 + 1]))
    counter = Interrupting(LengthJudge("evens_first"))
    monkeypatch.setattr(score_cli, "judge_from_args", lambda args: counter)
    assert run_score(out, input_file, "--resume") == 0
    rows = strict_rows(out)
    assert [r.get("id") for r in rows].count("q1") == 2
    assert [r.get("id") for r in rows] == [r.get("id") for r in reference_rows]
    assert rows[-1]["p1"] == pytest.approx(reference_rows[-1]["p1"], abs=1e-3)
    assert counter.judged == N_PAIRS + 1 - 2  # q0 and the first q1 were done


def test_compare_many_reports_each_pair_once_as_its_batch_finishes(tiny_judge, monkeypatch):
    pairs = [("Rate.", "word " * (6 * i + 1), "other " * (5 * i + 1)) for i in range(5)]
    pairs.insert(2, ("Rate.", 3, "x"))  # rejected before any forward
    calls = []
    real = tiny_judge.backend.candidate_logits_async  # what the (overlapping) runner calls
    monkeypatch.setattr(tiny_judge.backend, "candidate_logits_async",
                        lambda seqs: calls.append(len(seqs)) or real(seqs))

    class Bar:
        updates = []

        def update(self, n):
            self.updates.append(n)

        def set_postfix(self, **kwargs):
            pass

    reported = []
    got = tiny_judge.compare_many(pairs, progress=Bar(), on_result=lambda i, s: reported.append((i, s, len(calls))))
    order = [i for i, _, _ in reported]
    print(f"completion order {order}; forward calls at each report {[c for _, _, c in reported]} of {len(calls)}")
    assert sorted(order) == list(range(len(pairs)))  # each pair exactly once
    assert order[0] == 2 and reported[0][1].error and reported[0][2] == 0  # the rejected pair, at once
    assert all(s is got[i] for i, s, _ in reported)
    assert len(calls) > 2 and reported[1][2] < len(calls)  # the first verdicts came before the last batch ran
    assert Bar.updates == [1] * len(pairs)  # the bar counts whole pairs
