"""A judge spec: everything that makes a logit judge what it is, as data, checked before any model loads.

A logit judge renders its inputs into chat messages, lets the checkpoint's chat template make the prompt,
optionally forces the start of the assistant turn, and reads the next-token logits of a few label tokens at
the last position. The spec holds each of those choices:

    kind        pairwise (two responses, A/B), reference_pairwise (a response against a reference, A/B),
                pointwise (one response, a score)
    messages    role + content with named slots ({instruction}, {response}, {response_a}, ...), or role +
                a JSON object whose values are slot names (the card's user message)
    labels      the label tokens and their values (A/B; 1..5; yes/no); each must be one token in context
    readout     softmax over the labels, or full-vocabulary probabilities (candidate mass reported)
    aggregate   p_first (P of the first label), expected (probability-weighted value), argmax
    swap        pairwise kinds: also run the swapped order and average (the card's dual pass)
    fidelity    exact, or forced: a judge trained to write a rationale first, read here without it

The data a spec file holds is the same dict `JudgeSpec.to_dict()` writes: JSON or TOML (see `load_spec`).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

KINDS = ("pairwise", "reference_pairwise", "pointwise")
SLOTS = ("instruction", "response", "response_a", "response_b", "reference", "criterion", "rubric")
# The slots each kind fills from its inputs, and the ones its messages must use.
KIND_SLOTS = {
    "pairwise": {"allowed": {"instruction", "response_a", "response_b", "criterion", "rubric"},
                 "required": {"response_a", "response_b"}},
    "reference_pairwise": {"allowed": {"instruction", "response_a", "response_b", "criterion", "rubric"},
                           "required": {"response_a", "response_b"}},
    "pointwise": {"allowed": {"instruction", "response", "reference", "criterion", "rubric"},
                  "required": {"response"}},
}
ROLES = ("system", "user", "assistant")
READOUTS = ("softmax", "full")
AGGREGATES = ("p_first", "expected", "argmax")
FIDELITIES = ("exact", "forced")
_SLOT_RE = re.compile(r"\{(" + "|".join(SLOTS) + r")\}")


class SpecError(ValueError):
    """A spec that cannot be used; the message names the key (e.g. `labels[3]`) and the bad value."""


@dataclass(frozen=True)
class Message:
    """One chat message: `content` with {slot} placeholders, or `json` (key -> slot name, in order)."""

    role: str
    content: str | None = None
    json: tuple[tuple[str, str], ...] | None = None

    def slots(self) -> set[str]:
        if self.json is not None:
            return {slot for _, slot in self.json}
        return set(_SLOT_RE.findall(self.content or ""))

    def render(self, values: Mapping[str, str], *, ascii_json: bool) -> dict:
        """{"role", "content"} with every slot filled in one pass (text inside a value is never re-read)."""
        if self.json is not None:
            content = json.dumps({key: values[slot] for key, slot in self.json}, ensure_ascii=ascii_json)
        else:
            content = _SLOT_RE.sub(lambda m: values[m.group(1)], self.content or "")
        return {"role": self.role, "content": content}

    def to_dict(self) -> dict:
        if self.json is not None:
            return {"role": self.role, "json": dict(self.json)}
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True)
class Label:
    text: str
    value: float


@dataclass(frozen=True)
class JudgeSpec:
    name: str
    kind: str
    messages: tuple[Message, ...]
    labels: tuple[Label, ...]
    assistant_prefix: str = ""
    chat_template_kwargs: tuple[tuple[str, Any], ...] = ()
    readout: str = "softmax"
    aggregate: str = "p_first"
    swap: bool = True
    fidelity: str = "exact"
    rationale_first: bool = False
    description: str = field(default="", compare=False)

    # -- derived -------------------------------------------------------------------------------
    @property
    def pairwise(self) -> bool:
        return self.kind in ("pairwise", "reference_pairwise")

    @property
    def label_texts(self) -> tuple[str, ...]:
        return tuple(label.text for label in self.labels)

    @property
    def label_values(self) -> tuple[float, ...]:
        return tuple(label.value for label in self.labels)

    @property
    def passes(self) -> int:
        """Prompts per item: 2 for a pairwise kind with swap, else 1."""
        return 2 if self.pairwise and self.swap else 1

    def template_kwargs(self) -> dict:
        return dict(self.chat_template_kwargs)

    def to_dict(self) -> dict:
        """The spec as the plain dict a spec file holds (round-trips through `spec_from_dict`)."""
        out = {"name": self.name, "kind": self.kind, "messages": [m.to_dict() for m in self.messages],
               "labels": [{"text": lb.text, "value": lb.value} for lb in self.labels],
               "assistant_prefix": self.assistant_prefix, "chat_template_kwargs": dict(self.chat_template_kwargs),
               "readout": self.readout, "aggregate": self.aggregate, "swap": self.swap, "fidelity": self.fidelity,
               "rationale_first": self.rationale_first}
        if self.description:
            out["description"] = self.description
        return out

    @property
    def hash(self) -> str:
        """12 hex digits over everything that changes a number (the description does not)."""
        body = {k: v for k, v in self.to_dict().items() if k not in ("description", "name")}
        canonical = json.dumps(body, sort_keys=True, ensure_ascii=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def spec_from_dict(data: Mapping[str, Any], *, where: str = "spec") -> JudgeSpec:
    """A validated JudgeSpec from a plain dict (a parsed JSON/TOML file); SpecError names the bad key."""
    if not isinstance(data, Mapping):
        raise SpecError(f"{where}: a spec is a table/object, got {type(data).__name__}")
    known = {"name", "kind", "messages", "labels", "assistant_prefix", "chat_template_kwargs", "readout",
             "aggregate", "swap", "fidelity", "rationale_first", "description"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise SpecError(f"{where}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                        f"(known: {', '.join(sorted(known))})")
    for key in ("name", "kind", "messages", "labels"):
        if key not in data:
            raise SpecError(f"{where}: missing key `{key}`")
    name = _str(data["name"], f"{where}.name")
    where = f"spec {name!r}"
    kind = _choice(data["kind"], KINDS, f"{where}: kind")
    messages = tuple(_message(m, f"{where}: messages[{i}]") for i, m in enumerate(_list(data["messages"],
                                                                                          f"{where}: messages")))
    labels = tuple(_label(lb, f"{where}: labels[{i}]") for i, lb in enumerate(_list(data["labels"],
                                                                                     f"{where}: labels")))
    kwargs = data.get("chat_template_kwargs") or {}
    if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
        raise SpecError(f"{where}: chat_template_kwargs must be a table with string keys, got {kwargs!r}")
    reserved = {"messages", "tokenize", "add_generation_prompt"} & set(kwargs)
    if reserved:
        raise SpecError(f"{where}: chat_template_kwargs may not set {sorted(reserved)}: the judge sets them")
    spec = JudgeSpec(
        name=name, kind=kind, messages=messages, labels=labels,
        assistant_prefix=_str(data.get("assistant_prefix", ""), f"{where}: assistant_prefix", empty_ok=True),
        chat_template_kwargs=tuple(sorted(kwargs.items())),
        readout=_choice(data.get("readout", "softmax"), READOUTS, f"{where}: readout"),
        aggregate=_choice(data.get("aggregate", "p_first"), AGGREGATES, f"{where}: aggregate"),
        swap=_bool(data.get("swap", True), f"{where}: swap"),
        fidelity=_choice(data.get("fidelity", "exact"), FIDELITIES, f"{where}: fidelity"),
        rationale_first=_bool(data.get("rationale_first", False), f"{where}: rationale_first"),
        description=_str(data.get("description", ""), f"{where}: description", empty_ok=True))
    check_spec(spec)
    return spec


def check_spec(spec: JudgeSpec) -> JudgeSpec:
    """The rules that tie keys together (slots per kind, labels per kind, rationale judges)."""
    where = f"spec {spec.name!r}"
    if not spec.messages:
        raise SpecError(f"{where}: messages is empty: a judge needs at least one message")
    if spec.messages[-1].role == "assistant":
        raise SpecError(f"{where}: messages[{len(spec.messages) - 1}] is an assistant message: the judge reads the "
                        "next token after the generation prompt; put a forced answer start in `assistant_prefix`")
    rules = KIND_SLOTS[spec.kind]
    used: set[str] = set()
    for i, message in enumerate(spec.messages):
        slots = message.slots()
        bad = sorted(slots - rules["allowed"])
        if bad:
            raise SpecError(f"{where}: messages[{i}] uses slot{'s' if len(bad) > 1 else ''} "
                            f"{', '.join('{' + s + '}' for s in bad)}, which kind {spec.kind!r} does not fill "
                            f"(it fills {', '.join(sorted(rules['allowed']))})")
        used |= slots
    missing = sorted(rules["required"] - used)
    if missing:
        raise SpecError(f"{where}: no message uses slot{'s' if len(missing) > 1 else ''} "
                        f"{', '.join('{' + s + '}' for s in missing)}, which kind {spec.kind!r} needs")
    if len(spec.labels) < 2:
        raise SpecError(f"{where}: labels has {len(spec.labels)} entr{'y' if len(spec.labels) == 1 else 'ies'}: "
                        "a judge reads at least two label tokens")
    texts = [label.text for label in spec.labels]
    dupes = sorted({t for t in texts if texts.count(t) > 1})
    if dupes:
        raise SpecError(f"{where}: labels repeat {dupes}")
    if spec.pairwise:
        if len(spec.labels) != 2:
            raise SpecError(f"{where}: labels: kind {spec.kind!r} reads exactly two labels (first = response A "
                            f"better), got {len(spec.labels)}")
        if spec.aggregate != "p_first":
            raise SpecError(f"{where}: aggregate {spec.aggregate!r}: a pairwise kind reports P(first label) "
                            "('p_first')")
        if spec.readout != "softmax":
            raise SpecError(f"{where}: readout {spec.readout!r}: a pairwise kind reads the softmax over its two "
                            "labels ('softmax')")
    if spec.rationale_first:
        if not spec.assistant_prefix:
            raise SpecError(
                f"{where}: rationale_first: this judge writes a rationale before its score, so the token after the "
                "prompt is the start of a rationale, not a score: it cannot be read faithfully at the end of the "
                "prompt. Set `assistant_prefix` to force the answer slot (e.g. \"[RESULT] \"); every row is then "
                "labelled fidelity 'forced'")
        if spec.fidelity != "forced":
            raise SpecError(f"{where}: fidelity {spec.fidelity!r}: a rationale-first judge read through a forced "
                            "answer slot is 'forced', never 'exact'")
    return spec


# -- field parsers: each error names its key ----------------------------------------------------------
def _str(value, key: str, *, empty_ok: bool = False) -> str:
    if not isinstance(value, str) or (not value and not empty_ok):
        raise SpecError(f"{key} must be a{'' if empty_ok else ' non-empty'} string, got {value!r}")
    return value


def _bool(value, key: str) -> bool:
    if not isinstance(value, bool):
        raise SpecError(f"{key} must be true or false, got {value!r}")
    return value


def _choice(value, choices: tuple[str, ...], key: str) -> str:
    if value not in choices:
        raise SpecError(f"{key} {value!r} is not one of {', '.join(choices)}")
    return value


def _list(value, key: str) -> list:
    if not isinstance(value, (list, tuple)):
        raise SpecError(f"{key} must be a list, got {type(value).__name__}")
    return list(value)


def _message(value, key: str) -> Message:
    if not isinstance(value, Mapping):
        raise SpecError(f"{key} must be a table with `role` and `content` (or `json`), got {value!r}")
    extra = sorted(set(value) - {"role", "content", "json"})
    if extra:
        raise SpecError(f"{key}: unknown key{'s' if len(extra) > 1 else ''} {', '.join(extra)}")
    role = _choice(value.get("role"), ROLES, f"{key}.role")
    has_content, has_json = "content" in value, "json" in value
    if has_content == has_json:
        raise SpecError(f"{key} needs exactly one of `content` (text with {{slot}} placeholders) or `json` "
                        "(key -> slot name)")
    if has_content:
        return Message(role, content=_str(value["content"], f"{key}.content"))
    table = value["json"]
    if not isinstance(table, Mapping) or not table:
        raise SpecError(f"{key}.json must be a non-empty table of key -> slot name, got {table!r}")
    for k, slot in table.items():
        if slot not in SLOTS:
            raise SpecError(f"{key}.json.{k}: {slot!r} is not a slot (slots: {', '.join(SLOTS)})")
    return Message(role, json=tuple((str(k), str(v)) for k, v in table.items()))


def _label(value, key: str) -> Label:
    if isinstance(value, str):  # shorthand: the label's value is its position
        raise SpecError(f"{key} must be a table {{text, value}}, got the string {value!r}")
    if not isinstance(value, Mapping) or set(value) != {"text", "value"}:
        raise SpecError(f"{key} must be a table with exactly `text` and `value`, got {value!r}")
    text = _str(value["text"], f"{key}.text")
    number = value["value"]
    if isinstance(number, bool) or not isinstance(number, (int, float)) or number != number:
        raise SpecError(f"{key}.value must be a number, got {number!r}")
    return Label(text, float(number))
