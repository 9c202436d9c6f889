"""Option A (prompt-isolated) and Option B (bootstrapped) tournaments over any judge.

The judge is anything with `compare_many(pairs) -> list[PairScore]` (pairs: (instruction, r1, r2)).
All tournaments of a mode advance in lockstep, so one round of ALL of them (every prompt's Swiss
round in Option A, every bootstrap sample's in Option B) is one `compare_many` call: one batched job.

Randomness: each tournament owns a numpy Generator seeded by (seed, mode, index), so a mode gives the
same result whether it runs alone or beside the other, and a rerun repeats every pairing exactly
(which is also what lets the judgement cache resume an interrupted run).
"""

from __future__ import annotations

import math
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field

import numpy as np
from tqdm.auto import tqdm

from ..wording import plural
from .cache import JudgementCache, spec_key
from .elo import ELO_SCALE, INITIAL_RATING, K_FACTOR, elo_update
from .items import PER_PROMPT_POLICIES, ItemSet
from .stats import elo_summary, length_bias, positional_bias, separability
from .swiss import swiss_round

MODES = ("isolated", "bootstrap")
_MODE_SEED_TAG = {"isolated": 1, "bootstrap": 2}
_ERRORS_SHOWN = 5


@dataclass
class RankSettings:
    """How to rank. Defaults follow the card (DESIGN §6).

    isolated_rounds:  Swiss rounds per prompt (Option A).
    bootstrap_rounds: Swiss rounds per global tournament (Option B); bootstrap_samples: how many.
    games_per_match:  Option B: prompts (drawn from the bootstrap sample) one match is played on;
                      the Elo update uses the mean outcome of its games.
    per_prompt:       several responses of one writer for one prompt: "first" (lowest iteration, else
                      first in file) always plays, or "sample" (one drawn at random for every game).
    randomize_order:  which writer of a pairing is response_1 is a seeded coin flip; off: the higher
                      standing writer is response_1.
    """

    isolated_rounds: int = 5
    bootstrap_rounds: int = 20
    bootstrap_samples: int = 10
    games_per_match: int = 1
    per_prompt: str = "first"
    seed: int = 0
    k_factor: float = K_FACTOR
    initial_rating: float = INITIAL_RATING
    randomize_order: bool = True
    progress: bool = True

    def __post_init__(self):
        for name in ("isolated_rounds", "bootstrap_rounds", "bootstrap_samples", "games_per_match"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.per_prompt not in PER_PROMPT_POLICIES:
            raise ValueError(f"per_prompt must be one of {PER_PROMPT_POLICIES}, got {self.per_prompt!r}")
        if not self.k_factor > 0:
            raise ValueError(f"k_factor must be > 0, got {self.k_factor}")


@dataclass
class ModeResult:
    """One mode's outcome. elo_samples: writer -> Elo per prompt (isolated) or per bootstrap sample."""

    mode: str
    elo_samples: dict[str, list[float]]
    leaderboard: list[dict]
    stats: dict
    games: list[dict] = field(repr=False)


@dataclass
class RankResult:
    settings: RankSettings
    items: dict
    modes: dict[str, ModeResult]
    cache: dict

    def stats_dict(self) -> dict:
        return {"settings": asdict(self.settings), "items": self.items, "cache": self.cache,
                **{mode: {**r.stats, "leaderboard": r.leaderboard} for mode, r in self.modes.items()}}


class _Tournament:
    """One Swiss tournament's state: ratings, who met whom, byes."""

    def __init__(self, name: str, entrants: list[str], rng: np.random.Generator, settings: RankSettings,
                 prompt_ids: list[str]):
        self.name, self.entrants, self.rng, self.settings = name, entrants, rng, settings
        self.prompt_ids = prompt_ids  # isolated: [its prompt]; bootstrap: the resampled prompt list
        self.ratings = {e: settings.initial_rating for e in entrants}
        self.tiebreak = dict(zip(entrants, rng.permutation(len(entrants)).tolist()))
        self.played: set[frozenset] = set()
        self.bye_counts: Counter = Counter()
        self.rematches = 0

    def pair_round(self) -> list[tuple[str, str]]:
        pairing = swiss_round(self.entrants, self.ratings, self.played, self.bye_counts, self.tiebreak)
        self.rematches += pairing.rematches
        if pairing.bye is not None:
            self.bye_counts[pairing.bye] += 1
        pairs = []
        for a, b in pairing.pairs:
            if self.settings.randomize_order and self.rng.random() < 0.5:
                a, b = b, a
            pairs.append((a, b))
            self.played.add(frozenset((a, b)))
        return pairs

    def update(self, writer_1: str, writer_2: str, score_1: float) -> None:
        self.ratings[writer_1], self.ratings[writer_2] = elo_update(
            self.ratings[writer_1], self.ratings[writer_2], score_1, self.settings.k_factor)


def _pick_response(items: ItemSet, rng: np.random.Generator, prompt_id: str, writer: str, policy: str) -> str:
    responses = items.responses[(prompt_id, writer)]
    if policy == "first" or len(responses) == 1:
        return responses[0].text
    return responses[int(rng.integers(len(responses)))].text


def _match_prompts(t: _Tournament, items: ItemSet, writer_1: str, writer_2: str, mode: str,
                   games_per_match: int) -> list[str]:
    """The prompt(s) a match is played on: its own prompt (isolated) or draws from the sample (bootstrap)."""
    if mode == "isolated":
        return t.prompt_ids
    playable = [p for p in t.prompt_ids if items.has(p, writer_1) and items.has(p, writer_2)]
    if not playable:
        return []
    picks = t.rng.choice(len(playable), size=min(games_per_match, len(playable)), replace=False)
    return [playable[int(i)] for i in picks]


def _build_tournaments(items: ItemSet, mode: str, settings: RankSettings) -> tuple[list[_Tournament], list[str]]:
    tag, notes, tournaments = _MODE_SEED_TAG[mode], [], []
    if mode == "isolated":
        for index, prompt_id in enumerate(items.prompt_ids):
            entrants = items.writers_for(prompt_id)
            if len(entrants) < 2:
                notes.append(f"prompt {prompt_id!r} has {len(entrants)} writer(s): no tournament for it")
                continue
            rng = np.random.default_rng([settings.seed, tag, index])
            tournaments.append(_Tournament(f"prompt:{prompt_id}", entrants, rng, settings, [prompt_id]))
        return tournaments, notes
    for index in range(settings.bootstrap_samples):
        rng = np.random.default_rng([settings.seed, tag, index])
        sample = [items.prompt_ids[int(i)] for i in rng.integers(len(items.prompt_ids), size=len(items.prompt_ids))]
        entrants = [w for w in items.writers if any(items.has(p, w) for p in sample)]
        if len(entrants) < len(items.writers):
            notes.append(f"bootstrap {index}: {len(items.writers) - len(entrants)} writer(s) have no response "
                         f"to any sampled prompt and sit it out")
        if len(entrants) >= 2:
            tournaments.append(_Tournament(f"bootstrap:{index}", entrants, rng, settings, sample))
    return tournaments, notes


def run_mode(judge, items: ItemSet, mode: str, settings: RankSettings, cache: JudgementCache) -> ModeResult:
    """Play every tournament of `mode` ("isolated" | "bootstrap") and compute its statistics."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    rounds = settings.isolated_rounds if mode == "isolated" else settings.bootstrap_rounds
    tournaments, notes = _build_tournaments(items, mode, settings)
    games_log: list[dict] = []
    judged: dict[str, tuple[tuple[int, int], tuple[int, int], object]] = {}  # key -> (chars, words, PairScore)
    errors, unscored, unplayable = Counter(), 0, 0
    bar = tqdm(range(1, rounds + 1), desc=f"{mode} rounds", unit="round", disable=not settings.progress)
    for round_number in bar:
        matches, pairs = [], []  # one batch: every game of every tournament of this round
        for t in tournaments:
            for writer_1, writer_2 in t.pair_round():
                games = []
                for prompt_id in _match_prompts(t, items, writer_1, writer_2, mode, settings.games_per_match):
                    r1 = _pick_response(items, t.rng, prompt_id, writer_1, settings.per_prompt)
                    r2 = _pick_response(items, t.rng, prompt_id, writer_2, settings.per_prompt)
                    games.append(prompt_id)
                    pairs.append((items.instructions[prompt_id], r1, r2))
                matches.append((t, writer_1, writer_2, games))
        scores = iter(cache.judge(judge, pairs))
        pair_iter = iter(pairs)
        for t, writer_1, writer_2, games in matches:
            outcomes = []
            for prompt_id in games:
                pair, score = next(pair_iter), next(scores)
                key = cache.key(pair)
                games_log.append({"tournament": t.name, "round": round_number, "writer_1": writer_1,
                                  "writer_2": writer_2, "prompt_id": prompt_id, "key": key,
                                  "p1": score.p1 if score.ok else None, "error": score.error})
                if score.ok:
                    outcomes.append(score.p1 / 100.0)
                    judged[key] = ((len(pair[1]), len(pair[2])), (len(pair[1].split()), len(pair[2].split())), score)
                else:
                    errors[score.error] += 1
            if not games:
                unplayable += 1
            elif outcomes:
                t.update(writer_1, writer_2, float(np.mean(outcomes)))
            else:
                unscored += 1  # every game of the match failed: ratings stay, the count says so
        bar.set_postfix(pairs=len(pairs), cache_hits=cache.hits, errors=sum(errors.values()))

    elo_samples: dict[str, list[float]] = {w: [] for w in items.writers}
    for t in tournaments:
        for writer, rating in t.ratings.items():
            elo_samples[writer].append(rating)
    elo_samples = {w: v for w, v in elo_samples.items() if v}
    scores_unique = [s for _, _, s in judged.values()]
    by_chars = [(c[0], c[1], s.p1) for c, _, s in judged.values()]
    by_words = [(w[0], w[1], s.p1) for _, w, s in judged.values()]
    stats = {
        "mode": mode,
        "rounds": rounds,
        "tournaments": len(tournaments),
        "games": len(games_log),
        "unique_pairs_judged": len(judged),
        "error_games": sum(errors.values()),
        "errors": [f"{n}x {msg}" for msg, n in errors.most_common(_ERRORS_SHOWN)],
        "unscored_matches": unscored,
        "unplayable_matches": unplayable,
        "rematches": sum(t.rematches for t in tournaments),
        "byes": sum(sum(t.bye_counts.values()) for t in tournaments),
        "notes": notes,
        "elo": {"initial": settings.initial_rating, "k_factor": settings.k_factor, "scale": ELO_SCALE,
                "samples_are": "one Elo per prompt" if mode == "isolated" else "one Elo per bootstrap sample",
                "spread": "sample standard deviation (ddof=1) over those"},
        **separability(elo_samples),
        "positional_bias": positional_bias(scores_unique),
        "length_bias": {"unit": "characters", **length_bias(by_chars)},
        # words (whitespace-split) as a second view: truncation by --max-chars equalises characters, not words
        "length_bias_words": {"unit": "words", **length_bias(by_words)},
    }
    if errors:
        print(f"{mode}: {plural(stats['error_games'], 'game')} failed in the judge and were skipped in the Elo "
              f"updates; first: {stats['errors'][0]}", file=sys.stderr)  # stdout carries the leaderboard
    return ModeResult(mode, elo_samples, elo_summary(elo_samples), _finite(stats), games_log)


def _finite(value):
    """NaN -> None, recursively, so that stats.json is strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def rank(judge, items: ItemSet, settings: RankSettings | None = None, *, modes: tuple[str, ...] = MODES,
         cache: JudgementCache | None = None) -> RankResult:
    """Rank the writers of `items` with `judge` in each of `modes`; see the package docstring."""
    settings = settings or RankSettings()
    # The judge's spec keys the cache (a Judge has one; a synthetic judge, none: the default).
    key = spec_key(getattr(judge, "spec", None))
    if cache is None:
        cache = JudgementCache(spec_hash=key)
    elif cache.spec_hash != key:
        name = getattr(getattr(judge, "spec", None), "name", "the default")
        raise ValueError(f"the judgement cache is keyed on spec hash {cache.spec_hash} but the judge's spec ({name}) "
                         f"keys {key} (None: the default spec's keys): build it with "
                         "JudgementCache(..., spec_hash=spec_key(judge.spec))")
    results = {mode: run_mode(judge, items, mode, settings, cache) for mode in modes}
    return RankResult(settings, items.summary(), results, cache.counters())
