"""Request bodies -> validated inputs, or a RequestError naming the field and the limit.

Structure errors (not JSON, a missing list, a group that is not a group) fail the request: 400 for
a body that is not strict JSON, 422 for a field, 413 for a body over the size limit. A pair whose own
fields are wrong is NOT a request error on /v1/compare: it gets an error entry beside the good ones;
nor is an OpenRLHF item on /get_reward (a query that does not start with its prompt, a label that
is not text): it gets an error entry and the neutral reward, and the batch's other items are scored.

Strict JSON: NaN, Infinity, numbers that overflow a float, integers over Python's 4,300-digit limit,
strings with a lone surrogate (`"\ud800"`: not Unicode, it cannot be written back as UTF-8) and
nesting deeper than the parser's recursion limit are all 400 here, before any work: each of them
once passed the parser and failed only when the answer was written, after the model had run.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from .limits import ServeLimits
from .rewards import RewardGroup, count_matchups


class RequestError(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]!r} overflows a 64-bit float")
    return value


# Fields holding text to judge: a lone surrogate there makes an error row for that item (as in the library
# and the CLI), not a 400 for the whole request; anywhere else (an id, a key) the body is refused.
JUDGED_TEXT_FIELDS = frozenset({"instruction", "response_1", "response_2", "response", "responses", "reference",
                                "criterion", "rubric"})
# A lone surrogate can only come from a \uD800-\uDFFF escape: raw UTF-8 bytes cannot encode one.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")


def parse_body(body: bytes) -> Any:
    """Strict JSON (see the module docstring) or RequestError(400) naming what is wrong."""
    try:
        data = json.loads(body, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:
        raise RequestError(400, "request body is not valid JSON: nested too deeply") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, NaN/Infinity, the int digit limit
        raise RequestError(400, f"request body is not valid JSON: {e}") from None
    # bytes.find is a fast scan; the regex (and the walk) only for bodies with such an escape.
    if (body.find(b"\\ud") >= 0 or body.find(b"\\uD") >= 0) and _SURROGATE_ESCAPE.search(body):
        where = _lone_surrogate(data, "body")
        if where is not None:
            raise RequestError(400, f"request body is not valid JSON: {where} holds a lone surrogate "
                                    "(an unpaired \\uD800-\\uDFFF escape), which is not Unicode text")
    return data


def _lone_surrogate(value: Any, where: str) -> str | None:
    """The path of the first string (or key) holding a lone surrogate; None when there is none."""
    stack = [(value, where)]
    while stack:
        value, where = stack.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return where
        elif isinstance(value, dict):
            for key, item in value.items():
                try:
                    key.encode("utf-8")
                except UnicodeEncodeError:
                    return f"a key of {where}"
                if key == "items" and isinstance(item, list):  # /v1/score: a string item is judged text
                    stack.extend((x, f"{where}.items[{i}]") for i, x in enumerate(item) if not isinstance(x, str))
                elif key not in JUDGED_TEXT_FIELDS:  # judged text: an error for its item alone (pairs.check_unicode)
                    stack.append((item, f"{where}.{key}"))
        elif isinstance(value, list):
            stack.extend((item, f"{where}[{i}]") for i, item in enumerate(value))
    return None


def _object(data: Any) -> dict:
    if not isinstance(data, dict):
        raise RequestError(422, f"request body must be a JSON object, got {type(data).__name__}")
    return data


def _list_field(data: dict, name: str) -> list:
    if name not in data:
        raise RequestError(422, f"missing field {name!r} (a list)")
    value = data[name]
    if not isinstance(value, list):
        raise RequestError(422, f"field {name!r} must be a list, got {type(value).__name__}")
    return value


def check_pair_count(n: int, what: str, limits: ServeLimits) -> None:
    if n > limits.max_pairs_per_request:
        raise RequestError(422, f"{what} makes {n} pairs; the limit is max_pairs_per_request="
                                f"{limits.max_pairs_per_request} pairs per request")


def compare_pairs(data: Any, limits: ServeLimits) -> list:
    """/v1/compare: the raw pair items (each checked later, one error entry per bad pair)."""
    pairs = _list_field(_object(data), "pairs")
    check_pair_count(len(pairs), "'pairs'", limits)
    return pairs


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise RequestError(422, f"{where} must be a string, got {type(value).__name__}")
    return value


def reward_groups(data: Any, limits: ServeLimits) -> list[RewardGroup]:
    """/v1/rewards: every group checked; the expanded pair count checked against the limit."""
    data = _object(data)
    raw = _list_field(data, "groups")
    default_mode = data.get("mode")
    groups = []
    for g, item in enumerate(raw):
        where = f"groups[{g}]"
        if not isinstance(item, dict):
            raise RequestError(422, f"{where} must be an object, got {type(item).__name__}")
        if "instruction" not in item:
            raise RequestError(422, f"missing field {where}.instruction")
        instruction = _string(item["instruction"], f"{where}.instruction")
        responses = item.get("responses")
        if not isinstance(responses, list) or not responses:
            raise RequestError(422, f"{where}.responses must be a non-empty list of strings")
        responses = tuple(_string(r, f"{where}.responses[{i}]") for i, r in enumerate(responses))
        reference = item.get("reference")
        if reference is not None:
            reference = _string(reference, f"{where}.reference")
        try:  # mode: the group's own, else the request's; RewardGroup names what is wrong with it
            groups.append(RewardGroup(instruction, responses, reference, item.get("mode", default_mode)))
        except ValueError as e:
            raise RequestError(422, f"{where}: {e}") from None
    check_pair_count(sum(count_matchups(g) for g in groups), "'groups'", limits)
    return groups


class OpenRLHFItems:
    """The /get_reward batch: per item its prompt (the instruction), its response and its label (the
    reference response, None without one), or the error that keeps it from being scored."""

    def __init__(self):
        self.prompts: list[str | None] = []
        self.responses: list[str | None] = []
        self.labels: list[str | None] = []
        self.errors: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self.prompts)


def openrlhf_items(data: Any, limits: ServeLimits) -> OpenRLHFItems:
    """/get_reward: `query`, `prompts` (and `labels`) of equal length, checked item by item.

    A list missing or of another length fails the request (422): nothing lines up then. A single
    item that is wrong (a query that does not start with its prompt, a non-string query or prompt,
    a label that is not a string or null) is an error entry for that item only."""
    data = _object(data)
    queries = _list_field(data, "query")
    prompts = _list_field(data, "prompts")
    labels = data.get("labels")
    if labels is None:
        labels = [None] * len(queries)
    elif not isinstance(labels, list):
        raise RequestError(422, f"field 'labels' must be a list, got {type(labels).__name__}")
    if not len(queries) == len(prompts) == len(labels):
        raise RequestError(422, f"'query', 'prompts' and 'labels' must have the same length, got "
                                f"{len(queries)}, {len(prompts)} and {len(labels)}")
    items = OpenRLHFItems()
    for i, (query, prompt, label) in enumerate(zip(queries, prompts, labels)):
        problem = None
        if not isinstance(query, str):
            problem = f"query[{i}] must be a string, got {type(query).__name__}"
        elif not isinstance(prompt, str):
            problem = f"prompts[{i}] must be a string, got {type(prompt).__name__}"
        elif label is not None and not isinstance(label, str):
            problem = f"labels[{i}] must be a string (the reference response) or null, got {type(label).__name__}"
        elif not query.startswith(prompt):
            problem = f"query[{i}] does not start with prompts[{i}]: OpenRLHF sends query = prompt + response"
        if problem is not None:
            items.errors[i] = problem
            items.prompts.append(None)
            items.responses.append(None)
            items.labels.append(None)
            continue
        items.prompts.append(prompt)
        items.responses.append(query[len(prompt):])
        items.labels.append(label or None)
    return items
