"""The reward modes over HTTP equal the in-process ones, and the group barrier (serve/groups.py):
a complete group scored together equals the in-process mode; a missing member ends in the timeout
error or the anchor fallback. A real server on loopback, the tiny judge."""

from __future__ import annotations

import math
import threading

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from judge_core.api import Judge  # noqa: E402
from judge_core.client import JudgeClient  # noqa: E402
from judge_core.rewards import RewardGroup, compute_rewards  # noqa: E402
from judge_core.serve.app import create_app  # noqa: E402
from judge_core.serve.limits import ServeLimits  # noqa: E402
from judge_core.serve.scheduler import Scheduler  # noqa: E402

from concurrent_calls import concurrently  # noqa: E402
from serve_server import RunningServer  # noqa: E402

INSTRUCTION = "Write a two-line poem about rain."
RESPONSES = ("Rain on the roof, soft.", "Drops fall.\nThe street shines.", "rain rain rain", "Grey.")
REFERENCE = "A grey sky weeps; the city hums along."


@pytest.fixture(scope="module")
def judge(tiny_text_ckpt):
    return Judge.from_pretrained(tiny_text_ckpt, device="cpu", dtype="fp32")


@pytest.fixture(scope="module")
def app_and_url(judge):
    # Same judge, same token budget: one request's pairs run in the batches compare_many runs them in.
    app = create_app(Scheduler(judge), ServeLimits())
    with RunningServer(app) as url:
        yield app, url


@pytest.fixture(scope="module")
def url(app_and_url):
    return app_and_url[1]


def max_diff(a, b, same_order: bool = True) -> float:
    err = 0.0
    for x, y in zip(a, b):
        for field in ("reward", "p_ab", "p_ba", "p_mean"):
            err = max(err, abs(getattr(x, field) - getattr(y, field)))
        assert (x.opponents, x.missing, x.error) == (y.opponents, y.missing, y.error)
        if same_order:  # reference_index counts members in the order the group was formed
            assert x.reference_index == y.reference_index
    return err


@pytest.mark.parametrize("mode", ["anchor", "round_robin", "bootstrap"])
def test_http_equals_in_process(judge, url, mode):
    reference = REFERENCE if mode == "anchor" else None
    group = RewardGroup(INSTRUCTION, RESPONSES, reference, mode)
    [local] = compute_rewards(judge, [group])
    body = {"instruction": INSTRUCTION, "responses": list(RESPONSES), "mode": mode}
    if reference:
        body["reference"] = reference
    [served] = JudgeClient(url).sample_rewards([body])
    err = max_diff(served, local)
    print(f"{mode}: /v1/rewards vs compute_rewards max |d| = {err:.2e}")
    assert err <= 1e-9


def test_bad_sample_over_http_is_a_null_reward_with_its_error(url):
    too_long = "word " * 40000  # over the tiny model's context
    [row] = JudgeClient(url).sample_rewards([{"instruction": INSTRUCTION, "responses": ["a", too_long, "b"]}])
    assert [s.ok for s in row] == [True, False, True]
    assert math.isnan(row[1].reward) and "exceeds the model's context" in row[1].error and row[1].missing == 2
    assert row[0].opponents == 1 and row[0].missing == 1


def members(url, group_id, responses, group_size=None, **options):
    """Send each response as its own request, concurrently (as verl / OpenRLHF / slime workers do)."""
    size = group_size or len(responses)
    return concurrently(lambda r: JudgeClient(url).group_reward(group_id, size, INSTRUCTION, r, **options),
                        list(responses))


@pytest.mark.parametrize("mode", ["round_robin", "bootstrap"])
def test_complete_group_through_the_barrier_equals_the_in_process_mode(judge, url, mode):
    served = members(url, f"uid-{mode}", RESPONSES, mode=mode)
    # arrival order is the threads' race: match each answer to its response through the in-process group
    [local] = compute_rewards(judge, [RewardGroup(INSTRUCTION, RESPONSES, mode=mode)])
    err = max_diff(served, local, same_order=False)
    print(f"{mode}: barrier group vs compute_rewards max |d| = {err:.2e}")
    assert err <= 1e-6  # arrival order may change the pairs' order within the batch (fp32 rounding)


def test_missing_member_times_out_with_an_error_or_the_anchor_fallback(judge, url):
    client = JudgeClient(url)
    # group of 3, only 2 arrive: both get the timeout error (a NaN reward), not a hang
    got = members(url, "uid-missing", RESPONSES[:2], group_size=3, group_timeout_s=0.5)
    for s in got:
        print(f"timeout answer: {s.error}")
        assert math.isnan(s.reward) and "got 2 of 3 members within 0.5 s" in s.error
    # a late member of that group gets the answer at once
    late = client.group_reward("uid-missing", 3, INSTRUCTION, RESPONSES[2], group_timeout_s=30)
    assert "already timed out" in late.error
    # on_timeout=anchor: each present member is judged against its reference instead
    got = members(url, "uid-fallback", RESPONSES[:2], group_size=3, group_timeout_s=0.5, reference=REFERENCE,
                  on_timeout="anchor")
    [local] = compute_rewards(judge, [RewardGroup(INSTRUCTION, RESPONSES[:2], REFERENCE, "anchor")])
    err = max_diff(got, local)
    print(f"anchor fallback vs compute_rewards anchor: max |d| = {err:.2e}")
    assert err <= 1e-6


def test_group_members_must_agree(app_and_url):
    from judge_core.client import JudgeServerError

    from serve_server import wait_until

    app, url = app_and_url
    client = JudgeClient(url)
    first = threading.Thread(target=lambda: client.group_reward("uid-agree", 2, INSTRUCTION, "a", group_timeout_s=5))
    first.start()
    wait_until(lambda: app.state.barrier.open_groups == 1, 10, "the first member at the barrier")
    with pytest.raises(JudgeServerError, match="group_size 3 differs from the group's 2") as e:
        client.group_reward("uid-agree", 3, INSTRUCTION, "b")
    assert e.value.status == 422
    client.group_reward("uid-agree", 2, INSTRUCTION, "b")  # the right member completes it
    first.join(10)
    with pytest.raises(JudgeServerError, match="already complete"):
        client.group_reward("uid-agree", 2, INSTRUCTION, "c")
    with pytest.raises(JudgeServerError, match="'mode' must be one of"):
        client.group_reward("x", 2, INSTRUCTION, "a", mode="pairwise")
    with pytest.raises(JudgeServerError, match="needs group_id and group_size"):
        client._request("POST", "/v1/group_reward", {"instruction": "i", "response": "r", "mode": "bootstrap"})
