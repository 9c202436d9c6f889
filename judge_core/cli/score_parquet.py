"""Parquet in and out for `judge-core score` (the format Ray Data users keep their pairs in).

In: each row of IN.parquet is one input row ({id, instruction, response_1, response_2}, other columns
ignored), read a row group at a time; a row without a usable id is an error row carrying "line" (its
1-based row number), as a JSONL line would be.
Out: verdicts are written as JSONL to OUT.parquet.rows.jsonl (with its lock and journal: the same
durability and --resume as a JSONL OUT), and turned into OUT.parquet (written aside, then renamed)
when the run completes. --resume on a finished OUT.parquet reads its rows back first.
"""

from __future__ import annotations

import json
import os
from typing import Iterator

from .score_input import InputRow, usable_id

PARQUET_SUFFIXES = (".parquet", ".pq")
WORKING_SUFFIX = ".rows.jsonl"
ROW_GROUP = 1024  # rows decoded at a time


def is_parquet(path: str) -> bool:
    return path != "-" and path.lower().endswith(PARQUET_SUFFIXES)


def parquet_rows(path: str) -> Iterator[InputRow]:
    """Every row of IN.parquet as an InputRow, in order (keys as score_input.read_rows makes them)."""
    import pyarrow.parquet as pq

    seen: dict = {}
    number = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=ROW_GROUP):
        for row in batch.to_pylist():
            number += 1
            ident = row.get("id")
            if not usable_id(ident):
                yield InputRow(("line", number), {"id": None, "line": number},
                               error=f"line {number}: missing or invalid 'id' (a string or integer)")
                continue
            seen[ident] = occurrence = seen.get(ident, 0) + 1
            pair = {k: row[k] for k in ("instruction", "response_1", "response_2") if k in row}
            yield InputRow(("id", ident, occurrence), {"id": ident}, pair=pair)


def count_parquet_rows(path: str) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


def working_path(spec: str) -> str:
    return spec + WORKING_SUFFIX


def seed_working_file(spec: str) -> None:
    """--resume of a finished OUT.parquet: its rows, as JSONL, become the working file to continue."""
    import pyarrow.parquet as pq

    working = working_path(spec)
    if os.path.exists(working) or not os.path.exists(spec) or os.path.getsize(spec) == 0:
        return
    with open(working, "w", encoding="utf-8") as f:
        for batch in pq.ParquetFile(spec).iter_batches(batch_size=ROW_GROUP):
            for row in batch.to_pylist():
                f.write(json.dumps({k: v for k, v in row.items() if v is not None}, ensure_ascii=False) + "\n")


def write_parquet(spec: str) -> None:
    """OUT.parquet from the working JSONL (written aside and renamed, so a reader never sees half a file);
    the working file is removed afterwards. Columns: id, line, p1, p2, pass1, pass2, error."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    working = working_path(spec)
    with open(working, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    ids = [r.get("id") for r in rows]
    if any(isinstance(i, str) for i in ids) and any(isinstance(i, int) for i in ids):
        ids = [None if i is None else str(i) for i in ids]  # one column type: mixed ids become strings
    table = pa.table({
        "id": pa.array(ids),
        "line": pa.array([r.get("line") for r in rows], pa.int64()),
        "p1": pa.array([r.get("p1") for r in rows], pa.float64()),
        "p2": pa.array([r.get("p2") for r in rows], pa.float64()),
        "pass1": pa.array([r.get("pass1") for r in rows], pa.list_(pa.float64())),
        "pass2": pa.array([r.get("pass2") for r in rows], pa.list_(pa.float64())),
        "error": pa.array([r.get("error") for r in rows], pa.string()),
    })
    aside = spec + ".writing"
    pq.write_table(table, aside)
    os.replace(aside, spec)
    os.unlink(working)
