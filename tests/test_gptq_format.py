"""GPTQ format: packing against a slow bit-by-bit reader written here from DESIGN §4, config validation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from judge_core.gptq.dequant import dequantize_reference
from judge_core.gptq.format import (QuantConfig, default_g_idx, is_gptq_checkpoint, pack_cols, pack_rows,
                                    stored_zeros, unpack_cols, unpack_rows)


def slow_dequantize(qweight, qzeros, scales, g_idx, checkpoint_format):
    """W [out, in] float64, one element at a time, straight from the format description:
    qweight [in/8, out] holds row 8k+s of column j in bits 4s..4s+3 of word [k, j]; qzeros [groups, out/8]
    holds column 8c+s in bits 4s.. of word [g, c]; v1 ("gptq") stores z - 1 (4-bit wrap), v2 stores z."""
    qw = qweight.numpy().astype(np.int64) & 0xFFFFFFFF
    qz = qzeros.numpy().astype(np.int64) & 0xFFFFFFFF
    sc = scales.float().numpy().astype(np.float64)
    g = g_idx.numpy()
    n_in, n_out = qw.shape[0] * 8, qw.shape[1]
    w = np.zeros((n_out, n_in))
    for i in range(n_in):
        for j in range(n_out):
            q = (int(qw[i // 8, j]) >> (4 * (i % 8))) & 0xF
            z = (int(qz[g[i], j // 8]) >> (4 * (j % 8))) & 0xF
            if checkpoint_format == "gptq":
                z = (z + 1) % 16
            w[j, i] = sc[g[i], j] * (q - z)
    return w


def random_layer(n_in, n_out, group_size, *, desc_act, sym, checkpoint_format, seed=0):
    """Random codes and fp16 scales -> (packed tensors, W [out, in] computed from the codes directly)."""
    gen = torch.Generator().manual_seed(seed)
    cfg = QuantConfig(group_size=group_size, desc_act=desc_act, sym=sym, checkpoint_format=checkpoint_format)
    n_groups = cfg.n_groups(n_in)
    q = torch.randint(0, 16, (n_in, n_out), generator=gen, dtype=torch.int32)
    if sym:
        z = torch.full((n_groups, n_out), 8, dtype=torch.int32)
    else:
        z = torch.randint(0, 16, (n_groups, n_out), generator=gen, dtype=torch.int32)
    scales = (torch.rand(n_groups, n_out, generator=gen) * 0.1 + 1e-3).half()
    g_idx = default_g_idx(n_in, group_size)
    if desc_act:
        g_idx = g_idx[torch.randperm(n_in, generator=gen)]
    tensors = {"qweight": pack_rows(q), "qzeros": pack_cols(stored_zeros(z, cfg)), "scales": scales,
               "g_idx": g_idx}
    w = ((q - z[g_idx.long()]).double() * scales[g_idx.long()].double()).t()
    return cfg, tensors, w


def test_pack_unpack_round_trip():
    gen = torch.Generator().manual_seed(1)
    q = torch.randint(0, 16, (48, 24), generator=gen, dtype=torch.int32)
    assert torch.equal(unpack_rows(pack_rows(q)), q)
    assert torch.equal(unpack_cols(pack_cols(q)), q)
    assert pack_rows(q).dtype == torch.int32 and pack_rows(q).shape == (6, 24)
    assert pack_cols(q).shape == (48, 3)
    # Low nibble first: rows 0..7 = 1..8 give the word 0x87654321.
    col = torch.arange(1, 9, dtype=torch.int32).view(8, 1)
    assert int(pack_rows(col)[0, 0]) == 0x87654321 - 2**32
    # Symmetric v1 zeros (8, stored as 7) are the familiar 0x77777777 words; v2 stores 0x88888888.
    eights = torch.full((1, 8), 8, dtype=torch.int32)
    assert int(pack_cols(stored_zeros(eights, QuantConfig(checkpoint_format="gptq")))[0, 0]) == 0x77777777
    assert int(pack_cols(stored_zeros(eights, QuantConfig(checkpoint_format="gptq_v2")))[0, 0]) == 0x88888888 - 2**32


def test_pack_rejects_shapes_that_do_not_divide():
    with pytest.raises(ValueError, match="12 input rows"):
        pack_rows(torch.zeros(12, 8, dtype=torch.int32))
    with pytest.raises(ValueError, match="12 output columns"):
        pack_cols(torch.zeros(2, 12, dtype=torch.int32))


@pytest.mark.parametrize("checkpoint_format", ["gptq", "gptq_v2"])
@pytest.mark.parametrize("sym", [True, False])
@pytest.mark.parametrize("group_size,desc_act", [(16, False), (32, False), (-1, False), (16, True), (32, True)])
def test_twin_matches_slow_reader(checkpoint_format, sym, group_size, desc_act):
    cfg, t, w_codes = random_layer(64, 24, group_size, desc_act=desc_act, sym=sym,
                                   checkpoint_format=checkpoint_format)
    slow = torch.from_numpy(slow_dequantize(t["qweight"], t["qzeros"], t["scales"], t["g_idx"], checkpoint_format))
    twin = dequantize_reference(t["qweight"], t["qzeros"], t["scales"], t["g_idx"], cfg, torch.float64).t()
    err_codes = (slow - w_codes).abs().max().item()
    err_twin = (twin - slow).abs().max().item()
    print(f"{checkpoint_format} sym={sym} gs={group_size} desc_act={desc_act}: "
          f"slow vs codes max |delta| = {err_codes:.3g}, twin vs slow max |delta| = {err_twin:.3g}")
    assert err_codes == 0 and err_twin == 0


def test_v1_zero_of_zero_wraps_like_auto_gptq():
    """z = 0 in v1 is stored as nibble 15 and read back as (15 + 1) & 15 = 0."""
    cfg = QuantConfig(checkpoint_format="gptq", sym=False, group_size=-1)
    z = torch.zeros(1, 8, dtype=torch.int32)
    words = pack_cols(stored_zeros(z, cfg))
    assert int(words[0, 0]) == -1  # 0xFFFFFFFF
    qweight = pack_rows(torch.full((8, 8), 3, dtype=torch.int32))
    w = dequantize_reference(qweight, words, torch.ones(1, 8).half(), torch.zeros(8, dtype=torch.int32), cfg)
    assert torch.equal(w, torch.full((8, 8), 3.0))


def test_quant_config_parsing_and_errors():
    cfg = QuantConfig.from_json({"quant_method": "gptq", "bits": 4, "group_size": -1, "desc_act": True,
                                 "sym": False, "checkpoint_format": "gptq_v2"})
    assert cfg == QuantConfig(group_size=-1, desc_act=True, sym=False, checkpoint_format="gptq_v2")
    assert cfg.zero_offset == 0 and QuantConfig().zero_offset == 1
    assert QuantConfig.from_json({"bits": 4, "format": "gptq_v2"}).checkpoint_format == "gptq_v2"
    assert QuantConfig.from_json({"bits": 4}).checkpoint_format == "gptq"  # absent means v1
    with pytest.raises(ValueError, match="bits=8"):
        QuantConfig.from_json({"bits": 8})
    with pytest.raises(ValueError, match="checkpoint_format='marlin'"):
        QuantConfig.from_json({"bits": 4, "checkpoint_format": "marlin"})
    with pytest.raises(ValueError, match="group_size=0"):
        QuantConfig.from_json({"bits": 4, "group_size": 0})
    with pytest.raises(ValueError, match="quant_method='awq'"):
        QuantConfig.from_json({"quant_method": "awq", "bits": 4})
    with pytest.raises(ValueError, match="dynamic"):
        QuantConfig.from_json({"bits": 4, "dynamic": {"-:.*lm_head": {}}})


def test_is_gptq_checkpoint(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "config.json").write_text(json.dumps({"quantization_config": {"quant_method": "gptq"}}))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "config.json").write_text(json.dumps({"text_config": {"quantization_config": {"bits": 4}}}))
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "config.json").write_text(json.dumps({"model_type": "qwen3_5"}))
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "config.json").write_text(json.dumps({"quantization_config": {"quant_method": "awq"}}))
    assert [is_gptq_checkpoint(tmp_path / n) for n in "abcd"] == [True, True, False, False]
