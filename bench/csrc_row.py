"""The csrc/ CUDA kernels against the Triton kernels and the torch twins they duplicate, at the 4B shape.

    python -m bench.csrc_row                 # on a CUDA machine (builds both extensions: ~1-2 min of nvcc)
    python -m bench.csrc_row --cpu-dry-run   # the same rows at a tiny shape, torch twins only (CI)

Two ops have three implementations each:
- the causal depthwise conv + SiLU of Gated DeltaNet (ops/conv.py): torch twin, Triton (the CUDA default),
  csrc/causal_conv1d_varlen.cu (JUDGE_CORE_CONV=cuda);
- the GPTQ 4-bit dequantizer (gptq/dequant.py): torch twin, Triton (the default), csrc/gptq_dequant.cu
  (JUDGE_CORE_GPTQ_KERNEL=cuda).
Each row: median seconds over --repeats timed calls (after one untimed), effective GB/s (bytes read +
written), and the max |difference| from the torch twin (0 expected for the dequantizers: bit-exact).

What decides keeping a csrc kernel (bench/RESULTS.md): it stays only where it beats the Triton kernel
by >= 10% at the 4B shape on the GPUs users run (H100/H200/B200), or where Triton is missing; otherwise
it goes, with its five nvcc compiles per CI run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

# The 4B's Gated DeltaNet conv: 2 x 16 key heads x 128 + 32 value heads x 128 channels, kernel 4; the
# rows of a 32k-token pack, read as a row-strided slice of the fused in_proj output (as the model does).
CONV_4B = dict(tokens=32768, channels=8192, kernel=4, stride=8192 + 4096 + 64)
CONV_TINY = dict(tokens=300, channels=64, kernel=4, stride=64 + 32 + 4)
# The 4B's widest GPTQ projection: gate_up, 2560 -> 2 x 9216, group 128.
GPTQ_4B = dict(n_in=2560, n_out=18432, group=128)
GPTQ_TINY = dict(n_in=64, n_out=256, group=16)


def _time(fn, device: torch.device, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def conv_rows(device: torch.device, shape: dict, repeats: int, impls: tuple[str, ...]) -> list[dict]:
    from judge_core.ops.conv import causal_conv1d_varlen

    gen = torch.Generator(device=device).manual_seed(0)
    tokens, channels, kernel = shape["tokens"], shape["channels"], shape["kernel"]
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    fused = torch.randn(tokens, shape["stride"], device=device, dtype=dtype, generator=gen)
    x = fused[:, :channels]                                         # row-strided, as in the model
    weight = torch.randn(channels, kernel, device=device, dtype=dtype, generator=gen)
    lengths = [tokens // 8] * 7 + [tokens - 7 * (tokens // 8)]
    positions = torch.cat([torch.arange(n, device=device) for n in lengths])
    twin = causal_conv1d_varlen(x, weight, positions, impl="torch").float()
    moved = 2 * tokens * channels * x.element_size()
    rows = []
    for impl in impls:
        row = {"row": "csrc", "op": "causal_conv1d_varlen", "impl": impl, "shape": shape, "dtype": str(dtype)}
        try:
            seconds = _time(lambda: causal_conv1d_varlen(x, weight, positions, impl=impl), device, repeats)
            err = (causal_conv1d_varlen(x, weight, positions, impl=impl).float() - twin).abs().max().item()
            row.update(status="ok", seconds=seconds, gb_per_s=moved / seconds / 1e9, max_abs_diff_vs_twin=err)
        except Exception as e:  # noqa: BLE001 - a kernel that cannot build is a row, not a lost run
            row.update(status="failed", reason=f"{type(e).__name__}: {e}"[:300])
        rows.append(row)
    return rows


def gptq_rows(device: torch.device, shape: dict, repeats: int, impls: tuple[str, ...]) -> list[dict]:
    from judge_core.gptq.dequant import dequantize_reference
    from judge_core.gptq.format import QuantConfig, pack_cols, pack_rows

    gen = torch.Generator().manual_seed(0)
    n_in, n_out, group = shape["n_in"], shape["n_out"], shape["group"]
    cfg = QuantConfig(bits=4, group_size=group, desc_act=False, sym=True, checkpoint_format="gptq")
    groups = n_in // group
    qweight = pack_rows(torch.randint(0, 16, (n_in, n_out), generator=gen)).to(device)
    qzeros = pack_cols(torch.randint(0, 15, (groups, n_out), generator=gen)).to(device)   # stored zero = z - 1
    scales = (torch.rand(groups, n_out, generator=gen) * 0.01).to(torch.float16).to(device)
    g_idx = (torch.arange(n_in) // group).to(torch.int32).to(device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    twin = dequantize_reference(qweight, qzeros, scales, g_idx, cfg, dtype).float()
    moved = qweight.numel() * 4 + qzeros.numel() * 4 + scales.numel() * 2 + n_in * n_out * torch.finfo(dtype).bits // 8
    rows = []
    for impl in impls:
        row = {"row": "csrc", "op": "gptq_dequant", "impl": impl, "shape": shape, "dtype": str(dtype)}
        try:
            if impl == "torch":
                fn = lambda: dequantize_reference(qweight, qzeros, scales, g_idx, cfg, dtype)  # noqa: E731
            elif impl == "triton":
                from judge_core.gptq.dequant_triton import dequantize_triton

                fn = lambda: dequantize_triton(qweight, qzeros, scales, g_idx, zero_offset=cfg.zero_offset,  # noqa: E731
                                               dtype=dtype)
            else:
                from judge_core.gptq.dequant_cuda import dequantize_cuda

                fn = lambda: dequantize_cuda(qweight, qzeros, scales, g_idx, zero_offset=cfg.zero_offset,  # noqa: E731
                                             dtype=dtype)
            seconds = _time(fn, device, repeats)
            err = (fn().float() - twin).abs().max().item()
            row.update(status="ok", seconds=seconds, gb_per_s=moved / seconds / 1e9, max_abs_diff_vs_twin=err)
        except Exception as e:  # noqa: BLE001
            row.update(status="failed", reason=f"{type(e).__name__}: {e}"[:300])
        rows.append(row)
    return rows


def run_rows(device: torch.device, *, dry_run: bool = False, repeats: int = 20) -> list[dict]:
    """Every row; on the CPU (dry run) only the torch twins run, at a tiny shape."""
    impls = ("torch",) if device.type != "cuda" else ("torch", "triton", "cuda")
    conv_shape, gptq_shape = (CONV_TINY, GPTQ_TINY) if dry_run else (CONV_4B, GPTQ_4B)
    rows = conv_rows(device, conv_shape, repeats, impls) + gptq_rows(device, gptq_shape, repeats, impls)
    for op in ("causal_conv1d_varlen", "gptq_dequant"):   # the deciding ratio: csrc vs Triton
        by = {r["impl"]: r for r in rows if r["op"] == op and r.get("status") == "ok"}
        if "cuda" in by and "triton" in by:
            ratio = by["triton"]["seconds"] / by["cuda"]["seconds"]
            by["cuda"]["speedup_vs_triton"] = ratio
            by["cuda"]["keep"] = ratio >= 1.10
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cpu-dry-run", action="store_true", help="torch twins at a tiny shape on the CPU")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--out", default=None, help="append the rows to this .jsonl")
    args = p.parse_args(argv)
    if not args.cpu_dry_run and not torch.cuda.is_available():
        print("bench.csrc_row needs a CUDA device; --cpu-dry-run runs the twins on the CPU", file=sys.stderr)
        return 2
    device = torch.device("cpu" if args.cpu_dry_run else "cuda")
    rows = run_rows(device, dry_run=args.cpu_dry_run, repeats=args.repeats)
    for row in rows:
        print(json.dumps(row), flush=True)
    if args.out:
        with Path(args.out).open("a", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
