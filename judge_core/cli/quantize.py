"""`judge-core quantize SRC OUT`: write a GPTQ 4-bit (or, with `--method fp8`, a block-scaled FP8) copy
of a float judge checkpoint.

SRC is a checkpoint dir, a hub repo id (read from the Hugging Face cache, downloaded unless
HF_HUB_OFFLINE=1) or "tiny" (the embedded tiny judge). The GPTQ output loads with
`Judge.from_pretrained(OUT)` and with any GPTQ reader of the same format (DESIGN §4); the FP8 output is
in the format of Qwen's FP8 releases (judge_core.fp8.format), read by transformers and vLLM.
"""

from __future__ import annotations

from ..quant import METHODS
from .model_arg import add_threads_argument

HELP = "quantize a float judge checkpoint to GPTQ 4-bit (round-to-nearest or GPTQ) or to FP8 (e4m3, block-scaled)"


def add_arguments(parser) -> None:
    parser.add_argument("src", help="float checkpoint dir, hub repo id, or 'tiny' for the embedded tiny judge")
    parser.add_argument("out", help="output dir for the quantized checkpoint")
    parser.add_argument("--revision", default=None, help="hub revision (branch, tag or commit) when SRC is a repo id (default: main); not for "
                             "'tiny' or a local directory")
    parser.add_argument("--method", choices=("rtn", *METHODS), default="gptq",  # rtn writes the gptq format
                        help="gptq: Hessian-based with calibration prompts (default); rtn: round-to-nearest, no data; "
                             "fp8: e4m3 weights with one scale per --fp8-block block (no data)")
    parser.add_argument("--fp8-block", type=int, nargs=2, default=(128, 128), metavar=("ROWS", "COLS"),
                        help="fp8 only: weight-scale block (default 128 128, what transformers and vLLM expect)")
    parser.add_argument("--group-size", type=int, default=128, help="input rows per scale group; -1 = one group")
    parser.add_argument("--desc-act", action="store_true", help="act-order (gptq only): g_idx becomes scrambled")
    sym = parser.add_mutually_exclusive_group()
    sym.add_argument("--sym", dest="sym", action="store_true", default=True, help="symmetric zeros (default)")
    sym.add_argument("--asym", dest="sym", action="store_false", help="asymmetric zeros (default: off, --sym)")
    parser.add_argument("--format", dest="checkpoint_format", choices=("gptq", "gptq_v2"), default="gptq",
                        help="gptq (v1: zeros stored minus one, what most readers expect) or gptq_v2")
    parser.add_argument("--calib", help="calibration pairs (JSONL/JSON of instruction, response_1, response_2); "
                                        "default: built-in sample pairs")
    parser.add_argument("--calib-n", type=int, default=128, help="number of calibration prompts (2 per pair)")
    parser.add_argument("--calib-max-tokens", type=int, default=2048, help="tokens kept per calibration prompt")
    parser.add_argument("--damp", type=float, default=0.01, help="Hessian dampening, fraction of its mean diagonal")
    parser.add_argument("--device", help="device for the float math (default: cuda if available)")
    parser.add_argument("--dtype", default="fp32",
                        help="fp32 | bf16 (as in `score --dtype`): dtype of the calibration forwards "
                             "(bf16 halves their memory; Hessians stay fp32)")
    add_threads_argument(parser)


def run(args) -> int:
    import logging

    from ..checkpoint import CheckpointError
    from ..dtypes import check_dtype, parse_dtype, resolve_device
    from ..gptq import quantize_checkpoint
    from ..threads import configure_threads, parse_threads
    from .model_arg import threads_problem, usage_error

    try:
        dtype = check_dtype(parse_dtype(args.dtype))
        device = resolve_device(args.device)
    except ValueError as e:
        raise usage_error(str(e)) from None
    if threads_problem(args):
        raise usage_error(threads_problem(args))
    configure_threads(parse_threads(args.threads), device)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.method == "fp8":
            from ..fp8 import write_fp8_checkpoint
            from ..gptq.quantize import resolve_source

            out = write_fp8_checkpoint(resolve_source(args.src, args.revision), args.out, tuple(args.fp8_block))
        else:
            out = quantize_checkpoint(args.src, args.out, method=args.method, group_size=args.group_size,
                                      desc_act=args.desc_act, sym=args.sym, checkpoint_format=args.checkpoint_format,
                                      calib=args.calib, calib_n=args.calib_n, calib_max_tokens=args.calib_max_tokens,
                                      damp=args.damp, device=device, compute_dtype=dtype, revision=args.revision)
    except (CheckpointError, ValueError) as e:  # a bad source, or options that do not fit it (e.g. the fp8 block)
        raise usage_error(str(e)) from None
    print(f"wrote {out}")
    return 0
