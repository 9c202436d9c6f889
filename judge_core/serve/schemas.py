"""The request and response bodies as pydantic models: for /openapi.json and /docs only.

The routes read and check their bodies themselves (requests.py: off the event loop, with per-pair
and per-item errors instead of one 422 for the whole batch), so these models document the shapes
and are never used to parse a request.
"""

from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel, Field


class ComparePair(BaseModel):
    instruction: str
    response_1: str
    response_2: str
    id: Optional[Any] = Field(None, description="echoed in the result when given")


class CompareRequest(BaseModel):
    pairs: list[ComparePair] = Field(description="also accepted: [instruction, response_1, response_2] lists; "
                                                 "a malformed pair gets an error entry, not a failed request")


class PairResult(BaseModel):
    id: Optional[Any] = None
    p1: Optional[float] = Field(None, description="P(response_1 is better), percent, both passes averaged")
    p2: Optional[float] = None
    pass1: Optional[list[float]] = Field(None, description="(P(A), P(B)) with response_1 shown as A")
    pass2: Optional[list[float]] = Field(None, description="(P(A), P(B)) with response_2 shown as A")
    error: Optional[str] = Field(None, description="set instead of p1..pass2 when the pair cannot be judged")


class Usage(BaseModel):
    prompt_tokens: int


class CompareResponse(BaseModel):
    results: list[PairResult]
    usage: Usage


class RewardGroupIn(BaseModel):
    instruction: str
    responses: list[str] = Field(min_length=1)
    reference: Optional[str] = Field(None, description="with it: P(response beats reference); "
                                                       "without: round robin inside the group")


class RewardsRequest(BaseModel):
    groups: list[RewardGroupIn]


class RewardsResponse(BaseModel):
    rewards: list[list[Optional[float]]]
    errors: list[dict[str, Any]]
    usage: Usage


class OpenRLHFRequest(BaseModel):
    query: list[str] = Field(description="prompt + generated response, as OpenRLHF sends them")
    prompts: list[str]
    labels: Optional[list[Optional[str]]] = Field(None, description="a reference response per item, or null/''")


class ItemError(BaseModel):
    index: int
    error: str


class OpenRLHFResponse(BaseModel):
    rewards: list[float] = Field(description="0..1; an item that could not be scored gets 0.5 and judge_failed 1.0")
    scores: list[float]
    extra_logs: dict[str, list[float]]
    errors: list[ItemError] = Field(description="why each unscored item failed, in item order")


class ScoreItem(BaseModel):
    response: str
    instruction: Optional[str] = Field(None, description="else the request's `query`")
    criterion: Optional[str] = Field(None, description="the slots the served spec uses: criterion, rubric, reference")
    rubric: Optional[str] = None
    reference: Optional[str] = None
    id: Optional[Any] = Field(None, description="echoed in the item's result when given")


class ScoreRequest(BaseModel):
    """SGLang's /v1/score request, read by a pointwise spec judge (judge_core/serve/score_route.py)."""

    query: Optional[Any] = Field(None, description="the instruction (a string), or an object of slot values "
                                                   "shared by every item")
    items: list[Any] = Field(description="each a response string, or a ScoreItem; a bad item gets an error "
                                         "result, not a failed request")
    label_token_ids: Optional[list[int]] = Field(None, description="if given: the served spec's label token ids, "
                                                                   "in order (400 otherwise)")
    apply_softmax: bool = Field(False, description="true: probabilities over the labels; false: the label logits "
                                                   "(full-vocabulary log-probabilities for a `full` readout)")
    item_first: bool = Field(False, description="false only: the spec fixes the order (400 for true)")
    model: Optional[str] = None


class ScoreResult(BaseModel):
    id: Optional[Any] = None
    score: Optional[float] = Field(None, description="the spec's aggregate (expected value, argmax, P(first label))")
    probs: Optional[dict[str, float]] = Field(None, description="label -> probability (over the vocabulary for a "
                                                                "`full` readout, else over the labels)")
    mass: Optional[float] = Field(None, description="`full` readout: the labels' share of the next-token distribution")
    error: Optional[str] = None


class ScoreUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int = 0
    total_tokens: int


class ScoreResponse(BaseModel):
    object: str = "scoring"
    model: str
    scores: list[Optional[list[float]]] = Field(description="per item, one number per label in label order; null "
                                                            "for an item that could not be judged")
    results: list[ScoreResult]
    labels: list[str]
    label_values: list[float]
    label_token_ids: list[int]
    spec: str
    spec_hash: str
    fidelity: str = Field(description="exact, or forced (a rationale-first judge read at a forced answer slot)")
    usage: ScoreUsage


class ErrorBody(BaseModel):
    error: str


def request_body(model: type[BaseModel]) -> dict:
    """The `openapi_extra` of a route whose body is `model` (a component, see `component_schemas`)."""
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}}


REQUEST_MODELS = (CompareRequest, RewardsRequest, OpenRLHFRequest, ScoreRequest)


def component_schemas() -> dict:
    """JSON schemas of the request models and everything they refer to, keyed by model name."""
    from pydantic.json_schema import models_json_schema

    _, top = models_json_schema([(m, "validation") for m in REQUEST_MODELS],
                                ref_template="#/components/schemas/{model}")
    return top.get("$defs", {})


def error_responses(*statuses: int) -> dict:
    return {status: {"model": ErrorBody} for status in statuses}
