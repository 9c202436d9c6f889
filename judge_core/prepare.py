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

from .pairs import PairError, normalize_pair
from .plan import dual_pass
from .prompts import user_content
from .scoring import PairScore, combine_passes


@dataclass
class PreparedPairs:
    """results[i]: set for pairs answered without the model; sequences: 2 per runnable pair (pass 1,
    pass 2), runnable[m] = index of the pair that sequences[2m], sequences[2m+1] belong to."""

    results: list[PairScore | None]
    sequences: list[list[int]] = field(default_factory=list)
    runnable: list[int] = field(default_factory=list)

    @property
    def prompt_tokens(self) -> int:
        return sum(len(s) for s in self.sequences)


def char_limit(judge) -> int | None:
    """More characters than this in a pair's three texts means a prompt over the context, whatever
    its tokens (None: the tokenizer gives no such bound)."""
    per_token = getattr(judge.prompt_tokens, "max_chars_per_token", None)  # a stand-in may give no bound
    return None if per_token is None else judge.max_context * per_token


def over_context_by_chars(judge, pair: tuple[str, str, str]) -> PairScore | None:
    """The over-context error of a pair too long in characters alone; None when it may fit.

    Each prompt holds all three texts (escaped, which only lengthens them) plus the template, so its
    characters are at least theirs; a token covers at most max_chars_per_token characters."""
    limit = char_limit(judge)
    chars = sum(len(text) for text in pair)
    if limit is None or chars <= limit:
        return None
    return PairScore.failed(
        f"prompt of over {judge.max_context} tokens ({chars} characters; a token covers at most "
        f"{limit // judge.max_context}) exceeds the model's context of {judge.max_context} tokens")


def prepare_pairs(judge, pairs: Sequence[Any],
                  tokenize: Callable[[list[str], list[str]], list[list[int]]] | None = None) -> PreparedPairs:
    """Validate, render both passes (judge.prompt) and tokenize them in one call (judge.prompt_tokens,
    or `tokenize(prompts, user_messages)`); pairs that cannot reach the model get their PairScore in
    `results` at once."""
    results: list[PairScore | None] = [None] * len(pairs)
    texts: list[str] = []
    user_texts: list[str] = []
    owner: list[int] = []
    for i, raw in enumerate(pairs):
        try:
            pair = normalize_pair(raw)
        except PairError as e:
            results[i] = PairScore.failed(str(e))
            continue
        results[i] = over_context_by_chars(judge, pair)
        if results[i] is not None:
            continue
        for shown in dual_pass(pair):
            texts.append(judge.prompt(*shown))
            user_texts.append(user_content(*shown, ascii_json=judge.ascii_json))
            owner.append(i)
    tokens = (tokenize or judge.prompt_tokens)(texts, user_texts)
    prepared = PreparedPairs(results)
    for k in range(0, len(tokens), 2):
        i = owner[k]
        longest = max(len(tokens[k]), len(tokens[k + 1]))
        if longest > judge.max_context:
            results[i] = PairScore.failed(
                f"prompt of {longest} tokens exceeds the model's context of {judge.max_context} tokens",
                tokens=(len(tokens[k]), len(tokens[k + 1])))
            continue
        prepared.sequences += [tokens[k], tokens[k + 1]]
        prepared.runnable.append(i)
    return prepared


def pair_score(prepared: PreparedPairs, m: int, logits, errors: dict) -> PairScore:
    """The PairScore of runnable pair m, from the logits rows 2m and 2m + 1 (tensor or list rows) and the
    per-sequence error messages."""
    k = 2 * m
    tokens = (len(prepared.sequences[k]), len(prepared.sequences[k + 1]))
    failure = errors.get(k) or errors.get(k + 1)
    if failure:
        return PairScore.failed(failure, tokens=tokens)
    rows = [logits[k], logits[k + 1]]
    rows = [tuple(r.tolist() if hasattr(r, "tolist") else r) for r in rows]
    return combine_passes(rows[0], rows[1], tokens)


def finish_pairs(prepared: PreparedPairs, logits, errors: dict) -> list[PairScore]:
    """Every pair's PairScore once all runnable sequences ran; results in input order."""
    results = list(prepared.results)
    for m, i in enumerate(prepared.runnable):
        results[i] = pair_score(prepared, m, logits, errors)
    return results  # type: ignore[return-value]
