"""Pairs -> the two prompts' token ids of each pair, and two logits rows -> a PairScore.

The steps on either side of the forward pass, shared by `Judge.compare_many` and the scoring service
(which tokenizes on request threads while the model runs): rejected pairs and prompts over the
model's context are answered here without reaching the model.

A pair whose text is too long to fit the context whatever its tokens (more characters than
max_context x the most characters one token covers) is answered before anything is rendered or
tokenized: one 15 MB response must not cost seconds of tokenizing and a gigabyte of token lists
just to learn that it is too long.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from .pairs import PairError, check_unicode, normalize_pair
from .scoring import PairScore
from .specs.items import ItemError, extra_fields, normalize_item, pass_slots
from .specs.readout import PointScore, pair_from_passes, point_score


@dataclass
class PreparedPairs:
    """results[i]: set for items answered without the model; sequences: `passes` per runnable item (the
    judge spec's: 2 for the card's A/B and swapped, 1 for a pointwise score), runnable[m] = index of the
    item that sequences[passes*m : passes*(m+1)] belong to."""

    results: list
    sequences: list[list[int]] = field(default_factory=list)
    runnable: list[int] = field(default_factory=list)
    spec: Any = None
    passes: int = 2

    @property
    def prompt_tokens(self) -> int:
        return sum(len(s) for s in self.sequences)


def char_limit(judge) -> int | None:
    """More characters than this in a pair's three texts means a prompt over the context, whatever
    its tokens (None: the tokenizer gives no such bound)."""
    per_token = getattr(judge.prompt_tokens, "max_chars_per_token", None)  # a stand-in may give no bound
    return None if per_token is None else judge.max_context * per_token


def over_context_by_chars(judge, texts) -> str | None:
    """The over-context error of an item too long in characters alone; None when it may fit.

    Each prompt holds all of the item's texts (escaped, which only lengthens them) plus the template, so
    its characters are at least theirs; a token covers at most max_chars_per_token characters."""
    limit = char_limit(judge)
    chars = sum(len(text) for text in texts)
    if limit is None or chars <= limit:
        return None
    return (f"prompt of over {judge.max_context} tokens ({chars} characters; a token covers at most "
            f"{limit // judge.max_context}) exceeds the model's context of {judge.max_context} tokens")


def failed(spec, error: str, tokens=None):
    """The error result of an item of this spec's kind."""
    if spec.pairwise:
        return PairScore.failed(error, tokens=tokens or (0, 0))
    return PointScore.failed(error, len(spec.labels), tokens=(tokens or (0,))[0])


def _check_item(spec, raw) -> dict[str, str]:
    """The item's fields (specs/items.py), each checked to be valid Unicode (pairs.check_unicode).
    A plain pair goes through pairs.normalize_pair: the messages every surface has always given."""
    if spec.kind == "pairwise" and not extra_fields(spec):
        instruction, response_1, response_2 = normalize_pair(raw)
        return {"instruction": instruction, "response_1": response_1, "response_2": response_2}
    try:
        values = normalize_item(spec, raw)
    except ItemError as e:
        raise PairError(str(e)) from None
    for name, value in values.items():
        check_unicode(name, value)
    return values


def prepare_pairs(judge, items: Sequence[Any],
                  tokenize: Callable[[list[str], list], list[list[int]]] | None = None) -> PreparedPairs:
    """Validate each item against the judge's spec (judge.spec: the card's pairs by default), render its
    passes (judge.render) and tokenize every prompt in one call (judge.prompt_tokens, or
    `tokenize(prompts, request_texts)`); items that cannot reach the model get their result at once."""
    spec = judge.spec
    results: list = [None] * len(items)
    texts: list[str] = []
    request_texts: list = []
    owner: list[int] = []
    for i, raw in enumerate(items):
        try:
            values = _check_item(spec, raw)
        except PairError as e:
            results[i] = failed(spec, str(e))
            continue
        too_long = over_context_by_chars(judge, values.values())
        if too_long is not None:
            results[i] = failed(spec, too_long)
            continue
        for slots in pass_slots(spec, values):
            prompt, request_text = judge.render(slots)
            texts.append(prompt)
            request_texts.append(request_text)
            owner.append(i)
    tokens = (tokenize or judge.prompt_tokens)(texts, request_texts)
    passes = spec.passes
    prepared = PreparedPairs(results, spec=spec, passes=passes)
    for k in range(0, len(tokens), passes):
        i = owner[k]
        mine = tokens[k:k + passes]
        longest = max(len(t) for t in mine)
        if longest > judge.max_context:
            results[i] = failed(spec, f"prompt of {longest} tokens exceeds the model's context of "
                                      f"{judge.max_context} tokens", tokens=tuple(len(t) for t in mine))
            continue
        prepared.sequences += mine
        prepared.runnable.append(i)
    return prepared


def pair_score(prepared: PreparedPairs, m: int, logits, errors: dict):
    """The result of runnable item m (a PairScore, or a PointScore for a pointwise spec), from its passes'
    rows of `logits` (tensor or list rows) and the per-sequence error messages."""
    passes = prepared.passes
    ks = range(passes * m, passes * (m + 1))
    tokens = tuple(len(prepared.sequences[k]) for k in ks)
    failure = next((errors[k] for k in ks if errors.get(k)), None)
    if failure:
        return failed(prepared.spec, failure, tokens=tokens)
    rows = [tuple(logits[k].tolist() if hasattr(logits[k], "tolist") else logits[k]) for k in ks]
    if prepared.spec.pairwise:
        return pair_from_passes(prepared.spec, rows, tokens)
    return point_score(prepared.spec, rows[0], tokens[0])


def finish_pairs(prepared: PreparedPairs, logits, errors: dict) -> list[PairScore]:
    """Every pair's PairScore once all runnable sequences ran; results in input order."""
    results = list(prepared.results)
    for m, i in enumerate(prepared.runnable):
        results[i] = pair_score(prepared, m, logits, errors)
    return results  # type: ignore[return-value]
