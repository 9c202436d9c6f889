"""Packed (varlen) operators for our own Qwen3.5 forward.

Each op takes prompts laid back to back as one `[T, ...]` tensor plus `cu_seqlens` (int64 `[N + 1]`,
prompt i is rows cu_seqlens[i]:cu_seqlens[i + 1]) and never lets state cross a prompt boundary.
Every op has a slow, obviously right twin used by the tests; which implementation runs is chosen once
per (device, dtype) in kernels.py (`KernelSet`) and stored on the model. GPU extras (triton,
flash-attn, fla) are imported lazily, never here.
"""
