"""Every built-in judge spec through the engine against the slow reference (transformers' full-vocabulary
log-softmax at the last position of each pass, then the spec's arithmetic), fp32, tiny Qwen3.5 and Qwen3;
the default spec bit-identical to the card's path (render_prompt -> candidate logits -> combine_passes)."""

from __future__ import annotations

import math

import pytest

from judge_core import Judge
from judge_core.prompts import render_prompt
from judge_core.reference import ReferenceJudge
from judge_core.scoring import combine_passes
from judge_core.specs import BUILTIN, load_spec

TOL_PP = 1e-3        # pairwise: percentage points
TOL_SCORE = 1e-5     # pointwise: score units and probabilities

ITEMS = [
    {"instruction": "Write a haiku about rain.", "response": "Soft rain on tin roofs, the night hums.",
     "reference": "Rain. Wet.", "criterion": "Uses imagery", "rubric": "0: none; 1: some; 2: vivid"},
    {"instruction": "Describe a street in winter.", "response": "Snow muffles the trams; lamps blink awake.",
     "reference": "It is cold.", "criterion": "Is concise", "rubric": "1 worst - 5 best"},
    {"instruction": "Open a mystery.", "response": "The clock stopped at nine, and so did Mr. Hale.",
     "reference": "A body was found.", "criterion": "Creates suspense", "rubric": "0: flat; 2: gripping"},
]


def _items(spec):
    if spec.kind == "pairwise":
        return [(it["instruction"], it["response"], it["reference"]) for it in ITEMS]
    if spec.kind == "reference_pairwise":
        return [{k: it[k] for k in ("instruction", "response", "reference")} for it in ITEMS]
    return ITEMS


def _max_error(spec, got, want) -> float:
    if spec.pairwise:
        return max(abs(a.p1 - b.p1) for a, b in zip(got, want))
    return max(max([abs(a.score - b.score)] + [abs(x - y) for x, y in zip(a.probs, b.probs)] +
                   ([abs(a.mass - b.mass)] if a.mass is not None else [])) for a, b in zip(got, want))


@pytest.mark.slow  # 15 cases of ~10 s; the default spec's bit-identity below stays in the fast set
@pytest.mark.parametrize("layout, backend", [("text", "packed"), ("text", "hf"), ("qwen3", "hf")])
@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_builtin_spec_matches_the_slow_reference(tiny_ckpt_factory, layout, backend, name):
    path = tiny_ckpt_factory(layout)
    spec = load_spec(name)
    judge = Judge.from_pretrained(path, backend=backend, device="cpu", dtype="fp32", spec=name)
    reference = ReferenceJudge(judge.backend.model if backend == "hf" else
                               ReferenceJudge.from_pretrained(path).model, judge.tokenizer, spec=name)
    items = _items(spec)
    got = judge.compare_many(items) if spec.pairwise else judge.score_many(items)
    want = reference.judge_items(items)
    assert all(g.ok for g in got) and all(w.ok for w in want)
    error = _max_error(spec, got, want)
    print(f"\n[{name}, {layout}, {backend}] max error vs the full-vocabulary reference: {error:.3g}"
          f"{' pp' if spec.pairwise else ''}")
    assert error <= (TOL_PP if spec.pairwise else TOL_SCORE)
    if not spec.pairwise:
        for s in got:
            assert math.isclose(sum(s.probs), s.mass if s.mass is not None else 1.0, rel_tol=1e-9)
            assert min(spec.label_values) <= s.score <= max(spec.label_values)
            assert (s.mass is not None) == (spec.readout == "full")


def test_default_spec_is_bit_identical_to_the_card_path(tiny_text_ckpt):
    import json
    from pathlib import Path

    import judge_core

    judge = Judge.from_pretrained(tiny_text_ckpt, backend="packed", device="cpu", dtype="fp32", share_prefixes=False)
    sample = Path(judge_core.__file__).parent / "embedded" / "sample_pairs.jsonl"
    rows = [json.loads(line) for line in sample.read_text(encoding="utf-8").splitlines() if line.strip()]
    pairs = [(p["instruction"], p["response_1"], p["response_2"]) for p in rows]
    tok = judge.tokenizer
    for instruction, r1, r2 in pairs:  # one pair per run: the same batch on both sides, bit for bit
        score = judge.compare_many([(instruction, r1, r2)])[0]
        texts = [render_prompt(tok, instruction, r1, r2), render_prompt(tok, instruction, r2, r1)]
        ids = tok(texts, add_special_tokens=False)["input_ids"]
        order = sorted(range(2), key=lambda i: (-len(ids[i]), i))  # the planner's order (plan.py)
        ran = judge.backend.candidate_logits([ids[i] for i in order]).tolist()
        logits = [ran[order.index(i)] for i in range(2)]
        card = combine_passes(tuple(logits[0]), tuple(logits[1]), (len(ids[0]), len(ids[1])))
        assert (score.p1, score.pass1, score.pass2, score.tokens) == (card.p1, card.pass1, card.pass2, card.tokens)
    print(f"\ndefault spec vs the card's path on {len(pairs)} sample pairs: bit-identical")


def test_pointwise_spec_rejects_pairs_and_bad_items_are_rows(tiny_text_ckpt):
    judge = Judge.from_pretrained(tiny_text_ckpt, device="cpu", spec="yes-no-criterion")
    with pytest.raises(TypeError, match="pointwise: use score_many"):
        judge.compare("i", "a", "b")
    got = judge.score_many([{"instruction": "i", "response": "r", "criterion": "c"},
                            {"instruction": "i", "response": "r"}, ("i", "r")])
    assert got[0].ok and 0 < got[0].score < 1
    assert "'criterion'" in got[1].error and "needs criterion" in got[2].error and math.isnan(got[2].score)
    single = judge.score("i", "r", criterion="c")
    assert single.score == pytest.approx(got[0].score, abs=1e-9)


def test_bad_spec_fails_before_loading(tmp_path):
    from judge_core.specs import SpecError

    with pytest.raises(SpecError, match="kind 'listwise'"):
        Judge.from_pretrained(tmp_path / "no-model-here", spec={**BUILTIN["pointwise-rubric"], "kind": "listwise"})
