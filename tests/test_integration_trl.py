"""TRL adapter: a real `GRPOTrainer` step on the CPU with a tiny random Qwen3 policy and the tiny judge
as its reward function, plus the call shapes TRL documents (plain, conversational, partial groups,
reference column, the async twin over HTTP, OnlineDPO's halves).

Where TRL calls reward functions (trl 1.16): trl/trainer/grpo_trainer.py, `GRPOTrainer._calculate_rewards`
(`reward_func(prompts=prompts, completions=completions, completion_ids=completion_ids_list, **reward_kwargs)`,
async functions awaited on `self.async_loop` via `is_async_callable`), and
trl/experimental/online_dpo/online_dpo_trainer.py, `OnlineDPOTrainer.training_step`
(`prompts=2 * prompts`, then `first_half, second_half = rewards.split(batch_size)`).
"""

from __future__ import annotations

import asyncio
import inspect
import math
import time

import pytest

from judge_core.integrations.trl import (async_http_reward_func, http_reward_func, judge_reward_func,
                                         online_dpo_reward_func)
from judge_core.rewards import RewardGroup, bootstrap_pick

PROMPTS = ["Write a line about rain.", "Describe the sea in five words.", "A haiku about snow, please.",
           "Say something about the moon."]


@pytest.fixture(scope="module")
def judge(tiny_text_ckpt):
    from judge_core.api import Judge

    return Judge.from_pretrained(tiny_text_ckpt, device="cpu", dtype="fp32")


def twin_reward(judge, group: RewardGroup, i: int) -> float:
    """One sample's reward from `judge.compare` calls alone (no expansion, no batching of ours)."""
    r = group.responses
    if group.resolved_mode == "anchor":
        return judge.compare(group.instruction, r[i], group.reference).p1 / 100
    if group.resolved_mode == "bootstrap":
        ref = bootstrap_pick(group)
        return 0.5 if i == ref else judge.compare(group.instruction, r[i], r[ref]).p1 / 100
    others = [j for j in range(len(r)) if j != i]
    if not others:
        return 0.5
    return sum(judge.compare(group.instruction, r[i], r[j]).p1 / 100 for j in others) / len(others)


def twin_rewards(judge, groups) -> list[float]:
    return [twin_reward(judge, g, i) for g in groups for i in range(len(g.responses))]


@pytest.mark.slow
def test_real_grpo_step_uses_the_judge_rewards(judge, tmp_path):
    """GRPOTrainer.train() for one step: generation by a tiny random Qwen3, rewards by the judge."""
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM
    from trl import GRPOConfig, GRPOTrainer

    from judge_core.embedded import tokenizer_dir

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir()))
    tokenizer.pad_token = tokenizer.pad_token or "<|endoftext|>"
    torch.manual_seed(0)
    policy = Qwen3ForCausalLM(Qwen3Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                          num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                                          head_dim=16, max_position_embeddings=512, tie_word_embeddings=True,
                                          pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id))
    reward = judge_reward_func(judge, mode="round_robin")  # handed to TRL as is: a callable instance
    args = GRPOConfig(output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=8, num_generations=4,
                      max_completion_length=12, learning_rate=1e-4, logging_steps=1, report_to="none",
                      use_cpu=True, bf16=False, save_strategy="no", seed=0, dataloader_num_workers=0)
    trainer = GRPOTrainer(model=policy, reward_funcs=[reward], args=args, processing_class=tokenizer,
                          train_dataset=Dataset.from_dict({"prompt": PROMPTS}))
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    groups, rewards = reward.last_groups, [s.reward for s in reward.last_samples]
    assert groups, "GRPOTrainer never called the reward function"
    print(f"GRPO step in {seconds:.1f} s; {len(rewards)} completions, rewards:")
    shown = [(g.instruction, c) for g in groups for c in g.responses]
    for (instruction, completion), r in zip(shown, rewards):
        print(f"  {r:.6f}  {instruction[:30]!r} -> {completion[:40]!r}")
    assert [len(g.responses) for g in groups] == [4, 4]  # 8 completions = 2 prompts x num_generations
    assert all(g.instruction in PROMPTS for g in groups) and groups[0].instruction != groups[1].instruction
    expected = twin_rewards(judge, groups)
    err = max(abs(a - b) for a, b in zip(rewards, expected))
    print(f"rewards vs the judge's compare() per pair: max |d| = {err:.2e}")
    assert err < 1e-6
    logged = [h for h in trainer.state.log_history if f"rewards/{reward.__name__}/mean" in h]
    assert logged and logged[0][f"rewards/{reward.__name__}/mean"] == pytest.approx(sum(rewards) / len(rewards),
                                                                                     abs=1e-6)


def test_plain_conversational_partial_groups_and_reference_column(judge):
    chat = [[{"role": "system", "content": "Be brief."}, {"role": "user", "content": p}] for p in PROMPTS[:2]]
    texts = ["Soft rain.", "Rain, rain.", "Wet streets shine.", "Blue waves fold.", "Salt and light."]
    # prompt 0 has 3 completions, prompt 1 only 2 of its group here (the rest on another process)
    prompts = [chat[0]] * 3 + [chat[1]] * 2
    completions = [[{"role": "assistant", "content": t}] for t in texts]
    fn = judge_reward_func(judge, mode="round_robin")
    assert list(inspect.signature(fn.__call__).parameters)[:3] == ["prompts", "completions", "completion_ids"]
    got = fn(prompts=prompts, completions=completions, completion_ids=[[1]] * 5, trainer_state=None)
    groups = [RewardGroup(PROMPTS[0], tuple(texts[:3])), RewardGroup(PROMPTS[1], tuple(texts[3:]))]
    err = max(abs(a - b) for a, b in zip(got, twin_rewards(judge, groups)))
    print(f"conversational round robin vs twin: max |d| = {err:.2e}")
    assert err < 1e-6
    # plain strings, reference column as TRL passes dataset columns (one value per completion)
    plain = judge_reward_func(judge, reference_column="reference")
    refs = ["A grey sky weeps."] * 3 + ["The sea breathes."] * 2
    got = plain(prompts=[PROMPTS[0]] * 3 + [PROMPTS[1]] * 2, completions=texts, completion_ids=None, reference=refs)
    expected = [judge.compare(PROMPTS[k // 3 if k < 3 else 1], t, r).p1 / 100 for k, (t, r) in enumerate(zip(texts, refs))]
    assert max(abs(a - b) for a, b in zip(got, expected)) < 1e-6
    with pytest.raises(KeyError, match="reference_column='answer' is not among the columns"):
        judge_reward_func(judge, reference_column="answer")(prompts=PROMPTS[:1], completions=["x"], reference=["r"])
    # a completion that cannot be judged is NaN (TRL leaves it out of the group baseline), not dropped
    bad = fn(prompts=[PROMPTS[0]] * 3, completions=["fine", "word " * 40000, "also fine"])
    assert len(bad) == 3 and math.isnan(bad[1]) and not math.isnan(bad[0])
    assert "exceeds the model's context" in fn.last_samples[1].error


def test_online_dpo_halves(judge):
    firsts, seconds = ["Soft rain on tin.", "Waves."], ["rain", "The sea folds its blue hands."]
    fn = online_dpo_reward_func(judge)
    got = fn(prompts=2 * PROMPTS[:2], completions=firsts + seconds, completion_ids=None)
    p = [judge.compare(PROMPTS[k], firsts[k], seconds[k]).p1 / 100 for k in range(2)]
    err = max(abs(a - b) for a, b in zip(got, p + [1 - x for x in p]))
    print(f"OnlineDPO halves vs compare() per pair: max |d| = {err:.2e}")
    assert err < 1e-6  # fp32, one batch of 2 pairs vs 2 batches of 1
    assert [a + b for a, b in zip(got[:2], got[2:])] == pytest.approx([1.0, 1.0], abs=1e-12)


def test_http_and_async_twins_equal_in_process(judge):
    """Over HTTP (one /v1/rewards request per batch, same token budget): the same numbers to 1e-9; the
    async twin is what TRL's `is_async_callable` (trl/trainer/utils.py) takes for an async reward."""
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    from serve_server import RunningServer

    from judge_core.serve.app import create_app
    from judge_core.serve.limits import ServeLimits
    from judge_core.serve.scheduler import Scheduler

    texts = ["Soft rain.", "Rain, rain.", "Wet streets shine.", "Blue waves fold.", "Salt and light.", "Sea."]
    prompts = [PROMPTS[0]] * 3 + [PROMPTS[1]] * 3
    refs = ["A grey sky weeps."] * 3 + ["The sea breathes."] * 3
    with RunningServer(create_app(Scheduler(judge), ServeLimits())) as url:
        for mode, column in (("round_robin", None), ("bootstrap", None), ("anchor", "reference")):
            local = judge_reward_func(judge, mode=mode, reference_column=column)(
                prompts=prompts, completions=texts, reference=refs)
            http = http_reward_func(url, mode=mode, reference_column=column)(
                prompts=prompts, completions=texts, reference=refs)
            twin = async_http_reward_func(url, mode=mode, reference_column=column)
            try:
                from trl.trainer.utils import is_async_callable
            except ImportError:
                is_async_callable = inspect.iscoroutinefunction
            assert is_async_callable(twin)
            served_async = asyncio.run(twin(prompts=prompts, completions=texts, completion_ids=None, reference=refs))
            err = max(abs(a - b) for a, b in zip(local, http + served_async))
            err = max(err, max(abs(a - b) for a, b in zip(local, served_async)))
            print(f"{mode}: TRL reward over HTTP / async HTTP vs in-process: max |d| = {err:.2e}")
            assert err <= 1e-9
