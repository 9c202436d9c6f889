"""Workloads: the pairs every system in one bench run scores.

Three sources:
- `card_pairs`: pairs built from a creative-writing items file with the card's filter (DESIGN §1, §7):
  same prompt, different writer models, length ratio max/min <= 1.2 (characters), 5 <= score
  difference <= 10, N pairs drawn with a seeded RNG (seed 42 as on the card).
- `synthetic_pairs`: no data needed; prompt and response token lengths drawn from log-normals fitted
  to the dev data's Qwen3.5 token counts (response median 1.4k, p90 2.1k; prompt median 230), made of
  English-looking words so that the real tokenizer sees text, not noise.
- `jsonl_pairs`: any JSONL of pairs (instruction/prompt, response_1/response_2 or A/B, optional scores).
"""

from __future__ import annotations

import gzip
import itertools
import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

# The card's filter (DESIGN §1): comparable lengths, a clear but not trivial quality gap.
CARD_MAX_LENGTH_RATIO = 1.2
CARD_MIN_SCORE_DIFF = 5.0
CARD_MAX_SCORE_DIFF = 10.0
CARD_SEED = 42

# DESIGN §7: real Qwen3.5 token counts on the dev items.
RESPONSE_TOKENS_MEDIAN = 1400
RESPONSE_TOKENS_P90 = 2100
RESPONSE_TOKENS_MAX = 4200
PROMPT_TOKENS_MEDIAN = 230
PROMPT_TOKENS_P90 = 430  # measured on the dev items' 22 prompts (p10 128, max 718)
Z90 = 1.2815515655446004  # standard normal 90th percentile


@dataclass(frozen=True)
class BenchPair:
    """One pair to judge. Scores are the items' quality labels (None when unlabelled)."""

    instruction: str
    response_1: str
    response_2: str
    score_1: float | None = None
    score_2: float | None = None
    meta: dict = field(default_factory=dict, compare=False)

    @property
    def label(self) -> int | None:
        """1 if response_1 is the better-labelled one, 2 if response_2, None if unlabelled or tied."""
        if self.score_1 is None or self.score_2 is None or self.score_1 == self.score_2:
            return None
        return 1 if self.score_1 > self.score_2 else 2

    def as_tuple(self) -> tuple[str, str, str]:
        return (self.instruction, self.response_1, self.response_2)

    def truncated(self, max_chars: int | None) -> "BenchPair":
        if not max_chars:
            return self
        return BenchPair(self.instruction, self.response_1[:max_chars], self.response_2[:max_chars],
                         self.score_1, self.score_2, dict(self.meta, max_chars=max_chars))

    def to_dict(self) -> dict:
        return {"instruction": self.instruction, "response_1": self.response_1, "response_2": self.response_2,
                "score_1": self.score_1, "score_2": self.score_2, **({"meta": self.meta} if self.meta else {})}


def _open_text(path: str | Path):
    path = Path(path)
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def read_items(path: str | Path) -> list[dict]:
    """Items (model, iteration, prompt_id, prompt, response, item_score) from a .jsonl or .jsonl.gz."""
    items = []
    with _open_text(path) as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            missing = [k for k in ("model", "prompt_id", "prompt", "response", "item_score") if k not in row]
            if missing:
                raise ValueError(f"{path}:{line_no}: item lacks fields {missing} (has {sorted(row)})")
            items.append(row)
    return items


def card_filter(a: dict, b: dict) -> bool:
    """The card's pair filter on two items of the same prompt."""
    if a["model"] == b["model"] or not a["response"] or not b["response"]:
        return False
    la, lb = len(a["response"]), len(b["response"])
    if min(la, lb) == 0 or max(la, lb) / min(la, lb) > CARD_MAX_LENGTH_RATIO:
        return False
    diff = abs(float(a["item_score"]) - float(b["item_score"]))
    return CARD_MIN_SCORE_DIFF <= diff <= CARD_MAX_SCORE_DIFF


def card_pairs(items: Sequence[dict], n_pairs: int, *, seed: int = CARD_SEED,
               max_chars: int | None = None) -> list[BenchPair]:
    """N pairs passing the card's filter, drawn with `random.Random(seed)`.

    Candidates are enumerated in a fixed order (prompt id, then item order), so the draw depends
    only on the file and the seed. Which item goes first is also drawn, so the better-labelled
    response sits in position 1 about half of the time.
    """
    by_prompt: dict[str, list[dict]] = {}
    for item in items:
        by_prompt.setdefault(str(item["prompt_id"]), []).append(item)
    candidates = [(a, b) for pid in sorted(by_prompt) for a, b in itertools.combinations(by_prompt[pid], 2)
                  if card_filter(a, b)]
    if n_pairs > len(candidates):
        raise ValueError(f"asked for {n_pairs} pairs but only {len(candidates)} pass the card's filter")
    rng = random.Random(seed)
    chosen = rng.sample(candidates, n_pairs)
    pairs = []
    for a, b in chosen:
        if rng.random() < 0.5:
            a, b = b, a
        meta = {"prompt_id": str(a["prompt_id"]), "model_1": a["model"], "model_2": b["model"]}
        pairs.append(BenchPair(a["prompt"], a["response"], b["response"], float(a["item_score"]),
                               float(b["item_score"]), meta).truncated(max_chars))
    return pairs


def jsonl_pairs(path: str | Path, *, max_chars: int | None = None, limit: int | None = None) -> list[BenchPair]:
    """Pairs from a JSONL file: instruction|prompt, response_1|A|r1, response_2|B|r2, optional score_1/score_2."""
    def pick(row: dict, names: Iterable[str], line_no: int, required: bool = True):
        for n in names:
            if n in row:
                return row[n]
        if required:
            raise ValueError(f"{path}:{line_no}: no field among {list(names)} (has {sorted(row)})")
        return None

    pairs = []
    with _open_text(path) as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            s1 = pick(row, ("score_1", "score_a"), line_no, required=False)
            s2 = pick(row, ("score_2", "score_b"), line_no, required=False)
            pairs.append(BenchPair(pick(row, ("instruction", "prompt"), line_no),
                                   pick(row, ("response_1", "A", "r1", "text1"), line_no),
                                   pick(row, ("response_2", "B", "r2", "text2"), line_no),
                                   None if s1 is None else float(s1), None if s2 is None else float(s2),
                                   ).truncated(max_chars))
            if limit and len(pairs) >= limit:
                break
    return pairs


# ---------------------------------------------------------------------------------------------
# Synthetic pairs

_WORDS = (
    "the a of and to in was her his she he it that with as had for on at but they from by "
    "light night rain window door river stone silence memory voice hand letter morning shadow "
    "city garden house winter summer ocean road mirror candle photograph darkroom kitchen "
    "whispered remembered turned walked watched waited smiled trembled opened closed fell rose "
    "slowly quietly suddenly almost never always perhaps still already again once "
    "old young quiet bright cold warm broken golden distant familiar strange heavy soft "
    "mother father sister stranger captain doctor child friend neighbour teacher "
    "because although while until before after when where whatever somehow"
).split()
_PUNCT = [",", ",", ".", ".", ".", ";", " \u2014", "?", "!"]


def english_like_text(n_words: int, rng: random.Random) -> str:
    """Sentences of common English words with punctuation, curly quotes and paragraph breaks.

    Curly quotes and dashes matter: with `ensure_ascii=True` they become \\u escapes in the JSON
    user message (DESIGN §1), as in real creative writing.
    """
    out, sentence_len, capital = [], 0, True
    for _ in range(n_words):
        w = rng.choice(_WORDS)
        out.append(w.capitalize() if capital else w)
        capital = False
        sentence_len += 1
        if sentence_len > 5 and rng.random() < 0.15:
            p = rng.choice(_PUNCT)
            out[-1] += p
            sentence_len = 0
            capital = p in (".", "?", "!")
            if capital and rng.random() < 0.1:
                out[-1] += "\n\n"
            elif capital and rng.random() < 0.1:
                out.append("\u201c" + rng.choice(_WORDS).capitalize() + ",\u201d")
    return " ".join(out).replace("\n\n ", "\n\n")


def lognormal_tokens(rng: random.Random, median: float, p90: float, lo: int, hi: int) -> int:
    sigma = math.log(p90 / median) / Z90
    return int(min(hi, max(lo, round(rng.lognormvariate(math.log(median), sigma)))))


def _text_of_tokens(n_tokens: int, rng: random.Random, tokenizer=None) -> str:
    """English-like text of about `n_tokens` tokens (exactly, up to re-tokenisation, with a tokenizer)."""
    # ~1.3 tokens per word for this vocabulary; draw extra words, then cut at the token boundary.
    text = english_like_text(max(1, int(n_tokens / 1.1) + 8), rng)
    if tokenizer is None:
        return " ".join(text.split(" ")[: max(1, int(n_tokens / 1.3))])
    ids = tokenizer.encode(text, add_special_tokens=False)
    return tokenizer.decode(ids[:n_tokens])


def synthetic_pairs(n_pairs: int, *, seed: int = CARD_SEED, tokenizer=None,
                    response_tokens: int | None = None, prompt_tokens: int | None = None,
                    response_median: float = RESPONSE_TOKENS_MEDIAN, response_p90: float = RESPONSE_TOKENS_P90,
                    max_chars: int | None = None) -> list[BenchPair]:
    """Synthetic labelled pairs with dev-data-like token lengths.

    response_tokens / prompt_tokens: fix the lengths instead of drawing them (prompt-length sweeps).
    The second response's length is the first's times a factor in [1/1.2, 1.2], as the card's
    filter allows; scores differ by 5..10 so the card's metrics are defined.
    """
    rng = random.Random(seed)
    pairs = []
    for i in range(n_pairs):
        n_prompt = prompt_tokens or lognormal_tokens(rng, PROMPT_TOKENS_MEDIAN, PROMPT_TOKENS_P90, 40, 1200)
        n_r1 = response_tokens or lognormal_tokens(rng, response_median, response_p90, 16, RESPONSE_TOKENS_MAX)
        n_r2 = response_tokens or max(8, int(n_r1 * rng.uniform(1 / CARD_MAX_LENGTH_RATIO, CARD_MAX_LENGTH_RATIO)))
        s1 = round(rng.uniform(30, 85), 1)
        s2 = round(s1 + rng.choice((-1, 1)) * rng.uniform(CARD_MIN_SCORE_DIFF, CARD_MAX_SCORE_DIFF), 1)
        pairs.append(BenchPair(_text_of_tokens(n_prompt, rng, tokenizer), _text_of_tokens(n_r1, rng, tokenizer),
                               _text_of_tokens(n_r2, rng, tokenizer), s1, s2, {"synthetic": i}).truncated(max_chars))
    return pairs
