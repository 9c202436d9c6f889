"""`judge-core rank --spec`: pairwise specs play, pointwise ones are refused before loading, and the judgement
cache keys on the spec (never read under another; the default spec keeps the keys caches always had)."""

from __future__ import annotations

import json

import pytest

from judge_core.cli import rank as rank_cli
from judge_core.cli.main import main
from judge_core.specs import BUILTIN, load_spec
from judge_core.tournament import JudgementCache, RankSettings, build_item_set, pair_key, rank, spec_key
from judge_core.tournament.cache import CacheMismatchError

from test_tournament_cli import WriterQualityJudge, _items

ARGS = ["--mode", "isolated", "--rounds", "2", "--no-progress"]


def _no_model(args):
    raise AssertionError("the model must not load")


def _cache_lines(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("spec, needle", [
    ("pointwise-rubric", "rank plays pairwise games and this spec is pointwise"),
    ("yes-no-criterion", "score its items with `judge-core score --spec`"),
])
def test_pointwise_spec_is_refused_before_loading(tmp_path, monkeypatch, capsys, spec, needle):
    monkeypatch.setattr(rank_cli, "build_judge", _no_model)
    items = _items(tmp_path / "items.jsonl", writers="ab", prompts=1)
    assert main(["rank", "/nonexistent/model", str(items), "-o", str(tmp_path / "out"), "--spec", spec, *ARGS]) == 2
    err = capsys.readouterr().err
    print(err)
    assert needle in err and not (tmp_path / "out").exists()


def test_pairwise_spec_needing_a_criterion_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(rank_cli, "build_judge", _no_model)
    spec = {**BUILTIN["creative-writing"], "name": "criterion-pairs",
            "messages": [{"role": "user", "content": "{instruction}\nA: {response_a}\nB: {response_b}\n{criterion}"}]}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    items = _items(tmp_path / "items.jsonl", writers="ab", prompts=1)
    assert main(["rank", "x", str(items), "-o", str(tmp_path / "out"), "--spec", str(path), *ARGS]) == 2
    err = capsys.readouterr().err
    assert "{criterion}" in err and "rank items hold only" in err


def test_cache_keys_on_the_spec(tmp_path, monkeypatch, capsys):
    judge = WriterQualityJudge()
    monkeypatch.setattr(rank_cli, "build_judge", lambda args: judge)
    items = _items(tmp_path / "items.jsonl", writers="abc", prompts=2)
    default_out, spec_out = tmp_path / "default", tmp_path / "ref"
    assert main(["rank", "m", str(items), "-o", str(default_out), *ARGS]) == 0
    # The default spec: today's header and keys (sha256 of the three texts), so existing caches stay valid.
    header, *records = _cache_lines(default_out / "judgements.jsonl")
    assert "spec_hash" not in header and header["judge"] == "m|ascii_json=True|no_thinking=False"
    game = json.loads((default_out / "games_isolated.jsonl").read_text().splitlines()[0])
    judged = judge.pairs_judged
    assert game["key"] in {r["key"] for r in records}
    # the same spec named explicitly, or a copy of it under another name: the same numbers, the same cache
    copy = tmp_path / "copy.json"
    copy.write_text(json.dumps({**BUILTIN["creative-writing"], "name": "my-copy"}))
    for spec in ("creative-writing", str(copy)):
        assert main(["rank", "m", str(items), "-o", str(default_out), "--spec", spec, *ARGS]) == 0
    assert judge.pairs_judged == judged

    # Another spec: refused on the default's cache file, naming both ...
    ref = load_spec("reference-pairwise")
    assert main(["rank", "m", str(items), "-o", str(default_out), "--spec", "reference-pairwise", *ARGS]) == 2
    err = capsys.readouterr().err
    print(err.strip().splitlines()[-1])
    assert "made under the default spec" in err and ref.hash in err
    # ... and in its own directory it judges every pair anew, under keys of its own.
    assert main(["rank", "m", str(items), "-o", str(spec_out), "--spec", "reference-pairwise", *ARGS]) == 0
    assert judge.pairs_judged == 2 * judged
    header, *records = _cache_lines(spec_out / "judgements.jsonl")
    assert header["spec_hash"] == ref.hash and header["judge"].endswith(f"|spec=reference-pairwise@{ref.hash}")
    default_keys = {r["key"] for r in _cache_lines(default_out / "judgements.jsonl")[1:]}
    assert default_keys.isdisjoint(r["key"] for r in records) and len(records) == len(default_keys)
    assert main(["rank", "m", str(items), "-o", str(spec_out), "--spec", "reference-pairwise", *ARGS]) == 0
    assert judge.pairs_judged == 2 * judged  # its own cache answers its rerun
    # the default on the spec's cache: refused too
    assert main(["rank", "m", str(items), "-o", str(spec_out), *ARGS]) == 2
    assert f"made under the spec with hash {ref.hash}" in capsys.readouterr().err


def test_library_cache_never_mixes_specs(tmp_path):
    ref = load_spec("reference-pairwise")
    assert spec_key(None) is None and spec_key(load_spec()) is None and spec_key(ref) == ref.hash
    pair = ("Write.", "a text", "b text")
    assert pair_key(*pair) == JudgementCache().key(pair) != JudgementCache(spec_hash=ref.hash).key(pair)
    path = tmp_path / "judgements.jsonl"
    JudgementCache(path).judge(WriterQualityJudge(), [pair])
    with pytest.raises(CacheMismatchError, match="made under the default spec"):
        JudgementCache(path, spec_hash=ref.hash)

    class SpecJudge(WriterQualityJudge):
        spec = ref

    items = build_item_set(enumerate([{"prompt_id": "p", "model": w, "response": f"{w} text",
                                       "instruction": "Write."} for w in "ab"], start=1))
    settings = RankSettings(isolated_rounds=1, progress=False)
    with pytest.raises(ValueError, match="keyed on spec hash None"):
        rank(SpecJudge(), items, settings, modes=("isolated",), cache=JudgementCache())
    result = rank(SpecJudge(), items, settings, modes=("isolated",))  # its own cache: keyed on its spec
    assert result.cache["spec_hash"] == ref.hash
    game = result.modes["isolated"].games[0]
    assert game["key"] == pair_key("Write.", f"{game['writer_1']} text", f"{game['writer_2']} text",
                                   spec_hash=ref.hash)


def test_rank_with_a_pairwise_spec_and_a_real_tiny_judge(tmp_path, tiny_text_ckpt, capsys):
    from judge_core.api import Judge

    items = _items(tmp_path / "items.jsonl", writers="ab", prompts=1)
    out = tmp_path / "out"
    assert main(["rank", str(tiny_text_ckpt), str(items), "-o", str(out), "--spec", "reference-pairwise",
                 "--device", "cpu", *ARGS]) == 0
    game = json.loads((out / "games_isolated.jsonl").read_text().splitlines()[0])
    rows = {json.loads(line)["model"]: json.loads(line) for line in items.read_text().splitlines()}
    r1, r2 = rows[game["writer_1"]]["response"], rows[game["writer_2"]]["response"]
    judge = Judge.from_pretrained(tiny_text_ckpt, device="cpu", spec="reference-pairwise")
    want = judge.compare_many([{"instruction": "Prompt 0", "response": r1, "reference": r2}])[0]
    print(f"rank --spec reference-pairwise game vs compare_many: |d| = {abs(game['p1'] - want.p1):.2e} pp")
    assert abs(game["p1"] - want.p1) < 1e-9
    assert game["key"] == pair_key("Prompt 0", r1, r2, spec_hash=judge.spec.hash)


def test_ray_paths_carry_the_spec_or_refuse_it(tmp_path):
    """--replicas must never drop --spec silently: rank's replicas get the spec itself; score's Ray path
    (which writes the card's pair rows) refuses a spec other than the default."""
    pytest.importorskip("ray")
    from judge_core.cli.main import build_parser
    from judge_core.cli.score_ray import judge_options, ray_option_problem

    src = tmp_path / "items.jsonl"
    src.write_text("")
    score = build_parser().parse_args(["score", "tiny", str(src), "-o", str(tmp_path / "o.jsonl"), "--replicas", "1",
                                       "--spec", "yes-no-criterion"])
    assert "`score` on Ray judges with the default spec only" in ray_option_problem(score)
    ranked = build_parser().parse_args(["rank", "tiny", str(src), "-o", str(tmp_path / "o"), "--replicas", "1",
                                        "--spec", "reference-pairwise"])
    ranked.spec = rank_cli.pairwise_spec(ranked)
    assert ray_option_problem(ranked) is None
    assert load_spec(judge_options(ranked)["spec"]) == load_spec("reference-pairwise")
