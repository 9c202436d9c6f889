"""Request -> slot values: what one item of a spec's kind looks like, checked, and the passes it runs.

    pairwise            (instruction, response_1, response_2) or a dict with those keys
    reference_pairwise  (instruction, response, reference) or a dict with those keys
    pointwise           (instruction, response) or a dict {instruction, response}
and, in a dict, any other slot a spec's messages use (criterion, rubric, reference). A missing or
non-string field is an ItemError naming it: the item becomes an error row, never an exception.
"""

from __future__ import annotations

from typing import Any

from .spec import JudgeSpec

# Input fields per kind, in tuple order; the first two/three are what a tuple may hold.
KIND_FIELDS = {
    "pairwise": ("instruction", "response_1", "response_2"),
    "reference_pairwise": ("instruction", "response", "reference"),
    "pointwise": ("instruction", "response"),
}
EXTRA_FIELDS = ("criterion", "rubric", "reference")


class ItemError(ValueError):
    """An item that cannot be judged; the message names the field."""


def extra_fields(spec: JudgeSpec) -> tuple[str, ...]:
    """The fields an item needs beyond its kind's (criterion, rubric, reference), as the messages use them."""
    fields = KIND_FIELDS[spec.kind]
    used = set().union(*(m.slots() for m in spec.messages))
    return tuple(f for f in EXTRA_FIELDS if f in used and f not in fields)


def normalize_item(spec: JudgeSpec, item: Any) -> dict[str, str]:
    """The item's input fields as a dict of strings: the kind's fields, then the extra slots its messages use."""
    fields = KIND_FIELDS[spec.kind]
    extras = extra_fields(spec)
    if isinstance(item, dict):
        missing = [k for k in fields + extras if k not in item]
        if missing:
            raise ItemError(f"missing field{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}"
                            + (f" (spec {spec.name!r} uses {', '.join(extras)})" if set(missing) & set(extras) else ""))
        values = {k: item[k] for k in fields + extras}
    elif isinstance(item, (tuple, list)):
        if extras:
            raise ItemError(f"spec {spec.name!r} needs {', '.join(extras)} as well: pass a dict with keys "
                            f"{', '.join(fields + extras)}")
        if len(item) != len(fields):
            raise ItemError(f"an item of kind {spec.kind!r} is ({', '.join(fields)}): got {len(item)} items")
        values = dict(zip(fields, item))
    else:
        raise ItemError(f"an item of kind {spec.kind!r} is a {len(fields)}-tuple or a dict with keys "
                        f"{', '.join(fields + extras)}, got {type(item).__name__}")
    for name, value in values.items():
        if not isinstance(value, str):
            raise ItemError(f"{name} must be a string, got {type(value).__name__}")
    return values


def pass_slots(spec: JudgeSpec, values: dict[str, str]) -> list[dict[str, str]]:
    """The slot values of each pass: pairwise kinds (A, B) then, with swap, (B, A); pointwise one pass."""
    shared = {k: v for k, v in values.items() if k in ("instruction", "criterion", "rubric")}
    if spec.kind == "pointwise":
        return [{**shared, **{k: values[k] for k in ("response", "reference") if k in values}}]
    first, second = ((values["response_1"], values["response_2"]) if spec.kind == "pairwise"
                     else (values["response"], values["reference"]))
    passes = [{**shared, "response_a": first, "response_b": second}]
    if spec.swap:
        passes.append({**shared, "response_a": second, "response_b": first})
    return passes


def sample_item(spec: JudgeSpec) -> dict[str, str]:
    """A short, complete item of the spec's kind (every field it needs): the service's warm-up batch."""
    return {name: f"A short {name}." for name in KIND_FIELDS[spec.kind] + extra_fields(spec)}
