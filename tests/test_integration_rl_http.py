"""verl, OpenRLHF and slime adapters, each called the way its framework calls it, against a real
`judge-core serve` app on loopback (the tiny judge); rewards compared with the in-process modes.

None of the three frameworks is installed in CI (each pulls in vLLM/Megatron-scale dependencies), so
their inputs are built here with the fields and shapes their sources read or send:
- verl (volcengine/verl @ b178a3c): verl/experimental/reward_loop/reward_manager/naive.py,
  NaiveRewardManager.run_single (`await compute_score(data_source=, solution_str=, ground_truth=,
  extra_info=)`, response decoded from batch["responses"] cut by batch["attention_mask"]);
  verl/trainer/ppo/reward.py, get_custom_reward_fn (reward_kwargs merged into the call);
  verl/experimental/reward_loop/reward_loop.py, RewardLoopWorker (manager built as
  `cls(config, tokenizer, compute_score, reward_router_address, reward_model_tokenizer)`, one
  `run_single` task per sample gathered at once); verl/protocol.py, DataProtoItem (batch,
  non_tensor_batch with "uid").
- OpenRLHF 0.11 (OpenRLHF/OpenRLHF @ 3c3be62): openrlhf/utils/agent.py, SingleTurnAgentExecutor
  (`_fetch_rewards_via_http`: POST {"query": [q], "prompts": [p], "labels": [l]} per sample to
  --reward.remote_url; `_fetch_rewards_via_func`: the file loaded with spec_from_file_location and
  `reward_func(queries, prompts, labels)` run through asyncio.to_thread).
- slime (THUDM/slime @ 624b824): slime/rollout/rm_hub/__init__.py, remote_rm (POST {"prompt",
  "response", "label"} to --rm-url, the JSON answer is the reward), async_rm (`await
  rm_function(args, sample, **kwargs)`), batched_async_rm (`await rm_function(args, samples, **kwargs)`
  with --group-rm); slime/utils/types.py, Sample.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import math
import urllib.request
from dataclasses import dataclass, field

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from judge_core.api import Judge  # noqa: E402
from judge_core.rewards import RewardGroup, compute_rewards  # noqa: E402
from judge_core.serve.app import create_app  # noqa: E402
from judge_core.serve.limits import ServeLimits  # noqa: E402
from judge_core.serve.scheduler import Scheduler  # noqa: E402

from concurrent_calls import concurrently  # noqa: E402
from serve_server import RunningServer  # noqa: E402

INSTRUCTION = "Write a two-line poem about rain."
RESPONSES = ["Rain on the roof, soft.", "Drops fall.\nThe street shines.", "rain rain rain", "Grey."]
REFERENCE = "A grey sky weeps; the city hums along."
TOL = 1e-6  # fp32; members' arrival order may change the batch order


@pytest.fixture(scope="module")
def judge(tiny_text_ckpt):
    return Judge.from_pretrained(tiny_text_ckpt, device="cpu", dtype="fp32")


@pytest.fixture(scope="module")
def url(judge):
    with RunningServer(create_app(Scheduler(judge), ServeLimits())) as url:
        yield url


def post(url: str, body) -> object:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def expected(judge, instruction, responses, mode, reference=None) -> list[float]:
    [row] = compute_rewards(judge, [RewardGroup(instruction, tuple(responses), reference, mode)])
    return [s.reward for s in row]


def max_err(got, want) -> float:
    assert len(got) == len(want)
    return max(abs(a - b) for a, b in zip(got, want))


# -- verl --------------------------------------------------------------------------------------------


@dataclass
class VerlItem:
    """verl.protocol.DataProtoItem's fields as NaiveRewardManager reads them."""
    batch: dict
    non_tensor_batch: dict
    meta_info: dict = field(default_factory=dict)


class VerlData(list):
    """One-sample DataProto slice: len() and [0] are what the reward loop uses."""


def verl_item(tokenizer, prompt_len: int, response: str, uid: str, max_response: int = 32):
    import torch

    ids = tokenizer(response, add_special_tokens=False)["input_ids"][:max_response]
    responses = torch.full((max_response,), tokenizer.pad_token_id or 0, dtype=torch.long)
    responses[:len(ids)] = torch.tensor(ids)
    attention = torch.cat([torch.ones(prompt_len, dtype=torch.long), torch.zeros(max_response, dtype=torch.long)])
    attention[prompt_len:prompt_len + len(ids)] = 1
    return VerlData([VerlItem({"responses": responses, "attention_mask": attention}, {
        "data_source": "creative_writing", "uid": uid, "reward_model": {"ground_truth": REFERENCE, "style": "model"},
        "extra_info": {"instruction": INSTRUCTION, "index": 0}})])


def test_verl_compute_score_as_the_naive_reward_manager_calls_it(judge, url):
    from functools import partial

    compute_score = load_as_verl_does("compute_score")
    assert asyncio.iscoroutinefunction(compute_score)  # the naive manager awaits it (is_async_reward_score)
    reward_kwargs = {"judge_url": url}  # +custom_reward_function.reward_kwargs.judge_url=...

    async def call(response):  # get_custom_reward_fn wraps the function with its reward_kwargs
        fn = partial(compute_score, **reward_kwargs)
        return await fn(data_source="creative_writing", solution_str=response, ground_truth=REFERENCE,
                        extra_info={"instruction": INSTRUCTION, "num_turns": None, "rollout_reward_scores": {}})

    async def all_samples():
        return await asyncio.gather(*[call(r) for r in RESPONSES])

    results = asyncio.run(all_samples())
    err = max_err([r["score"] for r in results], expected(judge, INSTRUCTION, RESPONSES, "anchor", REFERENCE))
    print(f"verl compute_score vs in-process anchor: max |d| = {err:.2e}")
    assert err <= TOL
    assert all(r["judge_failed"] == 0.0 and r["judge_p_mean"] == r["score"] for r in results)
    with pytest.raises(ValueError, match="put the instruction in extra_info"):
        asyncio.run(compute_score("d", "x", REFERENCE, {"index": 3}, judge_url=url))


def load_as_verl_does(name: str):
    """verl/utils/import_utils.py, load_extern_object with a file path: spec_from_file_location under a
    made-up module name, outside any package."""
    import os

    import judge_core.integrations.verl as module

    spec = importlib.util.spec_from_file_location(f"custom_module_{hash(os.path.abspath(module.__file__))}",
                                                  module.__file__)
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return getattr(loaded, name)


def test_verl_group_manager_forwards_uid_to_the_barrier(judge, url, qwen_tokenizer):
    JudgeGroupRewardManager = load_as_verl_does("JudgeGroupRewardManager")

    n = len(RESPONSES)
    config = {"actor_rollout_ref": {"rollout": {"n": n}},
              "custom_reward_function": {"reward_kwargs": {"judge_url": url, "judge_mode": "round_robin"}}}
    for mode in ("round_robin", "bootstrap"):
        config["custom_reward_function"]["reward_kwargs"]["judge_mode"] = mode
        manager = JudgeGroupRewardManager(config, qwen_tokenizer, None, None, None)
        # two prompts' groups interleaved, as the reward loop gathers one task per sample
        items = [verl_item(qwen_tokenizer, 7, r, uid=f"{mode}-{g}") for r in RESPONSES for g in (0, 1)]

        async def batch():
            return await asyncio.gather(*[manager.run_single(d) for d in items])

        results = asyncio.run(batch())
        want = expected(judge, INSTRUCTION, RESPONSES, mode)
        got = [results[2 * k + g]["reward_score"] for g in (0, 1) for k in range(n)]
        err = max_err(got, want + want)
        print(f"verl JudgeGroupRewardManager ({mode}) vs in-process: max |d| = {err:.2e}")
        assert err <= TOL
        assert set(results[0]["reward_extra_info"]) >= {"score", "judge_p_ab", "judge_p_ba", "judge_failed"}


# -- OpenRLHF ----------------------------------------------------------------------------------------

PROMPT = "<|im_start|>user\n" + INSTRUCTION + "<|im_end|>\n<|im_start|>assistant\n"


def openrlhf_payload(response: str, label):
    return {"query": [PROMPT + response], "prompts": [PROMPT], "labels": [label]}


def test_openrlhf_remote_url_per_sample_anchor_and_groups(judge, url):
    from judge_core.integrations.openrlhf import remote_url

    anchor = concurrently(lambda r: post(remote_url(url), openrlhf_payload(r, REFERENCE)), RESPONSES)
    err = max_err([a["rewards"][0] for a in anchor], expected(judge, PROMPT, RESPONSES, "anchor", REFERENCE))
    print(f"OpenRLHF /get_reward per-sample anchor vs in-process: max |d| = {err:.2e}")
    assert err <= TOL
    for mode in ("round_robin", "bootstrap"):
        target = remote_url(url, mode=mode, group_size=len(RESPONSES))
        assert target.endswith(f"/get_reward?mode={mode}&group_size=4")
        for epoch in range(2):  # the same prompt comes back next epoch: a new group, not "already complete"
            got = concurrently(lambda r: post(target, openrlhf_payload(r, "")), RESPONSES)
            err = max_err([g["rewards"][0] for g in got], expected(judge, PROMPT, RESPONSES, mode))
            print(f"OpenRLHF per-sample {mode} (epoch {epoch}) through the barrier vs in-process: max |d| = {err:.2e}")
            assert err <= TOL
            assert all(g["extra_logs"]["judge_failed"] == [0.0] for g in got)


def test_openrlhf_reward_func_file_as_openrlhf_loads_it(judge, url, monkeypatch):
    import judge_core.integrations.openrlhf as module

    monkeypatch.setenv("JUDGE_CORE_URL", url)
    spec = importlib.util.spec_from_file_location("reward_func", module.__file__)
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    reward_func = loaded.reward_func

    async def fetch(response):  # SingleTurnAgentExecutor._fetch_rewards_via_func, batch_size 1
        return await asyncio.gather(asyncio.to_thread(reward_func, [PROMPT + response], [PROMPT], [REFERENCE]))

    async def all_samples():
        return await asyncio.gather(*[fetch(r) for r in RESPONSES])

    results = asyncio.run(all_samples())
    got = [r[0]["rewards"][0] for r in results]
    err = max_err(got, expected(judge, PROMPT, RESPONSES, "anchor", REFERENCE))
    print(f"OpenRLHF reward_func.py vs in-process anchor: max |d| = {err:.2e}")
    assert err <= TOL
    monkeypatch.setenv("JUDGE_CORE_MODE", "round_robin")
    monkeypatch.setenv("JUDGE_CORE_GROUP_SIZE", str(len(RESPONSES)))
    got = concurrently(lambda r: reward_func([PROMPT + r], [PROMPT], [""])["rewards"][0], RESPONSES)
    assert max_err(got, expected(judge, PROMPT, RESPONSES, "round_robin")) <= TOL


# -- slime -------------------------------------------------------------------------------------------


@dataclass
class SlimeSample:
    """slime.utils.types.Sample's fields that reward functions read."""
    prompt: object = ""
    response: str = ""
    label: str | None = None
    index: int | None = None
    group_index: int | None = None
    metadata: dict = field(default_factory=dict)


def test_slime_remote_rm_route(judge, url):
    numbers = concurrently(lambda r: post(url + "/slime_reward", {"prompt": INSTRUCTION, "response": r,
                                                                 "label": REFERENCE}), RESPONSES)
    assert all(isinstance(x, float) for x in numbers)
    err = max_err(numbers, expected(judge, INSTRUCTION, RESPONSES, "anchor", REFERENCE))
    print(f"slime remote_rm /slime_reward vs in-process anchor: max |d| = {err:.2e}")
    assert err <= TOL
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": INSTRUCTION}]
    numbers = concurrently(lambda r: post(url + "/slime_reward?mode=bootstrap&group_size=4",
                                          {"prompt": chat, "response": r, "label": None}), RESPONSES)
    assert max_err(numbers, expected(judge, INSTRUCTION, RESPONSES, "bootstrap")) <= TOL


def test_slime_custom_rm_functions(judge, url):
    from judge_core.integrations.slime import group_reward_func, reward_func

    args = argparse.Namespace(rm_url=url + "/slime_reward", group_rm=False, custom_rm_path=None)
    samples = [SlimeSample(INSTRUCTION, r, REFERENCE, index=k, group_index=0) for k, r in enumerate(RESPONSES)]

    async def per_sample():
        return await asyncio.gather(*[reward_func(args, s) for s in samples])

    err = max_err(asyncio.run(per_sample()), expected(judge, INSTRUCTION, RESPONSES, "anchor", REFERENCE))
    print(f"slime reward_func vs in-process anchor: max |d| = {err:.2e}")
    assert err <= TOL
    group = [SlimeSample(INSTRUCTION, r, None, index=k) for k, r in enumerate(RESPONSES + ["word " * 40000])]
    got = asyncio.run(group_reward_func(args, group))
    assert len(got) == 5 and math.isnan(got[4])  # the unscorable sample is NaN, not dropped
    want = compute_rewards(judge, [RewardGroup(INSTRUCTION, tuple(s.response for s in group))])[0]
    err = max_err(got[:4], [s.reward for s in want[:4]])
    print(f"slime group_reward_func (--group-rm) vs in-process round robin: max |d| = {err:.2e}")
    assert err <= TOL
