"""`judge-core serve` gives the offline `compare_many` numbers (packed and hf, CPU fp32), through
/v1/compare, /v1/rewards and /get_reward.

Bit-identical when the served batch is the offline batch (one request, same budget). When concurrent
small requests are merged into other batches, fp32 GEMMs of other shapes round differently: offline
`compare_many` itself moves by ~1e-5 pp between token budgets 32768 and 900 on these tiny models
(measured 1.5e-5 packed, 6.3e-5 hf), so the merged case is held to 5e-4 pp: a pair mixed up with
another, or a pass swapped, moves a verdict by whole percents.
"""

from __future__ import annotations

import math
import threading

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from judge_core.api import Judge  # noqa: E402
from judge_core.client import JudgeClient  # noqa: E402
from judge_core.serve.app import create_app  # noqa: E402
from judge_core.serve.limits import ServeLimits  # noqa: E402
from judge_core.serve.metrics import ServeMetrics  # noqa: E402
from judge_core.serve.scheduler import Scheduler  # noqa: E402

from pair_samples import random_pairs  # noqa: E402
from serve_server import RunningServer  # noqa: E402

N_PAIRS = 12
CLIENTS = 4
MAX_WORDS = 40
MERGED_TOLERANCE_PP = 5e-4
# Small enough that one request's prompts span batches and one batch holds several requests' prompts.
SERVE_BUDGET = 900


@pytest.fixture(scope="module", params=["packed", "hf"])
def judge(request, tiny_text_ckpt):
    return Judge.from_pretrained(tiny_text_ckpt, backend=request.param, device="cpu", dtype="fp32")


def serve(judge, budget: int = SERVE_BUDGET):
    served = Judge(judge.backend, judge.tokenizer, token_budget=budget)
    metrics = ServeMetrics()
    scheduler = Scheduler(served, max_queue_prompts=4096, metrics=metrics)
    return RunningServer(create_app(scheduler, ServeLimits(), metrics)), metrics


def max_pp_diff(served: dict, offline) -> float:
    values = [abs(served["p1"] - offline.p1), abs(served["p2"] - offline.p2)]
    values += [abs(a - b) for a, b in zip(served["pass1"] + served["pass2"], offline.pass1 + offline.pass2)]
    return max(values)


def test_one_request_is_bit_identical_to_offline(judge):
    pairs = random_pairs(N_PAIRS, seed=4, max_words=MAX_WORDS)
    offline = judge.compare_many(pairs)
    assert judge.last_run_stats["batches"] == 1  # so the server, at the same budget, runs the same batch
    server, metrics = serve(judge, budget=judge.token_budget)
    with server as url:
        got = JudgeClient(url).compare(pairs)
    err = max(max_pp_diff(g, s) for g, s in zip(got, offline))
    print(f"serve (one request, same batch) vs offline ({judge.backend.__class__.__name__}): max |d| = {err:.2e} pp")
    assert err == 0.0


def test_concurrent_compare_matches_offline(judge):
    pairs = random_pairs(N_PAIRS, seed=3, max_words=MAX_WORDS)
    pairs.append(("x", "y", 5))  # a bad pair: an error entry beside the good ones, as offline
    offline = judge.compare_many(pairs)
    server, metrics = serve(judge)
    got: dict[int, dict] = {}
    failures: list[BaseException] = []

    def client(c: int) -> None:
        try:
            api = JudgeClient(url)
            mine = list(range(c, len(pairs), CLIENTS))
            for start in range(0, len(mine), 2):  # small requests, as RL workers send them
                chunk = mine[start:start + 2]
                items = [{"id": i, "instruction": pairs[i][0], "response_1": pairs[i][1], "response_2": pairs[i][2]}
                         for i in chunk]
                for result in api.compare(items):
                    got[result["id"]] = result
        except BaseException as e:  # noqa: BLE001 - re-raised in the test thread
            failures.append(e)

    with server as url:
        threads = [threading.Thread(target=client, args=(c,)) for c in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    assert not failures, failures
    assert sorted(got) == list(range(len(pairs)))
    err = 0.0
    for i, score in enumerate(offline):
        if score.error is not None:
            assert got[i] == {"id": i, "error": score.error}
            continue
        err = max(err, max_pp_diff(got[i], score))
    print(f"serve vs offline compare_many ({judge.backend.__class__.__name__}): max |d| = {err:.2e} pp "
          f"over {N_PAIRS} pairs, {metrics.batches} batches, mean fill {metrics.mean_batch_fill:.2f}")
    assert err <= MERGED_TOLERANCE_PP
    assert got[N_PAIRS]["error"].startswith("response_2 must be a string")


def round_robin_reference(judge, instruction, responses):
    """The documented reward, computed from offline verdicts: mean P(i beats j) over j != i."""
    n = len(responses)
    wins = [0.0] * n
    for i in range(n):
        for j in range(i + 1, n):
            s = judge.compare(instruction, responses[i], responses[j])
            wins[i] += s.p1 / 100
            wins[j] += s.p2 / 100
    return [w / (n - 1) for w in wins]


def test_rewards_and_get_reward_match_offline(judge):
    if judge.backend.__class__.__name__ != "PackedBackend":
        pytest.skip("the rewards math is backend-independent: checked once, on the packed backend")
    instruction = "Write a two-line poem about “rain”."
    responses = ["Rain on the roof — soft.", "Drops fall.\nThe street shines.", "rain rain rain", ""]
    reference = "A grey sky weeps; the city hums along."
    expected_rr = round_robin_reference(judge, instruction, responses)
    expected_ref = [judge.compare(instruction, r, reference).p1 / 100 for r in responses]
    server, _ = serve(judge)
    with server as url:
        api = JudgeClient(url)
        rr, vs_ref, single = api.rewards([{"instruction": instruction, "responses": responses},
                                          {"instruction": instruction, "responses": responses, "reference": reference},
                                          {"instruction": instruction, "responses": ["alone"]}])
        prompt = "<|im_start|>user\n" + instruction + "<|im_end|>\n<|im_start|>assistant\n"
        openrlhf = api._request("POST", "/get_reward", {
            "query": [prompt + r for r in responses] + [prompt + r for r in responses],
            "prompts": [prompt] * (2 * len(responses)),
            "labels": [None] * len(responses) + [reference] * len(responses)})
    err = max(abs(a - b) for a, b in zip(rr + vs_ref, expected_rr + expected_ref))
    print(f"/v1/rewards vs offline verdicts: max |d| = {err:.2e}")
    assert err <= MERGED_TOLERANCE_PP / 100  # rewards are probabilities, not percent
    assert math.isclose(sum(rr), len(responses) / 2, abs_tol=1e-9)  # round robin: rewards average 0.5
    assert single == [0.5]
    # OpenRLHF: the instruction is the prompt as sent, the response is the query minus that prefix.
    expected_rr_prompt = round_robin_reference(judge, prompt, responses)
    expected_ref_prompt = [judge.compare(prompt, r, reference).p1 / 100 for r in responses]
    err = max(abs(a - b) for a, b in zip(openrlhf["rewards"], expected_rr_prompt + expected_ref_prompt))
    print(f"/get_reward vs offline verdicts: max |d| = {err:.2e}")
    assert err <= MERGED_TOLERANCE_PP / 100
    assert openrlhf["scores"] == openrlhf["rewards"]
    assert openrlhf["extra_logs"]["judge_failed"] == [0.0] * (2 * len(responses))
    assert openrlhf["extra_logs"]["judge_p_mean"] == openrlhf["rewards"]  # logged beside p_ab and p_ba
