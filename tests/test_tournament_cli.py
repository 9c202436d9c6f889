"""`judge-core rank`: files written, rerun from cache, bad input; and one run with a real tiny judge."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from judge_core.cli import rank as rank_cli
from judge_core.cli.main import main
from judge_core.scoring import combine_passes


class WriterQualityJudge:
    """Prefers the writer whose name sorts first ("a" > "b" > "c"), by one logit per letter."""

    def __init__(self):
        self.pairs_judged = 0

    def compare_many(self, pairs):
        self.pairs_judged += len(pairs)
        scores = []
        for _, r1, r2 in pairs:
            diff = float(ord(r2[0]) - ord(r1[0]))
            scores.append(combine_passes((diff, 0.0), (-diff, 0.0)))
        return scores


def _items(path, writers="abcd", prompts=3, **extra):
    with open(path, "w", encoding="utf-8") as f:
        for p in range(prompts):
            for w in writers:
                f.write(json.dumps({"prompt_id": f"p{p}", "model": w, "response": f"{w} writes {p} " + "." * (p + 3 * (ord(w) - 97)),
                                    "prompt": f"Prompt {p}", **extra}) + "\n")
    return path


def _strict_json(path):
    def refuse(constant):
        raise ValueError(f"{path} holds {constant}")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_rank_cli_writes_every_report_and_reruns_from_cache(tmp_path, monkeypatch, capsys):
    judge = WriterQualityJudge()
    monkeypatch.setattr(rank_cli, "build_judge", lambda args: judge)
    items = _items(tmp_path / "items.jsonl")
    out = tmp_path / "out"
    argv = ["rank", "synthetic-judge", str(items), "-o", str(out), "--rounds", "3", "--bootstrap-samples", "3",
            "--no-progress", "--seed", "5"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert "| 1 | a |" in printed and "±" in printed and "+-" not in printed + captured.err
    # each mode's summary once, whether stdout and stderr go to one terminal or not
    both = printed + captured.err
    assert both.count("omega-squared") == 2 and both.count("Positional bias") == 2, both
    # 3 bootstrap samples (and 3 prompts) behind a "95% interval": said, in the table's own text
    assert "the 95% interval comes from only 3 bootstrap samples per writer (fewer than 20)" in printed
    assert "the 95% interval comes from only 3 prompts" in printed
    assert "compare_many calls" in captured.err and "1 pairs" not in both
    for mode in ("isolated", "bootstrap"):
        board = json.loads((out / f"leaderboard_{mode}.json").read_text())
        assert [row["writer"] for row in board] == ["a", "b", "c", "d"]
        with open(out / f"leaderboard_{mode}.csv", encoding="utf-8") as f:
            assert [row["writer"] for row in csv.DictReader(f)] == ["a", "b", "c", "d"]
        assert "Elo ± spread" in (out / f"leaderboard_{mode}.md").read_text()
        assert (out / f"leaderboard_{mode}.png").read_bytes()[:4] == b"\x89PNG"
    stats = _strict_json(out / "stats.json")
    assert stats["isolated"]["rounds"] == 3 and stats["bootstrap"]["tournaments"] == 3
    assert stats["isolated"]["cliffs_delta_pairs"] == 6 and stats["isolated"]["length_bias"]["unit"] == "characters"
    # the judge prefers "a", whose texts are the shortest: the longer text never wins
    assert stats["isolated"]["length_bias"]["longer_win_rate"] == 0.0
    assert stats["isolated"]["positional_bias"]["position1_win_share"] == pytest.approx(0.5)
    judged_first = judge.pairs_judged
    assert judged_first > 0

    assert main(argv) == 0  # same directory: everything comes from judgements.jsonl
    assert judge.pairs_judged == judged_first
    assert json.loads((out / "leaderboard_bootstrap.json").read_text())[0]["writer"] == "a"

    monkeypatch.setattr(rank_cli, "judge_label", lambda args: "some other judge")
    assert main(argv) == 2
    assert "holds judgements by judge" in capsys.readouterr().err


def test_rank_cli_bad_input_messages(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(rank_cli, "build_judge", lambda args: WriterQualityJudge())
    single = _items(tmp_path / "single.jsonl", writers="a")
    assert main(["rank", "x", str(single), "-o", str(tmp_path / "o1"), "--no-progress"]) == 2
    assert "at least 2 writer models" in capsys.readouterr().err
    assert main(["rank", "x", str(tmp_path / "nope.jsonl"), "-o", str(tmp_path / "o2"), "--no-progress"]) == 2
    assert "not found" in capsys.readouterr().err
    items = _items(tmp_path / "items.jsonl", writers="abc", colour="red")
    assert main(["rank", "x", str(items), "-o", str(tmp_path / "o3"), "--rounds", "0", "--no-progress"]) == 2
    assert "isolated_rounds must be >= 1" in capsys.readouterr().err
    assert main(["rank", "x", str(items), "-o", str(tmp_path / "o4"), "--mode", "isolated", "--rounds", "2",
                 "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "ignored unknown field(s): colour" in err
    assert not (tmp_path / "o4" / "leaderboard_bootstrap.json").exists()


def test_rank_cli_with_a_real_tiny_judge(tmp_path, tiny_text_ckpt, capsys):
    pytest.importorskip("judge_core.api")
    model = tmp_path / "model"  # a checkpoint dir of this test's own, removed before the rerun below
    model.mkdir()
    for f in tiny_text_ckpt.iterdir():
        (model / f.name).symlink_to(f)
    items = _items(tmp_path / "items.jsonl", writers="abc", prompts=2)
    out = tmp_path / "out"
    argv = ["rank", str(model), str(items), "-o", str(out), "--rounds", "2", "--bootstrap-samples", "2",
            "--no-progress", "--device", "cpu"]
    assert main(argv) == 0
    first = capsys.readouterr()
    assert "judge: " in first.err  # the model loaded (the line judge_from_args prints)
    stats = _strict_json(out / "stats.json")
    for mode in ("isolated", "bootstrap"):
        s = stats[mode]
        print(f"tiny judge {mode}: games {s['games']}, failed {s['error_games']}, "
              f"position-1 share {s['positional_bias']['position1_win_share']}")
        assert s["error_games"] == 0 and s["games"] > 0
        assert len(stats[mode]["leaderboard"]) == 3
    cached = len((out / "judgements.jsonl").read_text().splitlines()) - 1
    assert cached == stats["cache"]["entries"] > 0

    # the rerun finds every judgement in the cache: it must not load the model, which is gone now
    shutil.rmtree(model)
    capsys.readouterr()  # this test's own prints above
    assert main(argv) == 0
    second = capsys.readouterr()
    print(second.err)
    assert "judge: " not in second.err and "the model was not loaded" in second.err
    assert "judgements: 0 judged" in second.err
    assert second.out == first.out  # the same leaderboards
