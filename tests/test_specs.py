"""Judge specs: validation before anything loads (each error names its key), rendering, labels in context."""

from __future__ import annotations

import json
import math

import pytest

from judge_core.specs import BUILTIN, SpecError, load_spec
from judge_core.specs.items import ItemError, normalize_item, pass_slots
from judge_core.specs.readout import point_score
from judge_core.specs.render import label_token_ids, render_spec_prompt


@pytest.fixture(scope="module")
def tokenizer(tiny_text_ckpt):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_text_ckpt))


def _rubric(**changes) -> dict:
    return {**json.loads(json.dumps(BUILTIN["pointwise-rubric"])), "name": "mine", **changes}


@pytest.mark.parametrize("changes, key", [
    ({"kind": "listwise"}, "kind 'listwise'"),
    ({"messages": [{"role": "user", "content": "Rate {instruction}"}]}, "slot {response}"),
    ({"messages": [{"role": "user", "content": "Rate {response} against {response_b}"}]}, "slot {response_b}"),
    ({"messages": [{"role": "user", "json": {"r": "answer"}}]}, "messages[0].json.r"),
    ({"messages": [{"role": "critic", "content": "{response}"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": "{response}", "json": {"r": "response"}}]}, "messages[0] needs exactly one"),
    ({"labels": [{"text": "1", "value": 1}]}, "labels has 1 entry"),
    ({"labels": [{"text": "1", "value": "one"}, {"text": "2", "value": 2}]}, "labels[0].value"),
    ({"labels": [{"text": "1", "value": 1}, {"text": "1", "value": 2}]}, "labels repeat"),
    ({"readout": "logits"}, "readout 'logits'"),
    ({"aggregate": "mean"}, "aggregate 'mean'"),
    ({"swap": "yes"}, "swap must be true or false"),
    ({"rationale_first": True}, "cannot be read faithfully"),
    ({"rationale_first": True, "assistant_prefix": "[RESULT] "}, "fidelity 'exact'"),
    ({"temperature": 0}, "unknown key temperature"),
    ({"chat_template_kwargs": {"add_generation_prompt": False}}, "may not set"),
])
def test_bad_specs_fail_naming_the_key(changes, key):
    with pytest.raises(SpecError) as info:
        load_spec(_rubric(**changes))
    print(info.value)
    assert key in str(info.value)


def test_pairwise_rules_and_missing_keys():
    card = json.loads(json.dumps(BUILTIN["creative-writing"]))
    with pytest.raises(SpecError, match="reads exactly two labels"):
        load_spec({**card, "labels": card["labels"] + [{"text": "C", "value": 0.5}]})
    with pytest.raises(SpecError, match="aggregate 'expected'"):
        load_spec({**card, "aggregate": "expected"})
    with pytest.raises(SpecError, match="missing key `labels`"):
        load_spec({k: v for k, v in card.items() if k != "labels"})
    with pytest.raises(SpecError, match="unknown spec 'no-such-judge'"):
        load_spec("no-such-judge")


def test_spec_files_json_and_toml(tmp_path):
    spec = load_spec("yes-no-criterion")
    as_json = tmp_path / "judge.json"
    as_json.write_text(json.dumps(spec.to_dict()))
    assert load_spec(str(as_json)) == spec and load_spec(as_json).hash == spec.hash
    as_toml = tmp_path / "judge.toml"
    as_toml.write_text('name = "yn"\nkind = "pointwise"\n'
                       '[[messages]]\nrole = "user"\ncontent = "Is {response} polite?"\n'
                       '[[labels]]\ntext = "yes"\nvalue = 1\n[[labels]]\ntext = "no"\nvalue = 0\n')
    loaded = load_spec(as_toml)
    assert loaded.kind == "pointwise" and loaded.label_texts == ("yes", "no") and loaded.readout == "softmax"
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(SpecError, match=r"broken.json: not valid JSON"):
        load_spec(tmp_path / "broken.json")


def test_hash_ignores_name_and_description_but_not_numbers():
    spec = load_spec("pointwise-rubric")
    assert load_spec(_rubric(description="other words")).hash == spec.hash
    assert load_spec(_rubric(aggregate="argmax")).hash != spec.hash


def test_default_spec_renders_the_card_prompt_exactly(tokenizer):
    from judge_core.prompts import render_prompt

    spec = load_spec()
    item = ("Write a poem about “rain”", "Soft rain — on tin.", "Rain. Wet. {response_b}")
    passes = pass_slots(spec, normalize_item(spec, item))
    for ascii_json in (True, False):
        got = [render_spec_prompt(tokenizer, spec, p, ascii_json=ascii_json) for p in passes]
        want = [render_prompt(tokenizer, *shown, ascii_json=ascii_json)
                for shown in (item, (item[0], item[2], item[1]))]
        assert got == want
    # "A" and "B" read in context are the tokens "A" and "B" on their own, as the card reads them.
    assert label_token_ids(tokenizer, spec) == [tokenizer.convert_tokens_to_ids(t) for t in ("A", "B")] == [32, 33]


def test_slot_text_is_never_read_as_a_slot(tokenizer):
    spec = load_spec("pointwise-rubric")
    text = render_spec_prompt(tokenizer, spec, {"instruction": "say {rubric}", "response": "{instruction}",
                                                "rubric": "R"})
    assert "say {rubric}" in text and "Response:\n{instruction}" in text


def test_every_builtin_labels_are_single_tokens_in_context(tokenizer, tiny_qwen3_ckpt):
    from transformers import AutoTokenizer

    qwen3 = AutoTokenizer.from_pretrained(str(tiny_qwen3_ckpt))
    for name in BUILTIN:
        spec = load_spec(name)
        for tok in (tokenizer, qwen3):
            ids = label_token_ids(tok, spec)
            assert len(ids) == len(spec.labels)
            assert [tok.decode([i]) for i in ids] == list(spec.label_texts), name


def test_multi_token_label_is_refused_with_a_suggestion(tokenizer):
    spec = load_spec(_rubric(labels=[{"text": str(v), "value": v} for v in range(1, 11)]))
    with pytest.raises(SpecError, match=r"labels\[9\] '10' is not one token.*single digits"):
        label_token_ids(tokenizer, spec)


def test_forced_prefix_ends_the_prompt(tokenizer):
    spec = load_spec("pollux-4b-criterion")
    assert spec.fidelity == "forced"
    text = render_spec_prompt(tokenizer, spec, {"instruction": "i", "response": "r", "criterion": "c", "rubric": "0-2"})
    assert text.endswith("</think>\n\nScore: ")


def test_items_per_kind():
    card, ref, point = load_spec(), load_spec("reference-pairwise"), load_spec("yes-no-criterion")
    assert pass_slots(ref, normalize_item(ref, {"instruction": "i", "response": "r", "reference": "gold"})) == [
        {"instruction": "i", "response_a": "r", "response_b": "gold"},
        {"instruction": "i", "response_a": "gold", "response_b": "r"}]
    with pytest.raises(ItemError, match="'criterion'"):
        normalize_item(point, {"instruction": "i", "response": "r"})
    with pytest.raises(ItemError, match="needs criterion"):
        normalize_item(point, ("i", "r"))
    with pytest.raises(ItemError, match="response_2 must be a string, got int"):
        normalize_item(card, ("i", "r", 3))
    assert len(pass_slots(point, normalize_item(point, {"instruction": "i", "response": "r", "criterion": "c"}))) == 1


def test_readout_arithmetic():
    rubric, yes_no = load_spec("pointwise-rubric"), load_spec("yes-no-criterion")
    logprobs = [math.log(p) for p in (0.1, 0.1, 0.2, 0.3, 0.1)]      # full readout: 0.8 of the mass
    got = point_score(rubric, logprobs)
    assert got.mass == pytest.approx(0.8)
    assert got.score == pytest.approx((0.1 + 0.2 + 0.6 + 1.2 + 0.5) / 0.8)
    argmax = point_score(load_spec(_rubric(aggregate="argmax")), logprobs)
    assert argmax.score == 4.0
    soft = point_score(yes_no, [2.0, 0.0])
    assert soft.mass is None and soft.score == pytest.approx(1 / (1 + math.exp(-2.0)))
    assert point_score(yes_no, [-1e9, -1e9]).score == pytest.approx(0.5)
