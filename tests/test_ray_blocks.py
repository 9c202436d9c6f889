"""Token-sized blocks for Ray (judge_core/ray/blocks.py): no Ray needed."""

import pytest

from judge_core.ray.blocks import cut_blocks, estimated_tokens, grouped_order, token_blocks


def test_grouped_order_keeps_instruction_groups_in_first_appearance_order():
    instructions = ["b", "a", "b", "c", "a", "b"]
    assert grouped_order(instructions) == [0, 2, 5, 1, 4, 3]


def test_blocks_cover_every_row_once_and_never_split_a_group_that_fits():
    instructions = [f"item {i % 5}" for i in range(40)]
    responses = ["word " * (10 + 7 * i) for i in range(40)]
    tokens = [estimated_tokens(i, r, r) for i, r in zip(instructions, responses)]
    budget = 3 * max(tokens)
    blocks = token_blocks(instructions, responses, responses, budget)
    flat = [i for block in blocks for i in block]
    assert sorted(flat) == list(range(40))  # every row once
    for block in blocks:
        assert sum(tokens[i] for i in block) <= budget or len(block) == 1
    # a group (8 rows of one instruction) larger than a block is split, but its rows stay adjacent
    assert flat == grouped_order(instructions)


def test_a_group_that_fits_moves_to_a_new_block_whole():
    instructions = ["x", "x", "y", "y", "y"]
    blocks = cut_blocks(grouped_order(instructions), [4, 4, 3, 3, 3], 10, instructions)
    assert blocks == [[0, 1], [2, 3, 4]]  # "y" (9) does not fit after "x" (8): a new block, not split
    with pytest.raises(ValueError, match="block_tokens must be a positive integer, got 0"):
        cut_blocks([0], [1], 0, ["x"])
