"""Rank writer models with any pairwise judge, and measure the judge the way its card does (DESIGN §6).

The judge is any object with `compare_many(pairs) -> list[PairScore]`, pairs being
(instruction, response_1, response_2); of judge_core this package imports only scoring (PairScore) and
wording.

Method
------
- Elo: every writer starts at 1500; K = 32; scale 400 (`elo.py`). Outcomes are soft: a game scores
  s = p1 / 100 for the writer shown as response_1 and 1 - s for the other. The judge's dual pass
  already cancels most positional bias; on top, which writer of a pairing is response_1 is a coin
  flip under the seed. A game whose PairScore has an error moves no rating; it is counted and its
  message reported (stats `error_games`, `errors`), never dropped silently.
- Swiss pairing (`swiss.py`): standings by current rating (equal ratings in a seeded random order,
  so round 1 is a random draw); the top unpaired writer meets the next-highest it has not met, with
  backtracking so the tail also avoids rematches; rematches happen only when unavoidable and are
  counted. An odd count gives a bye (no rating change) to the lowest-standing writer with the fewest
  byes.
- Batching: all tournaments of a mode advance in lockstep; one round of all of them is ONE
  `compare_many` call (one batched job).
- Option A, prompt-isolated (`--mode isolated`): one Swiss tournament per prompt (default 5 rounds)
  among the writers that answered it; each writer's per-prompt final Elo is one sample.
- Option B, bootstrapped (`--mode bootstrap`): resample the prompt ids with replacement (default 10
  times, as many draws as prompts); each sample runs one global Swiss tournament (default 20 rounds)
  over all writers; each match is played on a prompt drawn from the sample among those both writers
  answered (`games_per_match` prompts, default 1, mean outcome). Each writer's final Elo per sample
  is one sample.
- Statistics over those samples (`stats.py`): omega-squared (one-way ANOVA, groups = writers), mean
  |Cliff's delta| over ALL unordered writer pairs, combined = ((0.5 w2 + 0.5 d) / 0.75) x 100, Elo mean
  and spread (sample std) per writer. Biases over the unique pairs judged in the mode: positional (share
  of passes won by position 1, i.e. the text shown as "A") and length (longer text in CHARACTERS: win
  rate and mean margin P(longer) - P(shorter) in points; also reported in whitespace-split words).
- Several responses of one writer to one prompt (the dev data has 3 iterations): `per_prompt="first"`
  (default) always plays the lowest `iteration` (else the first in the file); `"sample"` draws one
  at random for every game, under the seed. Exact duplicates (same prompt_id, writer and text) are
  dropped at load time with a warning.
- Missing data: a writer with no response to a prompt sits that prompt out (Option A) or is never
  matched on it (Option B); fewer than two writers in total is an error (`items.ItemsError`).
- Cache (`cache.py`): judgements keyed by sha256 of the exact (instruction, response_1, response_2) (and
  the judge spec's hash, for a spec other than the default: `rank --spec`),
  appended to `judgements.jsonl` beside the outputs after every round; reruns and bootstraps never
  judge a pair twice, and an interrupted run resumes where it stopped (pairings are deterministic).
- Determinism: each tournament owns a Generator seeded by (seed, mode, index): same seed, same
  pairings, same verdict order, same leaderboard.
"""

from .cache import JudgementCache, pair_key, spec_key
from .elo import ELO_SCALE, INITIAL_RATING, K_FACTOR, elo_update, expected_score
from .items import ItemSet, ItemsError, build_item_set, load_items
from .runner import MODES, ModeResult, RankResult, RankSettings, rank, run_mode
from .stats import (cliffs_delta, combined_separability, elo_summary, length_bias, mean_abs_cliffs_delta,
                    omega_squared, positional_bias, separability, spearman)
from .swiss import swiss_round

__all__ = [
    "ELO_SCALE", "INITIAL_RATING", "K_FACTOR", "MODES", "ItemSet", "ItemsError", "JudgementCache", "ModeResult",
    "RankResult", "RankSettings", "build_item_set", "cliffs_delta", "combined_separability", "elo_summary",
    "elo_update", "expected_score", "length_bias", "load_items", "mean_abs_cliffs_delta", "omega_squared",
    "pair_key", "positional_bias", "rank", "run_mode", "separability", "spearman", "spec_key", "swiss_round",
]
