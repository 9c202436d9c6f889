"""`python -m bench.serve --rl` (or `python -m bench.serve_rl`): RL-shaped traffic against the service.

    python -m bench.serve --rl --model tiny --prompts 16 --group-size 8 --clients 64,4

Traffic kinds (--traffic, all by default), each on the same groups (P prompts x G samples):
- single:      OpenRLHF's per-sample /get_reward request (one query with its label: anchor, 1 pair),
               from C concurrent clients.
- batch:       OpenRLHF's whole rollout batch in one /get_reward request (P x G queries with labels).
- group_<mode>: verl-style per-sample /v1/group_reward requests carrying the group id and size; the
               service's barrier scores each group in <mode> (anchor | round_robin | bootstrap).
               A client is one trainer worker: it sends its group's G members at once and waits
               for all, so C clients keep C groups in flight.
For each row: the offline time of the same pairs (`compute_rewards` in this process, after a
warm-up, measured right before the served run), the served wall time (first send to last answer), ratio = offline / served, request
latency p50/p99. One JSON row per (kind, clients) is printed and appended to --out.
The clients are asyncio coroutines in one thread (judge_core.async_client): 64 x 8 open requests
cost no threads, and the client process stays small beside the server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
KINDS = ("single", "batch", "group_anchor", "group_round_robin", "group_bootstrap")


def parse_args(argv=None):
    from bench.serve import add_judge_arguments

    p = argparse.ArgumentParser(prog="python -m bench.serve --rl", description=__doc__.split("\n")[0])
    add_judge_arguments(p)
    p.add_argument("--prompts", type=int, default=16, help="prompts per rollout batch")
    p.add_argument("--group-size", type=int, default=8, help="samples per prompt")
    p.add_argument("--clients", default="64,4", help="comma-separated concurrent client counts")
    p.add_argument("--traffic", default=",".join(KINDS), help=f"comma-separated, of {', '.join(KINDS)}")
    p.add_argument("--response-median", type=int, default=120, help="response tokens, median (p90 = 2x)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads, offline and server")
    p.add_argument("--out", default="bench/out/serve_rl.jsonl")
    args = p.parse_args(argv)
    args.clients = [int(c) for c in args.clients.split(",")]
    args.traffic = args.traffic.split(",")
    bad = [k for k in args.traffic if k not in KINDS]
    if bad:
        p.error(f"unknown --traffic {bad}; choose from {', '.join(KINDS)}")
    args.n_pairs = args.prompts * args.group_size * args.group_size  # for bench.serve.start_server's queue size
    return args


def build_groups(args, tokenizer):
    """P groups of G responses, each with a reference, from bench.workloads.synthetic_pairs."""
    from bench.workloads import synthetic_pairs

    per_group = args.group_size // 2 + 1
    pairs = synthetic_pairs(args.prompts * per_group, seed=args.seed, tokenizer=tokenizer,
                            response_median=args.response_median, response_p90=2 * args.response_median)
    groups = []
    for g in range(args.prompts):
        block = pairs[g * per_group:(g + 1) * per_group]
        texts = [t for p in block for t in (p.response_1, p.response_2)]
        groups.append({"instruction": block[0].instruction, "responses": texts[:args.group_size],
                       "reference": texts[args.group_size]})
    return groups


def offline_groups(groups, kind: str):
    from judge_core.rewards import RewardGroup

    if kind in ("single", "batch", "group_anchor"):
        return [RewardGroup(g["instruction"], tuple(g["responses"]), g["reference"], "anchor") for g in groups]
    mode = kind[len("group_"):]
    return [RewardGroup(g["instruction"], tuple(g["responses"]), None, mode) for g in groups]


def load_judge(args):
    from judge_core.api import Judge
    from judge_core.cli.model_arg import resolve_model

    return Judge.from_pretrained(resolve_model(args.model), backend=args.backend, dtype=args.dtype,
                                 device=args.device, token_budget=args.token_budget)


def run_offline(judge, groups, kind):
    """-> (seconds, pairs, SampleRewards) of the same pairs in this process, after a warm-up."""
    from judge_core.rewards import compute_rewards, count_matchups

    reward_groups = offline_groups(groups, kind)
    compute_rewards(judge, reward_groups[:1])  # warm-up
    t0 = time.perf_counter()
    rewards = compute_rewards(judge, reward_groups)
    return time.perf_counter() - t0, sum(count_matchups(g) for g in reward_groups), rewards


async def _served(url: str, kind: str, groups, clients: int, group_size: int):
    from judge_core.async_client import AsyncJudgeClient

    client = AsyncJudgeClient(url, timeout=3600)
    latencies: list[float] = []
    answers: dict = {}

    async def timed(key, coro):
        t = time.perf_counter()
        answers[key] = await coro
        latencies.append(time.perf_counter() - t)

    def openrlhf(g, k):
        prompt = groups[g]["instruction"]
        return {"query": [prompt + groups[g]["responses"][k]], "prompts": [prompt], "labels": [groups[g]["reference"]]}

    if kind == "batch":
        body = {"query": [], "prompts": [], "labels": []}
        for g in range(len(groups)):
            for k in range(group_size):
                for key, value in openrlhf(g, k).items():
                    body[key] += value
        await timed("batch", client.post("/get_reward", body))
        return latencies, answers
    queue: asyncio.Queue = asyncio.Queue()
    if kind == "single":
        for g in range(len(groups)):
            for k in range(group_size):
                queue.put_nowait((g, k))
    else:
        for g in range(len(groups)):
            queue.put_nowait((g, None))
    mode = kind[len("group_"):]

    async def worker():
        while not queue.empty():
            g, k = queue.get_nowait()
            if kind == "single":
                await timed((g, k), client.post("/get_reward", openrlhf(g, k)))
                continue
            group = groups[g]
            await asyncio.gather(*[timed((g, j), client.group_reward(
                f"{kind}-{clients}-{g}", group_size, group["instruction"], group["responses"][j],
                reference=group["reference"] if mode == "anchor" else None, mode=mode, group_timeout_s=600))
                for j in range(group_size)])

    await asyncio.gather(*[worker() for _ in range(clients)])
    return latencies, answers


def served_rewards(kind: str, answers, groups, group_size: int) -> list[float]:
    if kind == "batch":
        return answers["batch"]["rewards"]
    if kind == "single":
        return [answers[(g, k)]["rewards"][0] for g in range(len(groups)) for k in range(group_size)]
    return [answers[(g, k)].reward for g in range(len(groups)) for k in range(group_size)]


def main(argv=None) -> int:
    from bench.serve import free_port, metric_value, percentile, start_server, wait_healthy

    args = parse_args(argv)
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
        import torch

        torch.set_num_threads(args.threads)
    from transformers import AutoTokenizer

    from judge_core.embedded import tokenizer_dir

    groups = build_groups(args, AutoTokenizer.from_pretrained(str(tokenizer_dir())))
    judge = load_judge(args)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(args, port)
    rows = []
    try:
        wait_healthy(url)
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True).stdout.strip()
        for kind in args.traffic:
            for clients in ([1] if kind == "batch" else args.clients):
                # Offline right before served: on a shared machine the speed drifts by tens of percent
                # within minutes, so each ratio compares two runs made side by side.
                offline_s, pairs, offline_rewards = run_offline(judge, groups, kind)
                t0 = time.perf_counter()
                latencies, answers = asyncio.run(_served(url, kind, groups, clients, args.group_size))
                seconds = time.perf_counter() - t0
                local = [s.reward for row in offline_rewards for s in row]
                served = served_rewards(kind, answers, groups, args.group_size)
                err = max(abs(a - b) for a, b in zip(served, local))
                import urllib.request

                metrics = urllib.request.urlopen(url + "/metrics").read().decode()
                row = {"bench": "serve_rl", "commit": commit, "model": args.model, "backend": args.backend,
                       "traffic": kind, "clients": clients, "prompts": args.prompts, "group_size": args.group_size,
                       "requests": len(latencies), "pairs": pairs, "offline_s": round(offline_s, 3),
                       "served_s": round(seconds, 3), "ratio_vs_offline": round(offline_s / seconds, 3),
                       "served_pairs_per_s": round(pairs / seconds, 2),
                       "latency_p50_s": round(percentile(latencies, 50), 3),
                       "latency_p99_s": round(percentile(latencies, 99), 3),
                       "max_abs_diff_reward": err, "threads": args.threads,
                       "batch_fill_mean": round(metric_value(metrics, 'judge_batch_fill_ratio{window="mean"}'), 3)}
                print(json.dumps(row))
                rows.append(row)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(120)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "a", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
