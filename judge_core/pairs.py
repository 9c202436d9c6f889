"""Requests: what a pair to judge looks like, and the checks that turn bad input into a message.

Every surface (Judge.compare_many, the reference twin, `judge-core score`, the scoring service) validates
through normalize_pair, so a bad pair is the same error row everywhere and never fails its neighbours.
"""

from __future__ import annotations

from typing import Any

PAIR_FIELDS = ("instruction", "response_1", "response_2")


class PairError(ValueError):
    """A pair that cannot be judged; the message names the field and the value's type."""


def normalize_pair(pair: Any) -> tuple[str, str, str]:
    """(instruction, response_1, response_2) from a 3-tuple/list or a dict with those keys."""
    if isinstance(pair, dict):
        missing = [k for k in PAIR_FIELDS if k not in pair]
        if missing:
            raise PairError(f"missing field{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}")
        values = tuple(pair[k] for k in PAIR_FIELDS)
    elif isinstance(pair, (tuple, list)):
        if len(pair) != 3:
            raise PairError(f"a pair is (instruction, response_1, response_2): got {len(pair)} items")
        values = tuple(pair)
    else:
        raise PairError(f"a pair is a 3-tuple or a dict with keys {PAIR_FIELDS}, got {type(pair).__name__}")
    for name, value in zip(PAIR_FIELDS, values):
        if not isinstance(value, str):
            raise PairError(f"{name} must be a string, got {type(value).__name__}")
        check_unicode(name, value)
    return values  # type: ignore[return-value]


def check_unicode(name: str, value: str) -> None:
    """Raise PairError for a string UTF-8 cannot encode: a lone surrogate ("\\ud800"), which a JSON line or
    body can decode to. The prompt goes to the tokenizer as UTF-8 (verbatim with ascii_json=False), so
    such a text would fail the whole batch; it is an error for its pair alone, in either JSON mode, so that
    a pair gets the same answer whichever mode is used."""
    if value.isascii():
        return
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise PairError(f"{name} is not valid Unicode: a lone surrogate U+{ord(value[e.start]):04X} at character "
                        f"{e.start} (half of a UTF-16 pair; UTF-8 cannot encode it)") from None
