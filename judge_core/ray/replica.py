"""One judge replica: the callable class Ray Data runs as an actor pool, one Judge per actor.

    ds.map_batches(JudgeReplica, fn_constructor_kwargs={"model": "org/judge"}, batch_format="pyarrow",
                   compute=ActorPoolStrategy(size=8), num_gpus=1, batch_size=None)

A batch (a pyarrow Table) of {id, instruction, response_1, response_2} rows becomes a Table of
{id, p1, p2, pass1, pass2, error, tokens} rows, one per input row, in the batch's order: a bad pair is
an error row (error set, numbers null), never an exception. With packed=True each input row is a whole
block of pairs (every column a list, see blocks.py): Ray then hands a replica exactly one token-sized
block per call (batch_size=1), and the output has one row per pair of the block. Ray gives each actor its own GPU through
CUDA_VISIBLE_DEVICES, so a replica with a GPU uses it as `cuda`.
"""

from __future__ import annotations

from typing import Any

from .faults import exit_for_restart, is_fatal_device_error, run_test_hooks

DEFAULT_COLUMNS = {"id": "id", "instruction": "instruction", "response_1": "response_1", "response_2": "response_2"}


def check_columns(columns: dict | None) -> dict:
    """The input column names: DEFAULT_COLUMNS with `columns` (role -> column name) over them."""
    merged = dict(DEFAULT_COLUMNS)
    for role, name in (columns or {}).items():
        if role not in DEFAULT_COLUMNS:
            raise ValueError(f"columns: unknown role {role!r}; the roles are {sorted(DEFAULT_COLUMNS)}")
        if not isinstance(name, str) or not name:
            raise ValueError(f"columns[{role!r}] must be a column name, got {name!r}")
        merged[role] = name
    return merged


def load_judge(model: str, judge_options: dict | None, device: str | None):
    """Judge.from_pretrained(model, **judge_options) on this actor's device (`tiny`: the embedded judge)."""
    import torch

    from ..api import Judge

    if model == "tiny":
        from ..embedded import default_checkpoint

        model = str(default_checkpoint())
    options = dict(judge_options or {})
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"  # Ray shows this actor its own GPUs only
    return Judge.from_pretrained(model, device=device, **options)


class JudgeReplica:
    """Ray Data callable class. model: checkpoint dir, hub id or `tiny`; judge_options: the other
    Judge.from_pretrained arguments (dtype, backend, token_budget, quantization, chat_template_kwargs, ...);
    columns: input column names by role (id, instruction, response_1, response_2)."""

    def __init__(self, model: str, judge_options: dict | None = None, columns: dict | None = None,
                 device: str | None = None, packed: bool = False):
        self.columns = check_columns(columns)
        self.packed = packed
        try:
            self.judge = load_judge(model, judge_options, device)
        except BaseException as e:
            if is_fatal_device_error(e):
                exit_for_restart(e)
            raise

    def compare_many(self, pairs: list) -> list:
        """PairScores for `pairs` (the pool's call, pool.py), with the same fatal-error exit."""
        run_test_hooks()
        try:
            return self.judge.compare_many(pairs)
        except BaseException as e:
            if is_fatal_device_error(e):
                exit_for_restart(e)
            raise

    def __call__(self, batch):
        import pyarrow as pa

        run_test_hooks()
        if isinstance(batch, dict):  # a caller that asked for numpy batches
            batch = pa.table(batch)
        missing = [name for name in self.columns.values() if name not in batch.column_names]
        if missing:
            raise ValueError(f"judge_core replica: input column(s) {missing} not found; the batch has "
                             f"{batch.column_names} (pass columns={{role: name}} to map them)")
        c = self.columns
        if self.packed:  # one row per block: its lists, flattened, are the pairs
            batch = pa.table({name: batch.column(name).combine_chunks().flatten() for name in c.values()})
        texts = {role: batch.column(c[role]).to_pylist() for role in ("instruction", "response_1", "response_2")}
        pairs = [{"instruction": i, "response_1": a, "response_2": b}
                 for i, a, b in zip(texts["instruction"], texts["response_1"], texts["response_2"])]
        try:
            scores = self.judge.compare_many(pairs)
        except BaseException as e:
            if is_fatal_device_error(e):
                exit_for_restart(e)  # Ray restarts this actor and retries the batch
            raise
        return scores_table(batch.column(c["id"]), scores)


def scores_table(ids, scores: list[Any]):
    """The output Table: id (as given), p1, p2 (null for an error row), pass1, pass2 ([P(A), P(B)]),
    error (null when scored), tokens (both prompts; 0 when the pair never reached the tokenizer)."""
    import pyarrow as pa

    ok = [s.error is None for s in scores]
    return pa.table({
        "id": ids,
        "p1": pa.array([s.p1 if good else None for s, good in zip(scores, ok)], pa.float64()),
        "p2": pa.array([s.p2 if good else None for s, good in zip(scores, ok)], pa.float64()),
        "pass1": pa.array([list(s.pass1) if good else None for s, good in zip(scores, ok)], pa.list_(pa.float64())),
        "pass2": pa.array([list(s.pass2) if good else None for s, good in zip(scores, ok)], pa.list_(pa.float64())),
        "error": pa.array([s.error for s in scores], pa.string()),
        "tokens": pa.array([int(sum(s.tokens)) for s in scores], pa.int64()),
    })
