"""score_dataset: a Ray Dataset of pairs -> a Dataset of verdicts, one judge per replica (actor).

    import ray
    from judge_core.ray import score_dataset
    scored = score_dataset(ray.data.read_parquet("pairs/"), "org/judge", replicas=8, dtype="bf16")
    scored.write_parquet("verdicts/")          # {id, p1, p2, pass1, pass2, error, tokens}

Faults: each replica is a Ray actor that Ray restarts when its process dies (max_restarts=-1) and
whose batch Ray then retries (max_task_retries=-1), Ray Data's defaults for actor pools; a fatal CUDA error makes the replica exit on purpose
(faults.py). Ray may drop the rows of failed blocks when DataContext.max_errored_blocks is not 0:
score_dataset refuses to run then, so a failed batch fails the job instead of vanishing.
"""

from __future__ import annotations

import inspect
import os
from typing import Any, Sequence

from .blocks import block_tokens_for, token_blocks
from .faults import TEST_HOOKS
from .replica import JudgeReplica, check_columns

def check_judge_options(options: dict) -> dict:
    """Judge.from_pretrained keywords, checked on the driver (a misspelled one fails before any actor)."""
    from ..api import Judge

    accepted = set(inspect.signature(Judge.from_pretrained).parameters) - {"cls", "path_or_repo_id", "device"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise TypeError(f"score_dataset: unknown judge option(s) {unknown}; Judge.from_pretrained takes "
                        f"{sorted(accepted)}")
    return options


def cluster_gpus() -> float:
    import ray

    return float(ray.cluster_resources().get("GPU", 0))


def check_errored_blocks() -> None:
    from ray.data import DataContext

    allowed = DataContext.get_current().max_errored_blocks
    if allowed != 0:
        raise ValueError(f"DataContext.max_errored_blocks is {allowed}: Ray would drop the rows of failed blocks "
                         "without a trace; judge_core needs 0 (a failed batch fails the job)")


def score_dataset(ds, model: str, *, replicas: int, columns: dict | None = None, packed: bool = False,
                  batch_size: int = 256, num_gpus: float | None = None, num_cpus: float | None = None,
                  device: str | None = None, runtime_env: dict | None = None, **judge_options: Any):
    """The scored Dataset (lazy, as Ray Data is): one row per input pair, columns {id, p1, p2, pass1,
    pass2, error, tokens}; `error` is null for a scored pair, p1..pass2 are null for an error row.

    model: checkpoint dir, hub id (each node reads its own Hugging Face cache) or `tiny`.
    replicas: actors, one Judge each. num_gpus: per replica (default: 1 when the cluster has GPUs).
    columns: input column names by role, e.g. {"id": "uid", "instruction": "prompt"}.
    packed: each input row is a block of pairs (see pairs_dataset): one block per replica call.
    batch_size: rows per replica call when not packed (Ray needs an explicit size with GPUs).
    judge_options: the other Judge.from_pretrained arguments (dtype, backend, token_budget, quantization,
        chat_template_kwargs, max_context, ascii_json, revision, ...).
    Faults: Ray's actor-pool defaults restart a replica whose process died (max_restarts=-1) and retry
    its batch (max_task_retries=-1); they are not passed here because ray_remote_args is deprecated
    (removed in Ray 2.64).
    """
    from ray.data import ActorPoolStrategy

    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
        raise ValueError(f"replicas must be a positive integer, got {replicas!r}")
    check_columns(columns)
    check_judge_options(judge_options)
    check_errored_blocks()
    if num_gpus is None:
        num_gpus = 1 if cluster_gpus() > 0 else 0
    hooks = {name: os.environ[name] for name in TEST_HOOKS if os.environ.get(name)}
    if hooks:  # the tests' fault-injection hooks reach the actors of this job only
        runtime_env = dict(runtime_env or {})
        runtime_env["env_vars"] = {**runtime_env.get("env_vars", {}), **hooks}
    return ds.map_batches(JudgeReplica, fn_constructor_kwargs={"model": str(model), "judge_options": judge_options,
                                                               "columns": columns, "device": device, "packed": packed},
                          batch_format="pyarrow", batch_size=1 if packed else batch_size,
                          compute=ActorPoolStrategy(size=replicas), num_cpus=num_cpus, num_gpus=num_gpus or None,
                          runtime_env=runtime_env, udf_modifying_row_count=packed)


def packed_blocks(rows: Sequence[dict], *, block_tokens: int, id_column: str = "id") -> list:
    """pyarrow Tables of one packed row each (every column a list): the rows grouped by instruction and cut
    into blocks of about block_tokens estimated tokens. Rows: dicts with id, instruction, response_1,
    response_2 (strings; normalize them first)."""
    import pyarrow as pa

    roles = ("instruction", "response_1", "response_2")
    texts = {role: [row[role] for row in rows] for role in roles}
    tables = []
    for block in token_blocks(texts["instruction"], texts["response_1"], texts["response_2"], block_tokens):
        columns = {id_column: [[rows[i][id_column] for i in block]]}
        columns.update({role: pa.array([[texts[role][i] for i in block]], pa.list_(pa.string())) for role in roles})
        tables.append(pa.table(columns))
    return tables


def pairs_dataset(pairs: Sequence[Any], *, token_budget: int | str = 32768, block_tokens: int | None = None):
    """A packed Dataset of `pairs` ((instruction, response_1, response_2) tuples or dicts) for
    score_dataset(..., packed=True): token-sized blocks, pairs of one instruction together; each output
    row's id is the pair's index in `pairs`. Raises PairError for a pair that is not three strings."""
    import ray

    from ..pairs import normalize_pair

    rows = []
    for i, pair in enumerate(pairs):
        instruction, a, b = normalize_pair(pair)
        rows.append({"id": i, "instruction": instruction, "response_1": a, "response_2": b})
    tables = packed_blocks(rows, block_tokens=block_tokens or block_tokens_for(token_budget))
    return ray.data.from_arrow_refs([ray.put(t) for t in tables])
