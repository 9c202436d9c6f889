"""Judgement cache: no exact pair is ever judged twice, and an interrupted ranking resumes.

Key: sha256 of json.dumps([instruction, response_1, response_2]) - the exact texts in that exact
order (the swapped pair is a different key: its numbers differ slightly). Under a judge spec other than
the default (judge_core/specs), the spec's hash comes first in the hashed list, so a judgement made under
one spec is never read under another; the default spec keeps the keys it always had, so caches written
before specs existed stay valid. The file is JSONL, a header line naming the judge (and the spec's hash,
for a spec other than the default), then one line per judgement appended and flushed after every batch, so a
killed run loses at most the batch in flight. Judgements with an error are kept in memory only: a
rerun tries them again (the error may have been an out-of-memory, not the pair).
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from pathlib import Path

from judge_core.scoring import PairScore

CACHE_VERSION = 1


class CacheMismatchError(RuntimeError):
    """The cache file on disk was written by another judge."""


def pair_key(instruction: str, response_1: str, response_2: str, spec_hash: str | None = None) -> str:
    """Hex sha256 of the exact (instruction, response_1, response_2), in that order; spec_hash (see
    `spec_key`): None for the default spec, else hashed in first."""
    texts = [instruction, response_1, response_2]
    blob = json.dumps(texts if spec_hash is None else [spec_hash, *texts], ensure_ascii=False)
    # surrogatepass: a text with a lone surrogate (which the judge answers with an error) still has a key;
    # every other text hashes exactly as before.
    return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()


def spec_key(spec) -> str | None:
    """What a spec adds to the cache's keys: None for no spec or one that judges as the default does (same
    hash: the card's creative-writing judge), else its hash."""
    if spec is None:
        return None
    from ..specs import load_spec

    return None if spec.hash == load_spec().hash else spec.hash


def score_to_record(score: PairScore) -> dict:
    return {"p1": score.p1, "p2": score.p2, "pass1": list(score.pass1), "pass2": list(score.pass2),
            "logits1": list(score.logits1), "logits2": list(score.logits2), "tokens": list(score.tokens)}


def score_from_record(record: dict) -> PairScore:
    return PairScore(p1=float(record["p1"]), p2=float(record["p2"]), pass1=tuple(record["pass1"]),
                     pass2=tuple(record["pass2"]), logits1=tuple(record.get("logits1", (math.nan, math.nan))),
                     logits2=tuple(record.get("logits2", (math.nan, math.nan))),
                     tokens=tuple(record.get("tokens", (0, 0))))


class JudgementCache:
    """Pair -> PairScore, in memory and (with `path`) in an append-only JSONL file.

    judge_label: names the judge; a file written under another label raises CacheMismatchError.
    spec_hash: `spec_key(spec)` of the judge's spec (None: the default spec); keys carry it, and a file written
        under another spec raises CacheMismatchError.
    Counters: hits (served from cache), misses (sent to the judge), judge_calls (compare_many calls).
    """

    def __init__(self, path: str | Path | None = None, judge_label: str = "", spec_hash: str | None = None):
        self.path = Path(path) if path is not None else None
        self.judge_label = judge_label
        self.spec_hash = spec_hash
        self._scores: dict[str, PairScore] = {}
        self._errors: dict[str, PairScore] = {}
        self.hits = self.misses = self.judge_calls = 0
        self.loaded = 0
        if self.path is not None and self.path.exists():
            self._load()

    def __len__(self) -> int:
        return len(self._scores)

    def __contains__(self, key: str) -> bool:
        return key in self._scores

    def _load(self) -> None:
        bad = 0
        with open(self.path, encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    if number == 1 and "judge_core_cache" in record:
                        if record.get("spec_hash") != self.spec_hash:
                            raise CacheMismatchError(
                                f"{self.path} holds judgements made under "
                                f"{_spec_words(record.get('spec_hash'))}, this run judges under "
                                f"{_spec_words(self.spec_hash)}; pick another output directory or delete the file")
                        if record.get("judge") != self.judge_label:
                            raise CacheMismatchError(
                                f"{self.path} holds judgements by judge {record.get('judge')!r}, this run uses "
                                f"{self.judge_label!r}; pick another output directory or delete the file")
                        continue
                    self._scores[record["key"]] = score_from_record(record)
                except CacheMismatchError:
                    raise
                except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                    bad += 1  # typically the last line of an interrupted run
        self.loaded = len(self._scores)
        if bad:
            print(f"judgement cache: skipped {bad} unreadable line(s) in {self.path}", file=sys.stderr)

    def _append(self, records: list[dict]) -> None:
        if self.path is None or not records:
            return
        new_file = not self.path.exists() or self.path.stat().st_size == 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            if new_file:
                header = {"judge_core_cache": CACHE_VERSION, "judge": self.judge_label}
                if self.spec_hash is not None:
                    header["spec_hash"] = self.spec_hash
                f.write(json.dumps(header) + "\n")
            for record in records:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
            f.flush()

    def judge(self, judge, pairs: list[tuple[str, str, str]]) -> list[PairScore]:
        """PairScores for `pairs` (instruction, response_1, response_2), in order.

        Pairs not cached (deduplicated within the call) go to ONE `judge.compare_many` call.
        """
        keys = [self.key(pair) for pair in pairs]
        todo: dict[str, tuple[str, str, str]] = {}
        for key, pair in zip(keys, pairs):
            if key in self._scores or key in self._errors:
                self.hits += 1
            elif key not in todo:
                todo[key] = pair
                self.misses += 1
            else:
                self.hits += 1  # the same pair twice in one batch: judged once
        if todo:
            fresh = judge.compare_many(list(todo.values()))
            self.judge_calls += 1
            if len(fresh) != len(todo):
                raise RuntimeError(f"judge.compare_many returned {len(fresh)} scores for {len(todo)} pairs")
            records = []
            for key, score in zip(todo, fresh):
                if score.ok:
                    self._scores[key] = score
                    records.append({"key": key, **score_to_record(score)})
                else:
                    self._errors[key] = score
            self._append(records)
        return [self._scores.get(key) or self._errors[key] for key in keys]

    def key(self, pair: tuple[str, str, str]) -> str:
        """The cache key of (instruction, response_1, response_2) under this cache's spec."""
        return pair_key(*pair, spec_hash=self.spec_hash)

    def counters(self) -> dict:
        return {"path": str(self.path) if self.path else None, "loaded": self.loaded, "entries": len(self._scores),
                "hits": self.hits, "misses": self.misses, "judge_calls": self.judge_calls,
                "spec_hash": self.spec_hash}


def _spec_words(spec_hash: str | None) -> str:
    return "the default spec" if spec_hash is None else f"the spec with hash {spec_hash}"
