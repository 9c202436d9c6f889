"""`python -m bench.serve`: the scoring service under load against offline `compare_many`.

    python -m bench.serve --model tiny --clients 8 --pairs-per-request 2 --n-pairs 64
    python -m bench.serve --rl --model tiny --prompts 16 --group-size 8 --clients 64,4   (bench/serve_rl.py)

1. Offline: the pairs through `Judge.compare_many` in this process (after a warm-up call): pairs/s.
2. Served: `judge-core serve` started as a subprocess on loopback (its own interpreter, so the
   clients' threads do not share its GIL), N client threads sending requests of K pairs from a shared
   queue as fast as answers come back. Pairs/s over the wall time from first send to last answer,
   request latency p50/p99, the batch fill the server reports on /metrics.
3. The served results are checked against the offline ones (max |d| in pp) and one JSON row is
   printed and appended to --out.
4. /health latency while the server takes a 15 MB request (bench/serve_health.py; target < 100 ms),
   unless --no-health-under-load.

Pairs: bench.workloads.synthetic_pairs (English-like text, real tokenizer) with responses of median
--response-median tokens, so judge prompts run from a few hundred to ~2k tokens.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.serve", description=__doc__.split("\n")[0])
    add_judge_arguments(p)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--pairs-per-request", type=int, default=2)
    p.add_argument("--n-pairs", type=int, default=64)
    p.add_argument("--response-median", type=int, default=400, help="response tokens, median (p90 = 2x)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads for both the offline run and the server (OMP_NUM_THREADS)")
    p.add_argument("--out", default="bench/out/serve.jsonl", help="JSONL file the row is appended to")
    p.add_argument("--no-health-under-load", action="store_true",
                   help="skip the /health latency under a 15 MB request")
    return p.parse_args(argv)


def add_judge_arguments(p) -> None:
    """The judge both sides load (offline in this process, and the server), shared with bench/serve_rl.py."""
    p.add_argument("--model", default="tiny")
    p.add_argument("--backend", default="packed")
    p.add_argument("--dtype", default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--token-budget", type=int, default=32768)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def metric_value(text: str, name: str) -> float:
    return float(next(line.split()[-1] for line in text.splitlines() if line.startswith(name)))


def run_offline(args, pairs):
    from judge_core.api import Judge
    from judge_core.cli.model_arg import resolve_model

    judge = Judge.from_pretrained(resolve_model(args.model), backend=args.backend, dtype=args.dtype,
                                  device=args.device, token_budget=args.token_budget)
    judge.compare_many(pairs[: max(2, len(pairs) // 8)])  # warm-up, as the server does before /health
    t0 = time.perf_counter()
    scores = judge.compare_many(pairs)
    seconds = time.perf_counter() - t0
    return scores, seconds, judge.last_run_stats["real_tokens"], judge.last_run_stats["seconds"]


def start_server(args, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "judge_core.cli.main", "serve", args.model, "--port", str(port),
           "--backend", args.backend, "--token-budget", str(args.token_budget), "--log-level", "warning",
           "--max-queue-pairs", str(max(32768, args.n_pairs))]
    if args.dtype:
        cmd += ["--dtype", args.dtype]
    if args.device:
        cmd += ["--device", args.device]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen(cmd, env=env)


def wait_healthy(url: str, timeout: float = 600.0) -> None:
    """Until /health says ok (the model loaded and warmed up)."""
    from judge_core.client import JudgeClient, JudgeServerError

    client = JudgeClient(url, timeout=3600)
    deadline = time.monotonic() + timeout
    while True:
        try:
            if client.health()["status"] == "ok":
                return
        except JudgeServerError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"the server did not become healthy in {timeout:.0f} s")
        time.sleep(0.2)


def run_served(args, pairs, url: str):
    from judge_core.client import JudgeClient

    wait_healthy(url)
    k = args.pairs_per_request
    work: queue.Queue = queue.Queue()
    for start in range(0, len(pairs), k):
        work.put(list(range(start, min(start + k, len(pairs)))))
    results: dict[int, dict] = {}
    latencies: list[float] = []
    failures: list[BaseException] = []

    def worker():
        api = JudgeClient(url, timeout=3600)
        while True:
            try:
                ids = work.get_nowait()
            except queue.Empty:
                return
            items = [{"id": i, "instruction": pairs[i][0], "response_1": pairs[i][1], "response_2": pairs[i][2]}
                     for i in ids]
            t = time.perf_counter()
            try:
                for r in api.compare(items):
                    results[r["id"]] = r
            except BaseException as e:  # noqa: BLE001 - reported after the run
                failures.append(e)
                return
            latencies.append(time.perf_counter() - t)

    threads = [threading.Thread(target=worker) for _ in range(args.clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    if failures:
        raise SystemExit(f"{len(failures)} client(s) failed, first: {failures[0]}")
    import urllib.request

    metrics = urllib.request.urlopen(url + "/metrics").read().decode()
    return results, seconds, latencies, metrics


def health_under_load(url: str) -> dict:
    import urllib.request

    from bench.serve_health import measure

    def queued() -> float:
        return metric_value(urllib.request.urlopen(url + "/metrics").read().decode(), "judge_queue_prompts ")

    rows = measure(url, queued)
    for shape, row in rows.items():
        print(f"/health under {shape}: p50 {row['health_p50_ms']} ms, p99 {row['health_p99_ms']} ms, max "
              f"{row['health_max_ms']} ms over {row['polls']} polls ({row['polls_over_100_ms']} over 100 ms; "
              f"{row['request_s']} s in the server)", file=sys.stderr)
    return rows


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--rl" in argv:  # RL-shaped traffic (OpenRLHF per-sample and whole-batch, groups per mode): bench/serve_rl.py
        from bench.serve_rl import main as rl_main

        return rl_main([a for a in argv if a != "--rl"])
    args = parse_args(argv)
    if args.threads:
        # Both sides get the same intra-op thread count: on a shared CPU, 2 spinning OpenMP threads
        # can be several times slower than 1, which would decide the ratio on its own.
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
        import torch

        torch.set_num_threads(args.threads)
    from transformers import AutoTokenizer

    from bench.workloads import synthetic_pairs
    from judge_core.embedded import tokenizer_dir

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir()))
    pairs = [p.as_tuple() for p in synthetic_pairs(args.n_pairs, seed=args.seed, tokenizer=tokenizer,
                                                   response_median=args.response_median,
                                                   response_p90=2 * args.response_median)]
    offline, offline_s, tokens, offline_model_s = run_offline(args, pairs)
    print(f"offline: {len(pairs)} pairs, {tokens} prompt tokens in {offline_s:.2f} s", file=sys.stderr)
    port = free_port()
    server = start_server(args, port)
    try:
        served, served_s, latencies, metrics = run_served(args, pairs, f"http://127.0.0.1:{port}")
        health = None if args.no_health_under_load else health_under_load(f"http://127.0.0.1:{port}")
    finally:
        server.send_signal(signal.SIGTERM)
        exit_code = server.wait(120)
    err = max(max(abs(served[i]["p1"] - s.p1), abs(served[i]["p2"] - s.p2)) for i, s in enumerate(offline) if s.ok)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    row = {
        "bench": "serve", "commit": commit, "model": args.model, "backend": args.backend,
        "token_budget": args.token_budget, "clients": args.clients, "pairs_per_request": args.pairs_per_request,
        "n_pairs": len(pairs), "prompt_tokens": tokens, "mean_prompt_tokens": round(tokens / (2 * len(pairs))),
        "offline_s": round(offline_s, 3), "offline_pairs_per_s": round(len(pairs) / offline_s, 3),
        "served_s": round(served_s, 3), "served_pairs_per_s": round(len(pairs) / served_s, 3),
        "served_tokens_per_s": round(tokens / served_s, 1),
        "ratio_vs_offline": round(offline_s / served_s, 3),
        "latency_p50_s": round(percentile(latencies, 50), 3), "latency_p99_s": round(percentile(latencies, 99), 3),
        "threads": args.threads, "offline_model_s": round(offline_model_s, 3),
        "served_model_s": round(metric_value(metrics, "judge_model_seconds_total"), 3),
        "batches": int(metric_value(metrics, "judge_batches_total")),
        "batch_fill_mean": round(metric_value(metrics, 'judge_batch_fill_ratio{window="mean"}'), 3),
        "max_abs_diff_pp": err, "server_exit_code": exit_code, "health_under_15mb": health,
    }
    print(json.dumps(row))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
