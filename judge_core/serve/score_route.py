"""POST /v1/score: a pointwise spec's verdicts, in SGLang's /v1/score request and response shape.

SGLang (and vLLM's generative scores) read "the probabilities of given label tokens after query + item".
A spec judge reads the same numbers through its own prompt, so SGLang's fields mean here:

    query            text of the spec's `instruction` slot, shared by every item; or an object of slot
                     values shared by every item ({"instruction", "criterion", "rubric", ...})
    items            a list (or one string) of items: a string fills the `response` slot; an object holds
                     slot values of its own ({"response", "criterion", ..., "id"}), over `query`'s
    label_token_ids  optional; if given, the served spec's label token ids in order (400 otherwise: the
                     spec fixes its labels, each checked to be one token in context)
    apply_softmax    true: each label's probability over the labels; false (SGLang's default): what the
                     model read per label, the label logits (readout softmax) or full-vocabulary
                     log-probabilities (readout full)
    item_first       false only (400 for true: a spec's messages fix where every slot goes)
    model            optional, any string; the answer names the served model

Answer: SGLang's {"object": "scoring", "model", "scores": [[one number per label] per item], "usage"}
plus judge_core's per-item `results` ({"score": the spec's aggregate, "probs", "mass" (full readout),
"id" when given}, or {"error"}), the spec's `labels`, `label_values`, `label_token_ids`, `spec`,
`spec_hash` and `fidelity` ("forced": a rationale-first judge read at a forced answer slot). An item that
cannot be judged (a missing slot, a lone surrogate, a prompt over the context) has `null` scores and an
`error` result; the request's other items are scored.

Statuses: 400 for what the served judge cannot do (a pairwise spec served, `item_first` true, other
`label_token_ids`, token-id input), 422 for a malformed field, as on every route.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..specs.items import EXTRA_FIELDS, KIND_FIELDS
from .limits import ServeLimits
from .requests import RequestError

FIELDS = ("query", "items", "label_token_ids", "apply_softmax", "item_first", "model")
ITEM_KEYS = frozenset({"id", *KIND_FIELDS["pointwise"], *EXTRA_FIELDS})


@dataclass
class ScoreRequest:
    """The parsed body: items[i] is the slot dict to judge, or None when errors[i] says why it cannot be."""

    items: list[dict | None]
    ids: list[Any]
    errors: dict[int, str] = field(default_factory=dict)
    apply_softmax: bool = False
    label_token_ids: list[int] | None = None

    def runnable(self) -> list[int]:
        return [i for i, item in enumerate(self.items) if item is not None]


def _bool(data: dict, name: str) -> bool:
    value = data.get(name, False)
    if not isinstance(value, bool):
        raise RequestError(422, f"field {name!r} must be true or false, got {value!r}")
    return value


def _shared_slots(query: Any) -> dict[str, str]:
    if query is None:
        return {}
    if isinstance(query, str):
        return {"instruction": query}
    if isinstance(query, list):
        raise RequestError(400, "field 'query': token ids are not accepted; a spec judge renders text through its "
                                "messages and the chat template: send the text")
    if not isinstance(query, dict):
        raise RequestError(422, f"field 'query' must be a string (the instruction) or an object of slot values, "
                                f"got {type(query).__name__}")
    unknown = sorted(set(query) - (ITEM_KEYS - {"id"}))
    if unknown:
        raise RequestError(422, f"field 'query' has unknown key{'s' if len(unknown) > 1 else ''} "
                                f"{', '.join(map(repr, unknown))} (slots: {', '.join(sorted(ITEM_KEYS - {'id'}))})")
    for key, value in query.items():
        if not isinstance(value, str):
            raise RequestError(422, f"field 'query.{key}' must be a string, got {type(value).__name__}")
    return dict(query)


def _item(raw: Any, shared: dict[str, str]) -> tuple[dict | None, Any, str | None]:
    """(slot values, id, None) or (None, id, why this item cannot be judged)."""
    if isinstance(raw, str):
        return {**shared, "response": raw}, None, None
    if isinstance(raw, dict):
        ident = raw.get("id")
        unknown = sorted(set(raw) - ITEM_KEYS)
        if unknown:
            return None, ident, (f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
                                 f"(slots: {', '.join(sorted(ITEM_KEYS - {'id'}))}, and id)")
        return {**shared, **{k: v for k, v in raw.items() if k != "id"}}, ident, None
    if isinstance(raw, list):
        return None, None, "token ids are not accepted: a spec judge renders text; send the response text"
    return None, None, f"an item is a string (the response) or an object of slot values, got {type(raw).__name__}"


def score_request(data: Any, limits: ServeLimits) -> ScoreRequest:
    """/v1/score's body -> ScoreRequest; RequestError for the request as a whole (module docstring)."""
    if not isinstance(data, dict):
        raise RequestError(422, f"request body must be a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise RequestError(422, f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
                                f"(fields: {', '.join(FIELDS)})")
    if _bool(data, "item_first"):
        raise RequestError(400, "field 'item_first': true is not supported: the served spec's messages fix where "
                                "the query (instruction) and each item (response) go")
    model = data.get("model")
    if model is not None and not isinstance(model, str):
        raise RequestError(422, f"field 'model' must be a string, got {type(model).__name__}")
    labels = data.get("label_token_ids")
    if labels is not None and (not isinstance(labels, list)
                               or not all(isinstance(t, int) and not isinstance(t, bool) for t in labels)):
        raise RequestError(422, f"field 'label_token_ids' must be a list of token ids (integers), got {labels!r}")
    if "items" not in data:
        raise RequestError(422, "missing field 'items' (a list of responses, or of objects of slot values)")
    raw_items = data["items"]
    if isinstance(raw_items, str):
        raw_items = [raw_items]  # SGLang takes one item as a bare string
    if not isinstance(raw_items, list):
        raise RequestError(422, f"field 'items' must be a list, got {type(raw_items).__name__}")
    if len(raw_items) > limits.max_pairs_per_request:
        raise RequestError(422, f"'items' holds {len(raw_items)} items; the limit is max_pairs_per_request="
                                f"{limits.max_pairs_per_request} items per request")
    shared = _shared_slots(data.get("query"))
    request = ScoreRequest(items=[], ids=[], apply_softmax=_bool(data, "apply_softmax"), label_token_ids=labels)
    for i, raw in enumerate(raw_items):
        slots, ident, problem = _item(raw, shared)
        request.items.append(slots)
        request.ids.append(ident)
        if problem is not None:
            request.errors[i] = problem
    return request


def check_labels(request: ScoreRequest, judge) -> None:
    """label_token_ids, when given, must be the served spec's (in order)."""
    if request.label_token_ids is None:
        return
    served = [int(t) for t in judge.label_ids]
    if request.label_token_ids != served:
        spec = judge.spec
        raise RequestError(400, f"field 'label_token_ids' {request.label_token_ids} is not the label token ids "
                                f"{served} of the served spec {spec.name!r} (labels {list(spec.label_texts)}, in "
                                "that order): a spec judge reads its own labels; omit the field or send these")


def _over_labels(spec, score) -> list[float]:
    """Each label's probability renormalised over the labels: the readout's own for softmax; for a full readout
    the softmax of its log-probabilities (stable where every label's full-vocabulary probability underflows)."""
    if spec.readout == "softmax":
        return list(score.probs)
    top = max(score.logits)
    weights = [math.exp(x - top) for x in score.logits]
    total = sum(weights)
    return [w / total for w in weights]


def score_body(request: ScoreRequest, scores: dict[int, Any], judge, model: str, prompt_tokens: int) -> dict:
    """The answer (module docstring); scores[i]: the PointScore of runnable item i."""
    spec = judge.spec
    rows, results = [], []
    for i, ident in enumerate(request.ids):
        result = {"id": ident} if ident is not None else {}
        score = scores.get(i)
        if score is None or not score.ok:
            rows.append(None)
            results.append({**result, "error": request.errors.get(i) if score is None else score.error})
            continue
        rows.append(_over_labels(spec, score) if request.apply_softmax else list(score.logits))
        results.append({**result, **score.to_dict(spec.label_texts)})
    return {"object": "scoring", "model": model, "scores": rows, "results": results,
            "labels": list(spec.label_texts), "label_values": list(spec.label_values),
            "label_token_ids": [int(t) for t in judge.label_ids], "spec": spec.name, "spec_hash": spec.hash,
            "fidelity": spec.fidelity,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 0, "total_tokens": prompt_tokens}}
