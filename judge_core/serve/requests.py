"""Request bodies -> validated inputs, or a RequestError naming the field and the limit.

Structure errors (not JSON, a missing list, a group that is not a group) fail the request: 400 for
a body that is not JSON, 422 for a field, 413 for a body over the size limit. A pair whose own fields
are wrong is NOT a request error on /v1/compare: it gets an error entry beside the good ones.
"""

from __future__ import annotations

import json
from typing import Any

from .limits import ServeLimits
from .rewards import RewardGroup, count_matchups


class RequestError(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def parse_body(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RequestError(400, f"request body is not valid JSON: {e}") from None


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


def openrlhf_items(data: Any, limits: ServeLimits) -> tuple[list[str], list[str], list[str | None]]:
    """/get_reward: (queries, prompts, labels) of equal length; labels default to no reference."""
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
    for i in range(len(queries)):
        _string(queries[i], f"query[{i}]")
        _string(prompts[i], f"prompts[{i}]")
        if labels[i] is not None:
            _string(labels[i], f"labels[{i}]")
        if not queries[i].startswith(prompts[i]):
            raise RequestError(422, f"query[{i}] does not start with prompts[{i}]: OpenRLHF sends "
                                    f"query = prompt + response")
    return queries, prompts, [label or None for label in labels]
