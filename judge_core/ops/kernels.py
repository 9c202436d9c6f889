"""Which kernel runs each op of the packed forward: chosen once per (device, dtype), in this one place.

`select_kernels(device, dtype)` reads the feature checks (what imports, what the GPU is) and the env
overrides, and returns a frozen `KernelSet`; the model stores it (`model.kernels`) at its first forward
and its layers call the ops through it, so nothing below re-decides per call. Benches record
`KernelSet.describe()` in every row.

Env overrides: ops/switches.py lists them (read there, and nowhere else).

fp32 is a true-fp32 mode (`fp32_exact`): the forward runs with TF32 off for cuBLAS and cuDNN
(`no_tf32()`), and fla is not used by default: its Triton kernels run `tl.dot` on fp32 inputs at
Triton's default input precision, TF32 (e.g. fla/ops/gated_delta_rule/wy_fast.py, `tl.dot(b_A, b_kb)`
in recompute_w_u), a 10-bit mantissa that cost 0.056 pp of p1 at the 4B shape on an H100 (issue 11).
Our chunked torch gated delta rule is exact fp32 there. The fast paths (fla, varlen flash attention,
Triton elementwise) are for bf16/fp16. No Triton kernel of ours calls `tl.dot`; one that does must
pass `input_precision="ieee"` for fp32 inputs.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from dataclasses import asdict, dataclass
from typing import Mapping

import torch

# Each op module owns the table of its implementations; this module only chooses among them.
from .attention import ATTENTION_IMPLS
from .conv import CONV_IMPLS
from .gated_delta import GATED_DELTA_IMPLS
from .switches import read_switch

log = logging.getLogger(__name__)

ELEMENTWISE_IMPLS = ("triton", "compiled", "eager")
MATMUL_IMPLS = ("native", "fp32")
HALF_DTYPES = (torch.bfloat16, torch.float16)


@functools.cache
def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def _broken(package: str, error: BaseException, consequence: str) -> None:
    """An optional kernel package that is installed but does not import: say so once (it is cached)."""
    log.warning("%s is installed but does not import (%s: %s): %s", package, type(error).__name__, error,
                consequence)


@functools.cache
def fla_available() -> bool:
    """flash-linear-attention importable (never imported on the CPU: transformers would pick it up)."""
    try:
        from fla.ops.gated_delta_rule import chunk_gated_delta_rule  # noqa: F401
    except ImportError as e:
        if getattr(e, "name", None) not in ("fla", "fla.ops", "fla.ops.gated_delta_rule"):
            _broken("flash-linear-attention", e, "Gated DeltaNet runs the chunked torch path (slower)")
        return False
    except Exception as e:  # a broken install (e.g. a Triton ABI mismatch): the torch path is correct
        _broken("flash-linear-attention", e, "Gated DeltaNet runs the chunked torch path (slower)")
        return False
    return True


GPTQ_DEQUANT_IMPLS = ("triton", "cuda", "torch")


def gptq_dequant_choice(env: Mapping[str, str] | None = None) -> str:
    """The GPU dequantizer GPTQ layers ask for (triton by default; gptq/dequant.py falls back to the torch
    twin, with a warning, when the kernel cannot load)."""
    return read_switch("JUDGE_CORE_GPTQ_KERNEL", GPTQ_DEQUANT_IMPLS, env) or "triton"


def cpu_has_half_gemm(dtype: torch.dtype) -> bool:
    """This CPU has instructions for `dtype` GEMMs (AVX512-BF16 / AMX), which torch's oneDNN GEMM uses."""
    probes = {torch.bfloat16: ("_is_avx512_bf16_supported", "_is_amx_tile_supported"),
              torch.float16: ("_is_amx_fp16_supported",)}.get(dtype, ())
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


@functools.cache
def flash_attn_available() -> bool:
    try:
        from flash_attn import flash_attn_varlen_func  # noqa: F401
    except ImportError as e:
        if getattr(e, "name", None) != "flash_attn":
            _broken("flash-attn", e, "attention uses torch's kernels")
        return False
    except Exception as e:
        _broken("flash-attn", e, "attention uses torch's kernels")
        return False
    return True


@functools.cache
def torch_varlen_works(device: str, dtype: torch.dtype) -> bool:
    """torch's own varlen flash attention (torch >= 2.10) runs here: probed once with the shape class
    the model needs (causal, GQA 4:1, head_dim 256), since whether torch's build has kernels for this
    GPU (sm_80 .. sm_100) shows only when one runs; and it must agree with the explicit softmax (its
    causal flag changed between torch releases)."""
    try:
        from .attention import varlen_attention_naive, varlen_attention_torch

        gen = torch.Generator(device=device).manual_seed(0)
        q = torch.randn(5, 4, 256, device=device, dtype=dtype, generator=gen)
        k, v = (torch.randn(5, 1, 256, device=device, dtype=dtype, generator=gen) for _ in range(2))
        got = varlen_attention_torch(q, k, v, torch.tensor([0, 2, 5], device=device), 3, 256 ** -0.5)
        want = varlen_attention_naive(q, k, v, [0, 2, 5], 256 ** -0.5)
        err = (got.float() - want.float()).abs().max().item()
        if err >= 3e-2:
            log.warning("torch varlen attention on %s %s disagrees with the explicit softmax (max |d| %.3g): "
                        "attention runs per prompt", device, dtype, err)
        return err < 3e-2
    except Exception as e:  # no varlen kernels in this torch build for this GPU / dtype
        log.info("torch varlen attention unavailable on %s %s (%s: %s): attention runs per prompt",
                 device, dtype, type(e).__name__, e)
        return False


@dataclass(frozen=True)
class KernelSet:
    """The implementation of each op for one (device, dtype); see the module doc for the choices."""

    device: str
    dtype: str
    gated_delta: str
    attention: str
    conv: str
    elementwise: str
    qk_norm: str          # the L2 norm of q/k ahead of fla ("triton" | "torch"); the torch GDN paths norm inside
    fp32_exact: bool      # fp32 end to end: TF32 off around the forward
    matmul: str = "native"  # the projections' GEMM: "native" (the model dtype) | "fp32" (see models/linear.py)
    gptq_dequant: str = "torch"  # a GPTQ layer's dequantizer on this device: triton | cuda | torch (gptq/dequant.py)

    def describe(self) -> dict:
        """A flat dict for bench rows and logs."""
        return asdict(self)

    @contextlib.contextmanager
    def forward_context(self):
        """Around one forward: TF32 off in the true-fp32 mode, nothing otherwise."""
        if self.fp32_exact and self.device.startswith("cuda"):
            with no_tf32():
                yield
        else:
            yield

    # --- the ops, as the layers call them -------------------------------------------------------

    @functools.cached_property
    def ew(self):
        """The elementwise functions (rms_norm, add_rms_norm, gated_rms_norm, silu_mul, sigmoid_gate,
        norm_rotary, delta_gates) of the chosen kind."""
        from .elementwise import elementwise_table

        return elementwise_table(self.elementwise)

    def conv1d(self, x, weight, positions):
        from .conv import causal_conv1d_varlen

        return causal_conv1d_varlen(x, weight, positions, activation="silu", impl=self.conv)

    def attention_op(self, q, k, v, batch, scale: float):
        from .attention import varlen_attention

        return varlen_attention(q, k, v, batch.cu_seqlens, batch.bounds, batch.max_seqlen, scale, impl=self.attention)

    def prefix_attention_op(self, q, k, v, batch, scale: float):
        """Attention of a forked batch (shared prefixes): each segment's queries over its ancestors' keys."""
        from .prefix_attention import prefix_attention

        return prefix_attention(q, k, v, batch.forks, batch.bounds, batch.cu_seqlens, batch.max_seqlen, scale,
                                impl=self.attention)

    def gated_delta_op(self, qkv, key_dim: int, head_k_dim: int, v, g, beta, batch, initial_state=None,
                       output_final_state: bool = False):
        """The gated delta rule from the conv output qkv [T, 2 key_dim + value_dim]; v [T, Hv, Dv].
        initial_state / output_final_state: as `gated_delta_rule` (a forked batch's suffix levels)."""
        from .gated_delta import ChunkLayout, gated_delta_rule
        from .qk_norm import qk_l2norm, qk_split

        if self.gated_delta == "fla":
            # q/k normalised by our op, so fla's l2norm (which re-tunes per token count) never runs.
            q, k = qk_l2norm(qkv, key_dim, head_k_dim, impl=self.qk_norm)
            # the bounds on the host too: fla derives its chunk indices from them without a device sync
            cu_cpu = batch.cached("cu_seqlens_cpu", lambda: torch.tensor(batch.bounds, dtype=torch.long))
            return gated_delta_rule(q, k, v, g, beta, batch.cu_seqlens, use_qk_l2norm=False, impl="fla",
                                    initial_state=initial_state, output_final_state=output_final_state,
                                    cu_seqlens_cpu=cu_cpu)
        q, k = qk_split(qkv, key_dim, head_k_dim)
        if self.gated_delta == "blocked":
            from .gated_delta_blocked import CPU_CHUNK_SIZE, StepLayout

            layout = batch.cached(f"step_layout_{CPU_CHUNK_SIZE}",
                                  lambda: StepLayout.build(batch.bounds, CPU_CHUNK_SIZE, qkv.device))
            return gated_delta_rule(q, k, v, g, beta, batch.cu_seqlens, layout=layout, impl="blocked",
                                    initial_state=initial_state, output_final_state=output_final_state)
        layout = batch.cached("chunk_layout_64", lambda: ChunkLayout.build(batch.bounds, 64, qkv.device))
        return gated_delta_rule(q, k, v, g, beta, batch.cu_seqlens, layout=layout, impl="torch",
                                initial_state=initial_state, output_final_state=output_final_state)


def select_kernels(device: torch.device | str, dtype: torch.dtype, env: Mapping[str, str] | None = None) -> KernelSet:
    """Feature checks + env overrides (env: a mapping in place of os.environ) -> the KernelSet for a model
    on `device` in `dtype`."""
    device = torch.device(device)
    cuda, half = device.type == "cuda", dtype in HALF_DTYPES
    triton_ok = cuda and triton_available()

    gated_delta = read_switch("JUDGE_CORE_GATED_DELTA", GATED_DELTA_IMPLS, env)
    if gated_delta is None:
        if cuda and half and fla_available():
            gated_delta = "fla"
        else:  # the CPU: in-chunk inverse by matmuls, chunks step-major (ops/gated_delta_blocked.py)
            gated_delta = "blocked" if device.type == "cpu" else "torch"

    attention = read_switch("JUDGE_CORE_ATTENTION", ATTENTION_IMPLS, env)
    if attention is None:
        attention = "sdpa"
        if cuda and half and torch.cuda.get_device_capability(device)[0] >= 8:
            if flash_attn_available():
                attention = "flash_attn"
            elif torch_varlen_works(str(device), dtype):
                attention = "varlen"

    conv = read_switch("JUDGE_CORE_CONV", CONV_IMPLS, env) or ("triton" if triton_ok else "torch")

    elementwise = read_switch("JUDGE_CORE_ELEMENTWISE", ELEMENTWISE_IMPLS, env)
    if elementwise is None:
        legacy = read_switch("JUDGE_CORE_COMPILE", None, env) or "1"
        if legacy == "0":
            elementwise = "eager"
        elif legacy == "all":
            elementwise = "compiled"
        elif triton_ok:
            elementwise = "triton"      # our kernels where we have them, torch.compile for the rest
        else:
            elementwise = "compiled" if cuda else "eager"

    matmul = read_switch("JUDGE_CORE_MATMUL", MATMUL_IMPLS, env)
    if matmul is None:
        matmul = "fp32" if device.type == "cpu" and half and not cpu_has_half_gemm(dtype) else "native"

    gptq_dequant = gptq_dequant_choice(env) if cuda else "torch"

    return KernelSet(device=str(device), dtype=str(dtype).removeprefix("torch."), gated_delta=gated_delta,
                     attention=attention, conv=conv, elementwise=elementwise,
                     qk_norm="triton" if triton_ok else "torch", fp32_exact=dtype == torch.float32, matmul=matmul,
                     gptq_dequant=gptq_dequant)


@contextlib.contextmanager
def no_tf32():
    """cuBLAS and cuDNN in full fp32 (no TF32) inside; the previous settings restored after."""
    matmul, cudnn = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("highest")
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(matmul)
        torch.backends.cudnn.allow_tf32 = cudnn
