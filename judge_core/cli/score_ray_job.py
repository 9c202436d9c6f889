"""The driver's side of a `judge-core score --replicas N` run: stage the rows, run Ray Data, write verdicts.

stage(): every input row not already in OUT gets its place in `keys` (input order). Rows answered
without a model (malformed lines, pairs that are not three strings, rows finished in OUT.partial) are
kept aside; the pairs to judge get a sequence number and go, in windows grouped by instruction and
cut by estimated tokens, into Ray's object store as packed blocks (judge_core/ray/blocks.py).
run(): the blocks go through a pool of JudgeReplica actors; each verdict comes back with its sequence
number and goes to the OrderedWriter under its key. Every staged pair must come back exactly once.
"""

from __future__ import annotations

import logging
import os
import sys
import time

from ..pairs import PairError, normalize_pair
from ..scoring import PairScore
from .model_arg import parse_budget


class JobFailed(RuntimeError):
    """The Ray job ended without every staged row: replicas that could not load the model, a batch that
    failed past its retries, or rows missing from (or doubled in) Ray's output."""


class RayJob:
    def __init__(self, args, judge_options: dict):
        from ..ray.blocks import block_tokens_for

        self.args, self.judge_options = args, judge_options
        self.block_tokens = args.block_tokens or block_tokens_for(parse_budget(args.token_budget))
        self.keys: list = []          # every row still to write, in input order
        self.answered: dict = {}      # key -> (record, came from the journal), for rows needing no model
        self.judge_keys: list = []    # sequence number -> key of each pair sent to Ray
        self.judge_idents: list = []  # sequence number -> the output row's identity fields
        self.refs: list = []          # the staged blocks
        self.malformed = 0
        self.owns_ray = False

    # -- before Ray runs: every row read, checked and placed ----------------------------------------
    def stage(self, rows, existing) -> None:
        from ..ray.blocks import GROUP_WINDOW_PAIRS

        window: list[dict] = []
        for row in rows:  # the rows OUT does not answer yet (score_resume.ResumeCheck.pending)
            self.keys.append(row.key)
            if row.key in existing.carried:
                self.answered[row.key] = (existing.carried.pop(row.key), True)
                continue
            if row.error is not None:
                self.answered[row.key] = ({**row.ident, "error": row.error}, False)
                self.malformed += 1
                continue
            try:
                instruction, a, b = normalize_pair(row.pair)
            except PairError as e:  # the same error row compare_many would make
                self.answered[row.key] = ({**row.ident, **PairScore.failed(str(e)).to_dict()}, False)
                continue
            window.append({"id": len(self.judge_keys), "instruction": instruction, "response_1": a, "response_2": b})
            self.judge_keys.append(row.key)
            self.judge_idents.append(row.ident)
            if len(window) >= GROUP_WINDOW_PAIRS:
                self._put(window)
                window = []
        if window:
            self._put(window)

    def _put(self, window: list[dict]) -> None:
        import ray

        from ..ray.dataset import packed_blocks

        if not self.refs:
            self.owns_ray = connect(self.args.ray_address)
        self.refs += [ray.put(table) for table in packed_blocks(window, block_tokens=self.block_tokens)]

    # -- Ray runs the blocks; verdicts go to OUT in input order --------------------------------------
    def run(self, writer, existing) -> None:
        from tqdm.auto import tqdm

        writer.expect(self.keys)
        bar = tqdm(total=len(self.keys), unit="pair", desc=f"judging on {self.args.replicas} replica(s)",
                   disable=self.args.no_progress, dynamic_ncols=True)
        try:
            for key in self.keys:
                if key in self.answered:
                    record, journaled = self.answered.pop(key)
                    writer.put(key, record, journaled=journaled)
                    bar.update(1)
            if self.refs:
                self._judge(writer, bar)
        finally:
            bar.close()

    def _judge(self, writer, bar) -> None:
        seen = bytearray(len(self.judge_keys))
        t0, tokens = time.perf_counter(), 0
        batches = iter(self._scored().iter_batches(batch_size=None, batch_format="pyarrow"))
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                break
            except KeyboardInterrupt:
                raise
            except Exception as e:  # noqa: BLE001 - Ray wraps the replica's error in its own types
                raise JobFailed(f"the Ray job failed: {first_line(e)}") from e
            for row in batch.to_pylist():
                seq = row["id"]
                if seen[seq]:
                    raise JobFailed(f"Ray returned pair {seq} ({self.judge_keys[seq]}) twice")
                seen[seq] = 1
                if row["error"] is not None:
                    record = {"error": row["error"]}
                else:
                    record = {"p1": row["p1"], "p2": row["p2"], "pass1": row["pass1"], "pass2": row["pass2"]}
                writer.put(self.judge_keys[seq], {**self.judge_idents[seq], **record})
                tokens += row["tokens"]
            bar.update(batch.num_rows)
            bar.set_postfix(tok_s=f"{tokens / max(time.perf_counter() - t0, 1e-9):,.0f}", refresh=False)
        missing = len(seen) - sum(seen)
        if missing:
            first = next(i for i, s in enumerate(seen) if not s)
            raise JobFailed(f"Ray returned {len(seen) - missing} of {len(seen)} pairs (first missing: "
                            f"{self.judge_keys[first]})")

    def _scored(self):
        import ray.data
        from ray.data import DataContext

        from ..ray.dataset import score_dataset

        quiet_ray_data()
        DataContext.get_current().max_errored_blocks = 0  # a failed block fails the job, never vanishes
        a = self.args
        ds = ray.data.from_arrow_refs(self.refs)
        return score_dataset(ds, model_spec(a.model), replicas=a.replicas, packed=True, num_gpus=a.replica_gpus,
                             num_cpus=a.replica_cpus, device=a.device, **self.judge_options)

    def close(self) -> None:
        self.refs = []
        if self.owns_ray:
            import ray

            ray.shutdown()
            self.owns_ray = False


def model_spec(model: str) -> str:
    """MODEL as the replicas need it: a local directory made absolute (actors run in other directories)."""
    return os.path.abspath(model) if os.path.exists(model) else model


def first_line(error: BaseException) -> str:
    """The replica's own error, not Ray's traceback banner."""
    text = str(error).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    cause = next((line for line in reversed(lines) if "Error" in line or "error" in line), None)
    return f"{type(error).__name__}: {cause or (lines[0] if lines else '')}"[:500]


def quiet_ray_data() -> None:
    """No Ray Data progress bars or per-operator logs: the run has its own bar on stderr."""
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.enable_auto_log_stats = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)


def connect(address: str | None) -> bool:
    """Join the cluster at `address`, or start a local Ray; True when this call started Ray (and owns it)."""
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict = {"logging_level": logging.WARNING}
    if address is None:
        kwargs["include_dashboard"] = False
    print(f"ray: {'starting a local Ray' if address is None else 'joining ' + address}", file=sys.stderr)
    ray.init(address=address, **kwargs)
    return True
