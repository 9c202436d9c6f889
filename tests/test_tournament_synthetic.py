"""Tournaments driven by synthetic judges whose truth we know: writer qualities, noise, biases."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from judge_core.scoring import PairScore, combine_passes
from judge_core.tournament import JudgementCache, RankSettings, build_item_set, rank, spearman


class SyntheticJudge:
    """Verdicts from known response qualities; deterministic per exact pair (like a real judge).

    Logit of "A" minus logit of "B" in a pass = quality(A) - quality(B)
    + length_bias * (chars(A) - chars(B)) / 100 + position_bias + N(0, noise) (per pass, seeded by the pair).
    """

    def __init__(self, quality: dict[str, float], noise: float = 0.0, position_bias: float = 0.0,
                 length_bias: float = 0.0, fail_every: int = 0):
        self.quality, self.noise, self.position_bias = quality, noise, position_bias
        self.length_bias, self.fail_every = length_bias, fail_every
        self.calls = self.pairs_judged = 0

    def compare_many(self, pairs):
        self.calls += 1
        self.pairs_judged += len(pairs)
        out = []
        for instruction, r1, r2 in pairs:
            digest = hashlib.sha256(json.dumps([instruction, r1, r2]).encode()).digest()
            if self.fail_every and digest[0] % self.fail_every == 0:
                out.append(PairScore.failed("synthetic failure"))
                continue
            e1, e2 = np.random.default_rng(int.from_bytes(digest[:8], "little")).normal(0.0, self.noise, 2)
            diff = self.quality[r1] - self.quality[r2] + self.length_bias * (len(r1) - len(r2)) / 100.0
            out.append(combine_passes((diff + self.position_bias + e1, 0.0), (-diff + self.position_bias + e2, 0.0)))
        return out


def make_items(n_writers: int = 10, n_prompts: int = 12, iterations: int = 1, seed: int = 0):
    """Writers W0 (best) .. W{n-1} (worst), qualities evenly spaced in [-1.5, 1.5]; each response's
    quality jitters by N(0, 0.3) and its length (50..400 chars) is independent of quality."""
    rng = np.random.default_rng(seed)
    truth = {f"W{i}": 1.5 - 3.0 * i / (n_writers - 1) for i in range(n_writers)}
    records, quality = [], {}
    for p in range(n_prompts):
        for writer, q in truth.items():
            for it in range(iterations):
                text = f"{writer} p{p} i{it} " + "x" * int(rng.integers(50, 400))
                quality[text] = q + float(rng.normal(0.0, 0.3))
                records.append((len(records) + 1, {"prompt_id": f"P{p}", "model": writer, "response": text,
                                                   "prompt": f"Write story {p}.", "iteration": it + 1}))
    return truth, quality, build_item_set(records)


SETTINGS = RankSettings(progress=False)  # the card's defaults: 5 rounds isolated; 10 x 20 rounds bootstrap


@pytest.fixture(scope="module")
def world():
    return make_items()


def _summary(result, truth):
    out = {}
    for mode, r in result.modes.items():
        rho = spearman([truth[row["writer"]] for row in r.leaderboard], [row["elo_mean"] for row in r.leaderboard])
        out[mode] = {"rho": rho, "w2": r.stats["omega_squared"], "d": r.stats["mean_abs_cliffs_delta"],
                     "combined": r.stats["combined"], "pos": r.stats["positional_bias"]["position1_win_share"],
                     "len": r.stats["length_bias"]["longer_win_rate"],
                     "len_margin": r.stats["length_bias"]["mean_margin_longer"]}
    return out


def test_ranking_recovers_true_order_and_noise_lowers_separability(world):
    truth, quality, items = world
    clean = _summary(rank(SyntheticJudge(quality, noise=0.3), items, SETTINGS), truth)
    noisy = _summary(rank(SyntheticJudge(quality, noise=3.0), items, SETTINGS), truth)
    for mode in ("isolated", "bootstrap"):
        c, n = clean[mode], noisy[mode]
        print(f"{mode}: clean rho {c['rho']:.3f} w2 {c['w2']:.3f} d {c['d']:.3f} combined {c['combined']:.1f} | "
              f"noisy rho {n['rho']:.3f} w2 {n['w2']:.3f} d {n['d']:.3f} combined {n['combined']:.1f}")
        assert c["rho"] >= 0.95  # measured 0.988 isolated, 1.000 bootstrap (seed 0)
        assert n["rho"] >= 0.8  # measured 0.988 both: noise costs separability before it costs order
        assert n["w2"] < c["w2"] - 0.1 and n["d"] < c["d"] - 0.05 and n["combined"] < c["combined"]


def test_positional_and_length_bias_show_up(world):
    truth, quality, items = world
    fair = _summary(rank(SyntheticJudge(quality, noise=0.5), items, SETTINGS), truth)
    favours_a = _summary(rank(SyntheticJudge(quality, noise=0.5, position_bias=1.0), items, SETTINGS), truth)
    favours_long = _summary(rank(SyntheticJudge(quality, noise=0.5, length_bias=1.0), items, SETTINGS), truth)
    for mode in ("isolated", "bootstrap"):
        f, a, ln = fair[mode], favours_a[mode], favours_long[mode]
        print(f"{mode}: position-1 share fair {f['pos']:.3f} vs A-favouring {a['pos']:.3f}; longer win rate fair "
              f"{f['len']:.3f} (margin {f['len_margin']:.1f}) vs length-favouring {ln['len']:.3f} "
              f"(margin {ln['len_margin']:.1f})")
        assert abs(f["pos"] - 0.5) < 0.06 and a["pos"] > 0.65
        assert abs(f["len"] - 0.5) < 0.12 and ln["len"] > f["len"] + 0.15
        assert ln["len_margin"] > f["len_margin"] + 10.0
        assert a["rho"] >= 0.9  # the dual pass cancels the position preference in the ranking


def test_same_seed_same_tournament_other_seed_other_draw(world):
    _, quality, items = world
    settings = RankSettings(isolated_rounds=3, bootstrap_rounds=4, bootstrap_samples=3, progress=False, seed=7)
    first = rank(SyntheticJudge(quality, noise=1.0), items, settings)
    again = rank(SyntheticJudge(quality, noise=1.0), items, settings)
    other = rank(SyntheticJudge(quality, noise=1.0), items,
                 RankSettings(isolated_rounds=3, bootstrap_rounds=4, bootstrap_samples=3, progress=False, seed=8))
    for mode in ("isolated", "bootstrap"):
        assert first.modes[mode].games == again.modes[mode].games
        assert first.modes[mode].leaderboard == again.modes[mode].leaderboard
        assert first.modes[mode].games != other.modes[mode].games
    # a mode alone draws exactly what it draws beside the other mode
    alone = rank(SyntheticJudge(quality, noise=1.0), items, settings, modes=("bootstrap",))
    assert alone.modes["bootstrap"].games == first.modes["bootstrap"].games


def test_one_compare_many_call_per_round_and_cache_resumes(world, tmp_path):
    _, quality, items = world
    settings = RankSettings(isolated_rounds=4, bootstrap_rounds=5, bootstrap_samples=3, progress=False)
    path = tmp_path / "judgements.jsonl"
    judge = SyntheticJudge(quality, noise=1.0)
    first = rank(judge, items, settings, cache=JudgementCache(path, judge_label="synthetic"))
    assert judge.calls == 4 + 5  # every round of all tournaments of a mode is one batched job
    assert first.cache["misses"] == judge.pairs_judged > 0

    rerun_judge = SyntheticJudge(quality, noise=1.0)
    cache = JudgementCache(path, judge_label="synthetic")
    second = rank(rerun_judge, items, settings, cache=cache)
    print(f"rerun: {cache.loaded} loaded, {second.cache['hits']} hits, {rerun_judge.pairs_judged} judged")
    assert rerun_judge.pairs_judged == 0 and rerun_judge.calls == 0
    assert second.cache["hits"] == sum(r.stats["games"] for r in second.modes.values())
    assert second.modes["bootstrap"].leaderboard == first.modes["bootstrap"].leaderboard

    # an interrupted run (torn last line) resumes: only the lost pair is judged again
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][: len(lines[-1]) // 2])
    resumed_judge = SyntheticJudge(quality, noise=1.0)
    third = rank(resumed_judge, items, settings, cache=JudgementCache(path, judge_label="synthetic"))
    assert resumed_judge.pairs_judged == 1
    assert third.modes["isolated"].leaderboard == first.modes["isolated"].leaderboard

    from judge_core.tournament.cache import CacheMismatchError
    with pytest.raises(CacheMismatchError, match="synthetic"):
        JudgementCache(path, judge_label="another-judge")


def test_failed_pairs_are_counted_and_skipped_not_cached(world, tmp_path):
    _, quality, items = world
    settings = RankSettings(isolated_rounds=3, bootstrap_rounds=3, bootstrap_samples=2, progress=False)
    path = tmp_path / "judgements.jsonl"
    judge = SyntheticJudge(quality, noise=0.5, fail_every=4)
    result = rank(judge, items, settings, cache=JudgementCache(path, judge_label="s"))
    for mode, r in result.modes.items():
        failed = sum(1 for g in r.games if g["error"])
        print(f"{mode}: {failed} of {len(r.games)} games failed")
        assert r.stats["error_games"] == failed > 0
        assert r.stats["unscored_matches"] == failed  # one game per match here, so a failed game = no update
        assert r.stats["errors"][0].endswith("synthetic failure")
        assert r.stats["positional_bias"]["pairs"] == r.stats["unique_pairs_judged"]
    on_disk = len(path.read_text().splitlines()) - 1  # minus the header
    assert on_disk == result.cache["entries"]  # failures stay out of the file: a rerun retries them


def test_several_responses_per_prompt_first_or_sample():
    _, quality, items = make_items(n_writers=4, n_prompts=3, iterations=3)
    assert {len(v) for v in items.responses.values()} == {3}
    first = rank(SyntheticJudge(quality), items, RankSettings(isolated_rounds=3, progress=False), modes=("isolated",))
    sampled = rank(SyntheticJudge(quality), items, RankSettings(isolated_rounds=3, per_prompt="sample",
                                                                progress=False), modes=("isolated",))
    # "first" only ever shows the lowest iteration; "sample" draws among all three
    assert _shown_iterations(first.modes["isolated"].games, items) == {1}
    assert _shown_iterations(sampled.modes["isolated"].games, items) == {1, 2, 3}


def _shown_iterations(games, items):
    from judge_core.tournament.cache import pair_key

    shown = set()
    for g in games:
        instruction = items.instructions[g["prompt_id"]]
        r1s = items.responses[(g["prompt_id"], g["writer_1"])]
        r2s = items.responses[(g["prompt_id"], g["writer_2"])]
        for a in r1s:
            for b in r2s:
                if pair_key(instruction, a.text, b.text) == g["key"]:
                    shown.update((a.iteration, b.iteration))
    return shown


def test_missing_writer_sits_out_and_bootstrap_never_matches_it_there():
    truth, quality, items = make_items(n_writers=5, n_prompts=4)
    del items.responses[("P0", "W2")]  # W2 never answered P0
    result = rank(SyntheticJudge(quality, noise=0.5), items,
                  RankSettings(isolated_rounds=3, bootstrap_rounds=4, bootstrap_samples=4, progress=False))
    iso = result.modes["isolated"]
    assert len(iso.elo_samples["W2"]) == 3 and len(iso.elo_samples["W0"]) == 4
    assert not any(g["prompt_id"] == "P0" and "W2" in (g["writer_1"], g["writer_2"])
                   for r in result.modes.values() for g in r.games)
