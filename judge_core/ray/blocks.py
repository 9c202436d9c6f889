"""Rows -> Ray blocks sized by tokens, with the pairs of one instruction kept together.

Why: a replica fills its token-budget batches only from the rows of the block it is given, so a block
must hold many batches' worth of tokens, not a fixed number of rows (pairs range from 2k to 16k
tokens). And the pairs of one instruction (one item, one RL group) go in the same block, in a row,
so that prefix sharing finds them together. Token counts are estimated from characters here (the
driver has no tokenizer to spare); the replica tokenizes exactly.
"""

from __future__ import annotations

from typing import Sequence

# The system message, the JSON keys and the chat template add ~700 characters to each prompt.
PROMPT_OVERHEAD_CHARS = 700
# English prose runs ~4 characters per Qwen3.5 token; ascii JSON escapes (\u201c) make it fewer.
CHARS_PER_TOKEN = 3.5
# A block holds this many token budgets: its one part-filled last batch then costs ~3%, and at 55k
# tokens/s a 32k budget makes a ~10 s block, against Ray's ~10 ms per block (bench/RESULTS.md).
BUDGETS_PER_BLOCK = 16
# Rows are grouped by instruction within windows of this many pairs: OUT is written in input order,
# so rows finished ahead of an earlier one wait (in memory and the journal) at most a window.
GROUP_WINDOW_PAIRS = 16384


def estimated_tokens(instruction, response_1, response_2) -> int:
    """Both prompts of a pair, in tokens, from the characters of its texts (non-strings count 0)."""
    chars = sum(len(t) for t in (instruction, response_1, response_2) if isinstance(t, str))
    return int(2 * (chars + PROMPT_OVERHEAD_CHARS) / CHARS_PER_TOKEN)


def block_tokens_for(token_budget) -> int:
    """Tokens per block for a replica's token budget (an int, or "auto": taken as the 32768 default)."""
    return BUDGETS_PER_BLOCK * (token_budget if isinstance(token_budget, int) else 32768)


def grouped_order(instructions: Sequence) -> list[int]:
    """Indices with equal instructions next to each other: groups in order of first appearance, rows of a
    group in input order."""
    groups: dict = {}
    for i, instruction in enumerate(instructions):
        groups.setdefault(instruction if isinstance(instruction, str) else None, []).append(i)
    return [i for members in groups.values() for i in members]


def cut_blocks(order: Sequence[int], tokens: Sequence[int], block_tokens: int,
               instructions: Sequence) -> list[list[int]]:
    """Split `order` (grouped_order) into blocks of about block_tokens. A block is closed before an
    instruction group that would overflow it; only a group larger than a block is split."""
    if block_tokens < 1:
        raise ValueError(f"block_tokens must be a positive integer, got {block_tokens}")
    blocks: list[list[int]] = []
    current: list[int] = []
    used = 0
    k = 0
    while k < len(order):
        end = k  # the instruction group starting at k
        while end < len(order) and instructions[order[end]] == instructions[order[k]]:
            end += 1
        group_tokens = sum(tokens[i] for i in order[k:end])
        if current and used + group_tokens > block_tokens:
            blocks.append(current)
            current, used = [], 0
        for i in order[k:end]:
            if current and used + tokens[i] > block_tokens:
                blocks.append(current)
                current, used = [], 0
            current.append(i)
            used += tokens[i]
        k = end
    if current:
        blocks.append(current)
    return blocks


def token_blocks(instructions: Sequence, responses_1: Sequence, responses_2: Sequence,
                 block_tokens: int) -> list[list[int]]:
    """Row indices of each block: grouped by instruction, cut by estimated tokens."""
    tokens = [estimated_tokens(*texts) for texts in zip(instructions, responses_1, responses_2)]
    return cut_blocks(grouped_order(instructions), tokens, block_tokens, instructions)
