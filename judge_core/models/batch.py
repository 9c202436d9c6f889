"""A packed batch: prompts laid back to back with nothing between them, and where each one starts.

Built with numpy on the host and copied to the device in ONE transfer (nano-vllm's habit): token ids,
positions, cu_seqlens, last-row indices (and, with shared prefixes, the fork metadata) travel as one
int64 tensor, pinned on CUDA and copied without blocking, and are sliced into views on arrival.

With a PrefixPolicy, prompts that share a prefix are laid out as a tree of segments (judge_core/prefix.py):
each distinct prefix is one run of rows, each suffix another, rows grouped by tree level (level 0 =
roots). A "sequence" of the layout (cu_seqlens) is then a segment, not a prompt; `forks` says how the
token mixers continue a segment from its parent: the Gated DeltaNet state level by level, the conv
window from the parent's last rows, attention over the ancestors' keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from ..prefix import PrefixPolicy, as_token_array, build_forest

# Qwen3.5's causal conv width (linear_conv_kernel_dim): a forked segment brings its parent chain's last
# CONV_CONTEXT rows. A model with a wider conv checks `forks.conv_context` and refuses.
CONV_CONTEXT = 3


@dataclass
class ForkLevel:
    """The segments of one tree level: rows [row_start, row_end), their bounds relative to row_start
    (host list and device tensor), and for level >= 1 each segment's parent index in the level above."""

    row_start: int
    row_end: int
    bounds: list[int]
    cu_seqlens: torch.Tensor
    parent: torch.Tensor | None
    has_children: bool
    _cache: dict = field(default_factory=dict, repr=False)

    def cached(self, key: str, build):
        """As PackedBatch.cached: the level is the `batch` of its own Gated DeltaNet calls."""
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]


@dataclass
class Forks:
    """How suffix segments continue their prefixes (all index tensors int64 on the batch's device).

    conv_rows [T_ext]: the conv's input stream (each segment's CONV_CONTEXT inherited rows, then its
    own), as row indices; conv_positions [T_ext] their positions in the prompt; conv_keep [T]: where
    each row's own output sits in that stream. key_rows [T_k]: per segment, the rows of all its
    ancestors then its own (attention's keys); cu_keys [S + 1] / key_bounds: their bounds.
    """

    levels: list[ForkLevel]
    conv_context: int
    conv_rows: torch.Tensor
    conv_positions: torch.Tensor
    conv_keep: torch.Tensor
    key_rows: torch.Tensor
    cu_keys: torch.Tensor
    key_bounds: list[int]
    max_keys: int


@dataclass
class PackedBatch:
    """Layout of N prompts over T rows (S segments; S = N and forks None when nothing is shared).

    input_ids: [T] int64; positions: [T] int64, each row's position in its prompt; cu_seqlens: [S + 1]
    int64 (segment s is rows cu_seqlens[s]:cu_seqlens[s + 1]); last_rows: [N] int64 (each prompt's last
    row, in batch order); bounds: cu_seqlens as a host list; max_seqlen: the longest segment;
    prompt_tokens: the prompts' total length (T is smaller when prefixes are shared).
    """

    input_ids: torch.Tensor
    positions: torch.Tensor
    cu_seqlens: torch.Tensor
    last_rows: torch.Tensor
    bounds: list[int]
    max_seqlen: int
    prompt_tokens: int = 0
    forks: Forks | None = None
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def num_tokens(self) -> int:
        return self.bounds[-1]

    @property
    def num_prompts(self) -> int:
        return int(self.last_rows.shape[0])

    def cached(self, key: str, build):
        """Something derived from the layout, built once per batch and shared by all layers."""
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    @classmethod
    def from_token_lists(cls, batch: Sequence[Sequence[int]], device: torch.device | str,
                         prefixes: PrefixPolicy | None = None) -> "PackedBatch":
        """Concatenate the prompts (lists or int32 arrays), each shared prefix once when `prefixes` is
        given; one host-to-device copy."""
        if len(batch) == 0:
            raise ValueError("empty batch: expected at least one token list")
        seqs = [as_token_array(s) for s in batch]
        for i, tokens in enumerate(seqs):
            if len(tokens) == 0:
                raise ValueError(f"prompt {i} of the batch is empty: every prompt needs at least one token")
        forest = build_forest(seqs, prefixes)
        segments = forest.segments
        # Rows level by level (a level's Gated DeltaNet runs after its parents'), creation order inside.
        row_order = sorted(range(len(segments)), key=lambda s: (segments[s].level, s))
        lengths = np.array([segments[s].end - segments[s].start for s in row_order], dtype=np.int64)
        bounds = np.zeros(len(segments) + 1, dtype=np.int64)
        np.cumsum(lengths, out=bounds[1:])
        slot = {s: r for r, s in enumerate(row_order)}          # segment -> its place in row order
        starts = np.array([segments[s].start for s in row_order], dtype=np.int64)
        ids = np.concatenate([seqs[segments[s].owner][segments[s].start:segments[s].end] for s in row_order])
        positions = np.arange(int(bounds[-1]), dtype=np.int64) - np.repeat(bounds[:-1] - starts, lengths)
        last_rows = bounds[1:][[slot[leaf] for leaf in forest.leaf]] - 1
        parts = [ids.astype(np.int64), positions, bounds, last_rows]
        forked = forest.num_levels > 1
        if forked:
            fork_parts, build_views = _fork_metadata(segments, row_order, slot, bounds, positions)
            parts += fork_parts
        host = torch.from_numpy(np.concatenate(parts))
        device = torch.device(device)
        if device.type == "cuda":
            host = host.pin_memory()
        flat = host.to(device, non_blocking=True)
        views, offset = [], 0
        for part in parts:
            views.append(flat[offset:offset + len(part)])
            offset += len(part)
        bounds_list = bounds.tolist()
        return cls(input_ids=views[0], positions=views[1], cu_seqlens=views[2], last_rows=views[3],
                   bounds=bounds_list, max_seqlen=int(lengths.max()), prompt_tokens=sum(len(s) for s in seqs),
                   forks=build_views(views[4:]) if forked else None)


def _ranges(starts: list[int], lengths: list[int]) -> np.ndarray:
    """The concatenation of range(start, start + length) for each pair, in one vectorized step."""
    lengths_arr = np.asarray(lengths, dtype=np.int64)
    offsets = np.cumsum(lengths_arr) - lengths_arr
    return np.arange(int(lengths_arr.sum()), dtype=np.int64) + np.repeat(np.asarray(starts, np.int64) - offsets,
                                                                          lengths_arr)


def _fork_metadata(segments, row_order, slot, bounds, positions):
    """Host arrays for the forked mixers, and a function turning their device views into `Forks`."""
    num = len(row_order)
    level_of = [segments[s].level for s in row_order]
    parent_slot = [None if segments[s].parent is None else slot[segments[s].parent] for s in row_order]
    edges = bounds.tolist()
    # Each segment's ancestors as row ranges, root first (a parent precedes its children in row order).
    chains: list[list[tuple[int, int]]] = []
    for r in range(num):
        p = parent_slot[r]
        chains.append([] if p is None else chains[p] + [(edges[p], edges[p + 1] - edges[p])])
    key_starts, key_lengths, conv_starts, conv_lengths, keep_starts, keep_lengths = [], [], [], [], [], []
    conv_at = 0
    for r in range(num):
        own = (edges[r], edges[r + 1] - edges[r])
        for start, length in chains[r] + [own]:
            key_starts.append(start)
            key_lengths.append(length)
        # the chain's last CONV_CONTEXT rows, walking back over as many ancestors as that takes
        context, need = [], CONV_CONTEXT
        for start, length in reversed(chains[r]):
            take = min(need, length)
            context.append((start + length - take, take))
            need -= take
            if need == 0:
                break
        taken = CONV_CONTEXT - need
        for start, length in reversed(context):
            conv_starts.append(start)
            conv_lengths.append(length)
        conv_starts.append(own[0])
        conv_lengths.append(own[1])
        keep_starts.append(conv_at + taken)
        keep_lengths.append(own[1])
        conv_at += taken + own[1]
    conv_all = _ranges(conv_starts, conv_lengths)
    conv_keep = _ranges(keep_starts, keep_lengths)
    key_all = _ranges(key_starts, key_lengths)
    segment_keys = [sum(length for _, length in chains[r]) + edges[r + 1] - edges[r] for r in range(num)]
    key_bounds = np.zeros(num + 1, dtype=np.int64)
    np.cumsum(segment_keys, out=key_bounds[1:])

    levels = []
    has_children = set(p for p in parent_slot if p is not None)
    for level in range(max(level_of) + 1):
        members = [r for r in range(num) if level_of[r] == level]   # contiguous in row order
        lo, hi = members[0], members[-1] + 1
        level_bounds = bounds[lo:hi + 1] - bounds[lo]
        parents = (np.array([parent_slot[r] for r in members]) - levels[-1]["first"]) if level else None
        levels.append({"first": lo, "row_start": int(bounds[lo]), "row_end": int(bounds[hi]),
                       "bounds": level_bounds, "parent": parents,
                       "has_children": any(r in has_children for r in members)})
    parts = [conv_all, positions[conv_all], conv_keep, key_all, key_bounds]
    for lv in levels:
        parts.append(lv["bounds"])
        if lv["parent"] is not None:
            parts.append(lv["parent"])

    def build(views: list[torch.Tensor]) -> Forks:
        conv_r, conv_p, keep, keys, cu_keys = views[:5]
        out, k = [], 5
        for lv in levels:
            cu = views[k]
            k += 1
            parent = None
            if lv["parent"] is not None:
                parent = views[k]
                k += 1
            out.append(ForkLevel(lv["row_start"], lv["row_end"], lv["bounds"].tolist(), cu, parent,
                                 lv["has_children"]))
        return Forks(out, CONV_CONTEXT, conv_r, conv_p, keep, keys, cu_keys, key_bounds.tolist(), max(segment_keys))

    return parts, build
