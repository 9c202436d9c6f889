"""Loading tournament items: field names, bad lines, duplicates, missing writers, .gz, truncation."""

from __future__ import annotations

import gzip
import json

import pytest

from judge_core.tournament import ItemsError, load_items


def _write(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(row if isinstance(row, str) else json.dumps(row))
            f.write("\n")
    return path


def _row(prompt_id, model, response, **extra):
    return {"prompt_id": prompt_id, "model": model, "response": response, **extra}


def test_dev_data_field_names_and_instruction_alias(tmp_path):
    rows = [
        _row("1", "m1", "one", prompt="Write one.", iteration=2, prompt_title="t", item_score=50.0, judge_scores={}),
        _row("1", "m1", "uno", prompt="Write one.", iteration=1),
        _row(1, "m2", "two", prompt="Write one."),  # an int prompt_id names the same prompt
        _row("2", "m1", "three", instruction="Write two."),
        _row("2", "m2", "four", instruction="Write two."),
    ]
    items = load_items(_write(tmp_path / "items.jsonl", rows))
    assert items.prompt_ids == ["1", "2"] and items.writers == ["m1", "m2"]
    assert items.instructions == {"1": "Write one.", "2": "Write two."}
    assert [r.text for r in items.responses[("1", "m1")]] == ["uno", "one"]  # lowest iteration first
    assert not any("ignored unknown" in w for w in items.warnings)  # the dev data's extra fields are known
    assert any("several responses" in w for w in items.warnings)


def test_bad_lines_are_skipped_with_clear_warnings(tmp_path):
    rows = [
        _row("1", "m1", "a", prompt="P1"),
        _row("1", "m2", "b", prompt="P1", colour="blue"),  # unknown field: ignored, noted
        "{not json",
        "[1, 2]",
        {"prompt_id": "1", "model": "m3"},  # no response, no instruction
        _row("1", "m3", 5, prompt="P1"),  # response not a string
        _row("1", "m3", "   ", prompt="P1"),  # empty response
        _row("1", "m2", "b", prompt="P1"),  # exact duplicate of line 2
        _row("1", "m3", "c", prompt="another instruction"),  # conflicting instruction: first kept
        _row("2", "m1", "d", prompt="P2"),
    ]
    items = load_items(_write(tmp_path / "items.jsonl", rows))
    text = "\n".join(items.warnings)
    print(text)
    assert "1 line(s) that are not valid JSON (line 3)" in text
    assert "not JSON objects (line 4)" in text
    assert "missing field(s) response, instruction|prompt (line 5)" in text
    assert "response has the wrong type" in text and "(line 6)" in text
    assert "empty response" in text and "(line 7)" in text
    assert "1 duplicate line(s)" in text and "(line 8)" in text
    assert "different instruction" in text and "(line 9)" in text
    assert "ignored unknown field(s): colour (1x)" in text
    assert "prompt '2': no response from 2 writer(s) (m2, m3)" in text
    assert items.writers == ["m1", "m2", "m3"]
    assert items.instructions["1"] == "P1"
    assert items.summary()["missing_writer_prompt"] == 2


def test_single_writer_and_empty_input_are_errors(tmp_path):
    one = _write(tmp_path / "one.jsonl", [_row("1", "solo", "a", prompt="P"), _row("2", "solo", "b", prompt="Q")])
    with pytest.raises(ItemsError, match=r"at least 2 writer models.*\['solo'\]"):
        load_items(one)
    bad = _write(tmp_path / "bad.jsonl", ["{oops", {"model": "m"}])
    with pytest.raises(ItemsError, match="no valid item"):
        load_items(bad)
    with pytest.raises(ItemsError, match="not found"):
        load_items(tmp_path / "absent.jsonl")


def test_gzip_truncation_and_prompt_limit(tmp_path):
    rows = [_row(str(p), m, f"{m} answers prompt {p} at length", prompt=f"P{p}") for p in range(5) for m in "abc"]
    path = tmp_path / "items.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("\n".join(json.dumps(r) for r in rows) + "\n")
    items = load_items(path, max_chars=8, max_prompts=2)
    assert items.prompt_ids == ["0", "1"]
    assert items.responses[("1", "b")][0].text == "b answer"
    with pytest.raises(ItemsError, match="max_chars"):
        load_items(path, max_chars=0)
