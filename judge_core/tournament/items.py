"""Load and check tournament items: one writer model's response to one prompt per JSON line.

A line is `{"prompt_id", "model", "response"}` plus the instruction as `instruction` or `prompt`.
`iteration` (an int: which of several generations) is read when present; the dev data's other
fields (`prompt_title`, `item_score`, `judge_scores`) are known and ignored. Any other field is
ignored too, with one note naming it. Bad lines are skipped and counted, never fatal: the run goes
on with what is valid, and `ItemSet.warnings` says what was dropped and why.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

REQUIRED_FIELDS = ("prompt_id", "model", "response")
INSTRUCTION_FIELDS = ("instruction", "prompt")  # first one present wins
KNOWN_EXTRA_FIELDS = frozenset({"iteration", "prompt_title", "item_score", "judge_scores"})
PER_PROMPT_POLICIES = ("first", "sample")
_MAX_LINES_NAMED = 5  # how many bad line numbers a warning lists before it says "..."


class ItemsError(ValueError):
    """The items cannot make a tournament (no valid line, fewer than two writers, ...)."""


@dataclass(frozen=True)
class Response:
    """One writer's text for one prompt. `iteration` orders several generations (None: file order)."""

    text: str
    iteration: int | None
    line: int


@dataclass
class ItemSet:
    """Valid items grouped for tournaments.

    prompt_ids:   prompt ids in order of first appearance in the file.
    instructions: prompt_id -> instruction text.
    writers:      writer model names, sorted.
    responses:    (prompt_id, writer) -> responses, ordered by (iteration, line). "first" keeps the head.
    warnings:     one line per problem found while loading (already worded for a user).
    """

    prompt_ids: list[str]
    instructions: dict[str, str]
    writers: list[str]
    responses: dict[tuple[str, str], list[Response]]
    warnings: list[str] = field(default_factory=list)
    source: str = ""

    def has(self, prompt_id: str, writer: str) -> bool:
        return (prompt_id, writer) in self.responses

    def writers_for(self, prompt_id: str) -> list[str]:
        return [w for w in self.writers if (prompt_id, w) in self.responses]

    def summary(self) -> dict:
        counts = Counter(len(v) for v in self.responses.values())
        return {
            "source": self.source,
            "prompts": len(self.prompt_ids),
            "writers": len(self.writers),
            "responses": sum(len(v) for v in self.responses.values()),
            "responses_per_writer_prompt": {str(k): v for k, v in sorted(counts.items())},
            "missing_writer_prompt": sum(1 for p in self.prompt_ids for w in self.writers if not self.has(p, w)),
            "warnings": list(self.warnings),
        }


def _open_text(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def _lines_named(lines: list[int]) -> str:
    head = ", ".join(str(n) for n in lines[:_MAX_LINES_NAMED])
    return head + (", ..." if len(lines) > _MAX_LINES_NAMED else "")


def read_records(path: str | Path) -> tuple[list[tuple[int, dict]], list[str]]:
    """(line number, dict) for every line that parses as a JSON object; warnings for the rest."""
    path = Path(path)
    if not path.exists():
        raise ItemsError(f"items file not found: {str(path)!r}")
    records, bad_json, not_object = [], [], []
    with _open_text(path) as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                bad_json.append(number)
                continue
            if not isinstance(obj, dict):
                not_object.append(number)
                continue
            records.append((number, obj))
    warnings = []
    if bad_json:
        warnings.append(f"skipped {len(bad_json)} line(s) that are not valid JSON (line {_lines_named(bad_json)})")
    if not_object:
        warnings.append(f"skipped {len(not_object)} line(s) that are not JSON objects (line {_lines_named(not_object)})")
    return records, warnings


def build_item_set(records: list[tuple[int, dict]], *, max_chars: int | None = None,
                   max_prompts: int | None = None, source: str = "",
                   warnings: list[str] | None = None) -> ItemSet:
    """Validate records and group them. Raises ItemsError only when no tournament is possible.

    max_chars:   truncate every response to this many characters (None: keep whole). Truncation
                 happens before duplicate detection, so two texts equal in their first N characters
                 become duplicates.
    max_prompts: keep only the first K prompt ids in order of first appearance.
    """
    if max_chars is not None and max_chars < 1:
        raise ItemsError(f"max_chars must be >= 1, got {max_chars}")
    if max_prompts is not None and max_prompts < 1:
        raise ItemsError(f"max_prompts must be >= 1, got {max_prompts}")
    warnings = list(warnings or [])
    missing: dict[str, list[int]] = defaultdict(list)
    bad_type: dict[str, list[int]] = defaultdict(list)
    unknown: Counter = Counter()
    empty, duplicates, instruction_conflicts = [], [], []
    prompt_ids: list[str] = []
    instructions: dict[str, str] = {}
    grouped: dict[tuple[str, str], list[Response]] = defaultdict(list)
    seen: set[tuple[str, str, str]] = set()

    for number, rec in records:
        unknown.update(k for k in rec if k not in REQUIRED_FIELDS and k not in INSTRUCTION_FIELDS
                       and k not in KNOWN_EXTRA_FIELDS)
        instruction_field = next((k for k in INSTRUCTION_FIELDS if k in rec), None)
        absent = [k for k in REQUIRED_FIELDS if k not in rec or rec[k] is None]
        if instruction_field is None or rec[instruction_field] is None:
            absent.append("instruction|prompt")
        if absent:
            missing[", ".join(absent)].append(number)
            continue
        prompt_id, model = rec["prompt_id"], rec["model"]
        response, instruction = rec["response"], rec[instruction_field]
        if isinstance(prompt_id, (int, float)) and not isinstance(prompt_id, bool):
            prompt_id = str(prompt_id)  # "9" and 9 name the same prompt
        wrong = [name for name, value in (("prompt_id", prompt_id), ("model", model), ("response", response),
                                          (instruction_field, instruction)) if not isinstance(value, str)]
        iteration = rec.get("iteration")
        if iteration is not None and (isinstance(iteration, bool) or not isinstance(iteration, int)):
            wrong.append("iteration")
        if wrong:
            bad_type[", ".join(wrong)].append(number)
            continue
        if not response.strip() or not model.strip() or not prompt_id.strip():
            empty.append(number)
            continue
        if max_chars is not None:
            response = response[:max_chars]
        if prompt_id not in instructions:
            if max_prompts is not None and len(prompt_ids) >= max_prompts:
                continue
            prompt_ids.append(prompt_id)
            instructions[prompt_id] = instruction
        elif instructions[prompt_id] != instruction:
            instruction_conflicts.append(number)
        dedupe_key = (prompt_id, model, response)
        if dedupe_key in seen:
            duplicates.append(number)
            continue
        seen.add(dedupe_key)
        grouped[(prompt_id, model)].append(Response(response, iteration, number))

    for fields_absent, lines in missing.items():
        warnings.append(f"skipped {len(lines)} line(s) missing field(s) {fields_absent} (line {_lines_named(lines)})")
    for fields_wrong, lines in bad_type.items():
        warnings.append(f"skipped {len(lines)} line(s) where {fields_wrong} has the wrong type "
                        f"(strings expected; iteration an int) (line {_lines_named(lines)})")
    if empty:
        warnings.append(f"skipped {len(empty)} line(s) with an empty response, model or prompt_id "
                        f"(line {_lines_named(empty)})")
    if duplicates:
        warnings.append(f"dropped {len(duplicates)} duplicate line(s): same prompt_id, model and response "
                        f"text as an earlier line (line {_lines_named(duplicates)})")
    if instruction_conflicts:
        warnings.append(f"{len(instruction_conflicts)} line(s) give a different instruction for a prompt_id "
                        f"seen before; the first instruction is used (line {_lines_named(instruction_conflicts)})")
    if unknown:
        warnings.append("ignored unknown field(s): " + ", ".join(f"{k} ({n}x)" for k, n in sorted(unknown.items())))

    if not grouped:
        raise ItemsError(f"no valid item in {source or 'the input'}; each line needs prompt_id, model, response "
                         f"and instruction (or prompt). " + " ".join(warnings))
    for responses in grouped.values():  # "first" = lowest iteration; lines without one keep file order after
        responses.sort(key=lambda r: (r.iteration is None, r.iteration or 0, r.line))
    writers = sorted({model for _, model in grouped})
    if len(writers) < 2:
        raise ItemsError(f"a tournament needs at least 2 writer models; {source or 'the input'} has "
                         f"{len(writers)}: {writers}")
    for prompt_id in prompt_ids:
        absent_writers = [w for w in writers if (prompt_id, w) not in grouped]
        if absent_writers:
            shown = ", ".join(absent_writers[:_MAX_LINES_NAMED]) + (", ..." if len(absent_writers) > _MAX_LINES_NAMED else "")
            warnings.append(f"prompt {prompt_id!r}: no response from {len(absent_writers)} writer(s) ({shown}); "
                            f"they sit out that prompt")
    several = sum(1 for v in grouped.values() if len(v) > 1)
    if several:
        warnings.append(f"{several} (prompt, writer) cell(s) hold several responses; see --per-prompt "
                        f"(first: the lowest iteration plays; sample: one drawn per game)")
    return ItemSet(prompt_ids=prompt_ids, instructions=instructions, writers=writers,
                   responses=dict(grouped), warnings=warnings, source=source)


def load_items(path: str | Path, *, max_chars: int | None = None, max_prompts: int | None = None) -> ItemSet:
    """Read a .jsonl or .jsonl.gz file of items (see the module docstring) into an ItemSet."""
    records, warnings = read_records(path)
    return build_item_set(records, max_chars=max_chars, max_prompts=max_prompts, source=str(path),
                          warnings=warnings)
