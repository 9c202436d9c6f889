"""Qwen3.5 text model over packed prompts, in the spirit of nano-vllm's models/qwen3.py.

Every detail follows transformers' `models/qwen3_5/modeling_qwen3_5.py` (5.23):
- decoder layer: x += mixer(norm(x)); x += mlp(norm(x)); the mixer is Gated DeltaNet on
  "linear_attention" layers (3 of 4) and gated full attention on "full_attention" layers;
- RMSNorm is 1-centred, `x_hat * (1 + w)`, computed in float32; the gated norm at the end of
  Gated DeltaNet is NOT 1-centred: `x_hat * w * silu(z)`;
- full attention: q_proj yields [q | gate] per head (interleaved by head, not two halves), q/k get a
  per-head RMSNorm, rotary on the first `partial_rotary_factor` (25%) of head_dim with rope_theta,
  output multiplied by sigmoid(gate) before o_proj;
- Gated DeltaNet: in_proj_qkv -> causal depthwise conv (K = 4) + SiLU -> split q, k, v;
  beta = sigmoid(in_proj_b x); g = -exp(A_log) * softplus(in_proj_a x + dt_bias) (float32);
  gated delta rule with q/k L2-normalised, scale Dk^-0.5, each key head serving Hv / Hk
  consecutive value heads; gated RMSNorm with z = in_proj_z x; out_proj.
Text-only positions make Qwen3.5's multimodal rotary (mrope) a plain 1-D rotary: its three position
axes are equal, so the interleaving of sections changes nothing.

The model maps a PackedBatch to the final-normed hidden state of each prompt's last row; the logits of
the spec's label tokens are dot products with `label_rows` (never a full-vocabulary head).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..checkpoint import text_config
from ..ops.kernels import KernelSet, select_kernels
from ..ops.prefix_conv import conv1d_with_context
from .batch import PackedBatch
from .linear import FusedLinear, Linear, set_compute_dtype

MODEL_TYPES = ("qwen3_5", "qwen3_5_text")
LAYER_TYPES = ("linear_attention", "full_attention")


@dataclass(frozen=True)
class Qwen3_5Args:
    """The text model's shape, read from config.json (either layout)."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    linear_num_key_heads: int
    linear_num_value_heads: int
    linear_key_head_dim: int
    linear_value_head_dim: int
    linear_conv_kernel_dim: int
    layer_types: tuple[str, ...]
    rms_norm_eps: float
    rope_theta: float
    partial_rotary_factor: float
    max_position_embeddings: int
    tie_word_embeddings: bool
    attention_bias: bool = False

    @property
    def rotary_dim(self) -> int:
        return int(self.head_dim * self.partial_rotary_factor)

    @classmethod
    def from_config(cls, config: dict) -> "Qwen3_5Args":
        """From a config.json dict: text-only (model_type qwen3_5_text) or multimodal (qwen3_5, with the
        text part under `text_config`)."""
        model_type = config.get("model_type")
        if model_type not in MODEL_TYPES:
            raise ValueError(f"not a Qwen3.5 config: model_type={model_type!r}, expected one of {MODEL_TYPES}")
        text = text_config(config)
        rope = dict(text.get("rope_parameters") or {})
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        if rope_type != "default":
            raise ValueError(f"rope_type={rope_type!r} is not supported by the packed Qwen3.5 forward "
                             "(only 'default' rotary is implemented)")
        act = text.get("hidden_act", "silu")
        if act != "silu":
            raise ValueError(f"hidden_act={act!r}: the packed Qwen3.5 forward implements silu only")
        layers = int(text["num_hidden_layers"])
        layer_types = text.get("layer_types") or [
            "full_attention" if (i + 1) % int(text.get("full_attention_interval", 4)) == 0 else "linear_attention"
            for i in range(layers)]
        bad = [t for t in layer_types if t not in LAYER_TYPES]
        if len(layer_types) != layers or bad:
            raise ValueError(f"layer_types {layer_types!r}: expected {layers} entries from {LAYER_TYPES}")
        # A multimodal config may carry tie_word_embeddings at the top level only.
        tie = bool(text.get("tie_word_embeddings")) or bool(config.get("tie_word_embeddings"))
        return cls(
            vocab_size=int(text["vocab_size"]), hidden_size=int(text["hidden_size"]),
            intermediate_size=int(text["intermediate_size"]), num_hidden_layers=layers,
            num_attention_heads=int(text["num_attention_heads"]), num_key_value_heads=int(text["num_key_value_heads"]),
            head_dim=int(text.get("head_dim") or text["hidden_size"] // text["num_attention_heads"]),
            linear_num_key_heads=int(text["linear_num_key_heads"]),
            linear_num_value_heads=int(text["linear_num_value_heads"]),
            linear_key_head_dim=int(text["linear_key_head_dim"]),
            linear_value_head_dim=int(text["linear_value_head_dim"]),
            linear_conv_kernel_dim=int(text.get("linear_conv_kernel_dim", 4)), layer_types=tuple(layer_types),
            rms_norm_eps=float(text.get("rms_norm_eps", 1e-6)),
            rope_theta=float(rope.get("rope_theta", text.get("rope_theta", 10000.0))),
            partial_rotary_factor=float(rope.get("partial_rotary_factor", text.get("partial_rotary_factor", 0.25))),
            max_position_embeddings=int(text.get("max_position_embeddings", 32768)),
            tie_word_embeddings=bool(tie), attention_bias=bool(text.get("attention_bias", False)))


class RMSNorm(nn.Module):
    """Qwen3.5's 1-centred RMSNorm: x / rms(x) * (1 + w), in float32, cast back once.

    With `residual`, the residual add is fused in (nano-vllm's habit): returns (normed, x + residual).
    """

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.zeros(dim), requires_grad=False)

    def forward(self, x: torch.Tensor, kernels: KernelSet, residual: torch.Tensor | None = None):
        if residual is None:
            return kernels.ew.rms_norm(x, self.weight, self.eps)
        return kernels.ew.add_rms_norm(x, residual, self.weight, self.eps)


class GatedRMSNorm(nn.Module):
    """Gated DeltaNet's output norm: x / rms(x) * w * silu(z). NOT 1-centred (w is stored as is)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim), requires_grad=False)

    def forward(self, x: torch.Tensor, gate: torch.Tensor, kernels: KernelSet) -> torch.Tensor:
        """x, gate [T, H, D] -> [T, H * D]."""
        return kernels.ew.gated_rms_norm(x, gate, self.weight, self.eps)


def rotary_cos_sin(positions: torch.Tensor, rotary_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin [T, rotary_dim] (float32) for positions [T]; halves repeated as in `rotate_half` rope."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, rotary_dim, 2, dtype=torch.float32, device=positions.device)
                                / rotary_dim))
    freqs = positions.float()[:, None] * inv_freq[None, :]
    angles = torch.cat([freqs, freqs], dim=-1)
    return angles.cos(), angles.sin()


class GatedAttention(nn.Module):
    """Full causal attention within each prompt, with a sigmoid output gate."""

    def __init__(self, args: Qwen3_5Args):
        super().__init__()
        if args.attention_bias:
            raise ValueError("attention_bias=True is not supported by the packed Qwen3.5 forward")
        self.num_heads, self.num_kv_heads, self.head_dim = (args.num_attention_heads, args.num_key_value_heads,
                                                            args.head_dim)
        self.scale = args.head_dim ** -0.5
        q_size, kv_size = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        # q_proj yields q and the output gate, so it is twice as wide as o_proj's input.
        self.qkv_proj = FusedLinear(args.hidden_size, [2 * q_size, kv_size, kv_size], ["q_proj", "k_proj", "v_proj"])
        self.q_norm = RMSNorm(self.head_dim, args.rms_norm_eps)
        self.k_norm = RMSNorm(self.head_dim, args.rms_norm_eps)
        self.o_proj = Linear(q_size, args.hidden_size, bias=False)

    def forward(self, x: torch.Tensor, batch: PackedBatch, rotary: tuple[torch.Tensor, torch.Tensor],
                kernels: KernelSet) -> torch.Tensor:
        """x [T, hidden] -> [T, hidden]."""
        tokens = x.shape[0]
        q_gate, k, v = self.qkv_proj(x)
        # Per head: [q (head_dim) | gate (head_dim)] -- transformers' view(..., -1, 2 * head_dim).chunk(2).
        q_gate = q_gate.reshape(tokens, self.num_heads, 2 * self.head_dim)
        q, gate = q_gate[..., :self.head_dim], q_gate[..., self.head_dim:]
        cos, sin = rotary
        q = kernels.ew.norm_rotary(q, self.q_norm.weight, cos, sin, self.q_norm.eps)
        k = kernels.ew.norm_rotary(k.reshape(tokens, self.num_kv_heads, self.head_dim), self.k_norm.weight, cos, sin,
                                   self.k_norm.eps)
        v = v.reshape(tokens, self.num_kv_heads, self.head_dim)
        if batch.forks is None:
            out = kernels.attention_op(q, k, v, batch, self.scale)
        else:  # shared prefixes: each segment's queries over its ancestors' keys and its own
            out = kernels.prefix_attention_op(q, k, v, batch, self.scale)
        out = kernels.ew.sigmoid_gate(out, gate)
        return self.o_proj(out.reshape(tokens, self.num_heads * self.head_dim))


class GatedDeltaNet(nn.Module):
    """Linear attention (gated delta rule) with its conv and gated output norm, state reset per prompt."""

    def __init__(self, args: Qwen3_5Args):
        super().__init__()
        self.num_k_heads, self.num_v_heads = args.linear_num_key_heads, args.linear_num_value_heads
        self.head_k_dim, self.head_v_dim = args.linear_key_head_dim, args.linear_value_head_dim
        self.key_dim = self.num_k_heads * self.head_k_dim
        self.value_dim = self.num_v_heads * self.head_v_dim
        conv_dim = 2 * self.key_dim + self.value_dim
        self.in_proj = FusedLinear(args.hidden_size, [conv_dim, self.value_dim, self.num_v_heads, self.num_v_heads],
                                   ["in_proj_qkv", "in_proj_z", "in_proj_b", "in_proj_a"])
        self.conv_weight = nn.Parameter(torch.empty(conv_dim, args.linear_conv_kernel_dim), requires_grad=False)
        # Kept in float32 whatever the model dtype (so is the checkpoint): exp(A_log) overflows in fp16.
        self.A_log = nn.Parameter(torch.empty(self.num_v_heads, dtype=torch.float32), requires_grad=False)
        self.dt_bias = nn.Parameter(torch.empty(self.num_v_heads, dtype=torch.float32), requires_grad=False)
        self.norm = GatedRMSNorm(self.head_v_dim, args.rms_norm_eps)
        self.out_proj = Linear(self.value_dim, args.hidden_size, bias=False)

    def forward(self, x: torch.Tensor, batch: PackedBatch, kernels: KernelSet) -> torch.Tensor:
        """x [T, hidden] -> [T, hidden]."""
        tokens = x.shape[0]
        qkv, z, b, a = self.in_proj(x)
        if batch.forks is None:
            positions = batch.cached("positions_int32", lambda: batch.positions.to(torch.int32))
            qkv = kernels.conv1d(qkv, self.conv_weight, positions)
        else:
            qkv = conv1d_with_context(kernels.conv1d, qkv, self.conv_weight, batch.forks)
        v = qkv[:, 2 * self.key_dim:].reshape(tokens, self.num_v_heads, self.head_v_dim)
        g, beta = kernels.ew.delta_gates(a, b, self.A_log, self.dt_bias)
        if batch.forks is None:
            out = kernels.gated_delta_op(qkv, self.key_dim, self.head_k_dim, v, g, beta, batch)
        else:
            out = self._forked_delta(qkv, v, g, beta, batch.forks, kernels)
        out = self.norm(out, z.reshape(tokens, self.num_v_heads, self.head_v_dim), kernels)
        return self.out_proj(out)

    def _forked_delta(self, qkv, v, g, beta, forks, kernels: KernelSet) -> torch.Tensor:
        """The gated delta rule level by level: a level's segments start from their parents' final states."""
        outs, states = [], None
        for level in forks.levels:
            rows = slice(level.row_start, level.row_end)
            initial = None if level.parent is None else states[level.parent]
            out = kernels.gated_delta_op(qkv[rows], self.key_dim, self.head_k_dim, v[rows], g[rows], beta[rows],
                                         level, initial_state=initial, output_final_state=level.has_children)
            if level.has_children:
                out, states = out
            outs.append(out)
        return torch.cat(outs)


class MLP(nn.Module):
    """SwiGLU with gate and up fused into one GEMM."""

    def __init__(self, args: Qwen3_5Args):
        super().__init__()
        self.gate_up_proj = FusedLinear(args.hidden_size, [args.intermediate_size] * 2, ["gate_proj", "up_proj"])
        self.down_proj = Linear(args.intermediate_size, args.hidden_size, bias=False)

    def forward(self, x: torch.Tensor, kernels: KernelSet) -> torch.Tensor:
        gate, up = self.gate_up_proj(x)
        return self.down_proj(kernels.ew.silu_mul(gate, up))


class DecoderLayer(nn.Module):
    def __init__(self, args: Qwen3_5Args, layer_type: str):
        super().__init__()
        self.layer_type = layer_type
        if layer_type == "linear_attention":
            self.linear_attn = GatedDeltaNet(args)
        else:
            self.self_attn = GatedAttention(args)
        self.input_layernorm = RMSNorm(args.hidden_size, args.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(args.hidden_size, args.rms_norm_eps)
        self.mlp = MLP(args)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None, batch: PackedBatch, rotary,
                kernels: KernelSet, keep_rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, residual) [T, hidden] each -> (mlp output, residual stream), residual adds fused into
        the norms (the first layer gets residual=None).

        keep_rows: on the last layer only the prompts' last rows matter after the token mixer, so the
        MLP (the bulk of a layer) runs on N rows instead of T.
        """
        if residual is None:
            x, residual = self.input_layernorm(x, kernels), x
        else:
            x, residual = self.input_layernorm(x, kernels, residual)
        if self.layer_type == "linear_attention":
            x = self.linear_attn(x, batch, kernels)
        else:
            x = self.self_attn(x, batch, rotary, kernels)
        if keep_rows is not None:
            x, residual = x[keep_rows], residual[keep_rows]
        x, residual = self.post_attention_layernorm(x, kernels, residual)
        return self.mlp(x, kernels), residual


class Qwen3_5Model(nn.Module):
    """Embedding, decoder layers, final norm; `label_rows` holds the label tokens' head rows."""

    def __init__(self, args: Qwen3_5Args, num_label_rows: int = 0):
        super().__init__()
        self.args = args
        self.embed_tokens = nn.Embedding(args.vocab_size, args.hidden_size)
        self.embed_tokens.weight.requires_grad_(False)
        self.layers = nn.ModuleList(DecoderLayer(args, t) for t in args.layer_types)
        self.norm = RMSNorm(args.hidden_size, args.rms_norm_eps)
        # The head rows of the label tokens (label_ids), float32 [n, hidden]: rows of the tied embedding
        # (or of lm_head when untied), copied at load time.
        self.register_buffer("label_rows", torch.empty(num_label_rows, args.hidden_size, dtype=torch.float32))
        # The kernels, chosen at the first forward (the model is built on the meta device and moved
        # after); chosen again only if the model moves to another device or dtype. May be set by hand.
        self.kernels: KernelSet | None = None

    def kernels_for_weights(self) -> KernelSet:
        """The KernelSet for where the weights are now (selected once, then kept)."""
        weight = self.embed_tokens.weight
        here = (str(weight.device), str(weight.dtype).removeprefix("torch."))
        if self.kernels is None or (self.kernels.device, self.kernels.dtype) != here:
            self.kernels = select_kernels(weight.device, weight.dtype)
        # the projections' GEMM dtype follows the kernel set (also one set by hand)
        if getattr(self, "_matmul", None) != self.kernels.matmul:
            set_compute_dtype(self, torch.float32 if self.kernels.matmul == "fp32" else None)
            self._matmul = self.kernels.matmul
        return self.kernels

    def last_hidden(self, batch: PackedBatch) -> torch.Tensor:
        """Final-normed hidden state at each prompt's last row: [N, hidden] in the model dtype."""
        kernels = self.kernels_for_weights()
        with kernels.forward_context():
            x, residual = self.embed_tokens(batch.input_ids), None
            rotary = rotary_cos_sin(batch.positions, self.args.rotary_dim, self.args.rope_theta)
            last = len(self.layers) - 1
            for i, layer in enumerate(self.layers):
                x, residual = layer(x, residual, batch, rotary, kernels,
                                    keep_rows=batch.last_rows if i == last else None)
            return self.norm(x, kernels, residual)[0]

    def forward(self, batch: PackedBatch) -> torch.Tensor:
        """Logits of the label tokens [N, n] in float32 (hidden state and head rows both in float32)."""
        hidden = self.last_hidden(batch).float()
        with self.kernels.forward_context():
            return hidden @ self.label_rows.T
