"""`judge-core quantize SRC OUT --method fp8`: a block-scaled FP8 copy of a float Qwen3.5 checkpoint, in
the format Qwen's own FP8 releases use (fp8.format), which transformers' FineGrainedFP8 and vLLM read.

One output shard per source shard (same names, so memory stays one shard's worth). Quantized: each 2-D
`.weight` of the text model's decoder layers (`model.layers.N` or `model.language_model.layers.N`) not
in the skip list whose shape is a whole number of blocks; it becomes `weight` (float8_e4m3fn) +
`weight_scale_inv` (float32 [out / b0, in / b1]). Every other tensor is copied as it is, and every 2-D
weight left in float is named in `modules_to_not_convert` (transformers turns each Linear it does not
name into an FP8 one) and logged with the reason.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path

import torch

from ..checkpoint import quantization_json, read_config
from .format import FP8Config
from .quantize import DEFAULT_SKIP, matches, quantize_weight

log = logging.getLogger(__name__)

LAYER_PREFIXES = ("model.language_model.layers.", "model.layers.")
WRITER_SKIP = DEFAULT_SKIP + ("embed_tokens",)


def _float_reason(key: str, tensor: torch.Tensor, block: tuple[int, int], skip) -> str | None:
    """Why 2-D checkpoint weight `key` stays in float, or None to quantize it."""
    module = key.removesuffix(".weight")
    hit = matches(module, skip)
    if hit is not None:
        return f"in the skip list ({hit!r})"
    if not key.startswith(LAYER_PREFIXES):
        return "not in the text model's decoder layers"
    if not tensor.is_floating_point():
        return f"dtype {tensor.dtype} is not float"
    out_f, in_f = tensor.shape
    if out_f % block[0] or in_f % block[1]:
        # transformers derives the block from weight / scale shapes: partial blocks would be mis-read.
        return f"shape [{out_f}, {in_f}] is not a whole number of {tuple(block)} blocks"
    if not bool(torch.isfinite(tensor).all()):
        return "weights hold non-finite values (inf/nan)"
    return None


def _check_blocks_fit(files: list[Path], block: tuple[int, int], skip) -> list[str]:
    """Decoder weights (2-D, float, not skipped) whose shape is not a whole number of blocks, as "name
    [out, in]", read from the headers before anything is written. Raises ValueError, naming the sizes and
    a block that fits, when that is every one of them: the copy would be labelled fp8 with no fp8 weight."""
    from safetensors import safe_open

    shapes = {}
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():
                piece = f.get_slice(key)
                shape = tuple(piece.get_shape())
                if (key.endswith(".weight") and len(shape) == 2 and key.startswith(LAYER_PREFIXES)
                        and piece.get_dtype() in _FLOAT_DTYPES and matches(key.removesuffix(".weight"), skip) is None):
                    shapes[key.removesuffix(".weight")] = shape
    misfit = {k: s for k, s in shapes.items() if s[0] % block[0] or s[1] % block[1]}
    if shapes and len(misfit) == len(shapes):
        sizes = ", ".join(f"[{a}, {b}]" for a, b in sorted(set(shapes.values())))
        fit = tuple(_largest_block(math.gcd(*(s[i] for s in shapes.values()))) for i in (0, 1))
        raise ValueError(f"fp8: no weight fits the {block[0]}x{block[1]} block: the {len(shapes)} decoder weights "
                         f"have sizes {sizes}, so the copy would be labelled fp8 with no fp8 weight in it. Choose a "
                         f"block that divides them, e.g. --fp8-block {fit[0]} {fit[1]} (block={fit} in Python); "
                         f"transformers and vLLM expect 128x128 for real checkpoints")
    return [f"{k} [{s[0]}, {s[1]}]" for k, s in sorted(misfit.items())]


_FLOAT_DTYPES = ("F64", "F32", "F16", "BF16")


def _largest_block(n: int, most: int = 128) -> int:
    """The largest power of two up to `most` that divides n (a block size the FP8 readers accept)."""
    b = most
    while b > 1 and n % b:
        b //= 2
    return b


def _source_files(src: Path) -> list[Path]:
    index = src / "model.safetensors.index.json"
    if index.exists():
        return [src / s for s in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    files = sorted(src.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{src}: no *.safetensors files")
    return files


@torch.no_grad()
def write_fp8_checkpoint(src_dir: str | Path, out_dir: str | Path, block: tuple[int, int] = (128, 128), *,
                         skip=WRITER_SKIP) -> Path:
    """Write the FP8 copy of float checkpoint `src_dir` (a dir, a hub id, or "tiny": the embedded judge) into
    `out_dir`.

    Returns out_dir. Raises when the source is already quantized, the output is the source, or no
    decoder weight fits the block (nothing would be fp8); warns, listing them, when only some do not.
    """
    from safetensors import safe_open
    from safetensors.torch import save_file
    from tqdm import tqdm

    from ..embedded.resolve import resolve_model

    src, out = resolve_model(src_dir), Path(out_dir)  # "tiny", a local dir or a hub id; CheckpointError if none
    block = (int(block[0]), int(block[1]))
    if min(block) <= 0:
        raise ValueError(f"block={block!r}: expected two positive ints, e.g. (128, 128)")
    config = read_config(src)
    existing = quantization_json(src, config)
    if existing:
        raise ValueError(f"{src} is already quantized (quant_method={existing.get('quant_method')!r}): "
                         "expected a float checkpoint")
    if out.resolve() == src.resolve():
        raise ValueError(f"output dir {out} is the source dir")
    files = _source_files(src)
    misfit = _check_blocks_fit(files, block, skip)
    out.mkdir(parents=True, exist_ok=True)

    weight_map, kept, n_quantized, total = {}, {}, 0, 0
    for file in tqdm(files, desc="fp8 shards", disable=len(files) < 2):
        tensors = {}
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():
                t = f.get_tensor(key)
                reason = _float_reason(key, t, block, skip) if key.endswith(".weight") and t.dim() == 2 else "-"
                if reason is None:
                    q, scale_inv = quantize_weight(t, block)
                    module = key.removesuffix(".weight")
                    tensors[key], tensors[f"{module}.weight_scale_inv"] = q, scale_inv.float()
                    n_quantized += 1
                else:
                    tensors[key] = t.contiguous()
                    if reason != "-":
                        kept[key.removesuffix(".weight")] = reason
        save_file(tensors, str(out / file.name), metadata={"format": "pt"})
        weight_map.update({k: file.name for k in tensors})
        total += sum(t.numel() * t.element_size() for t in tensors.values())
    if len(files) > 1 or (src / "model.safetensors.index.json").exists():
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    if misfit:
        shown = ", ".join(misfit[:12]) + (f" and {len(misfit) - 12} more" if len(misfit) > 12 else "")
        log.warning("WARNING fp8: %d of %d decoder weights stayed in float (their shapes are not whole %dx%d "
                    "blocks): %s", len(misfit), n_quantized + len(misfit), block[0], block[1], shown)

    config["quantization_config"] = FP8Config(weight_block_size=block,
                                              modules_to_not_convert=tuple(sorted(kept))).to_json()
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    for f in src.iterdir():   # tokenizer, chat template, generation config
        if f.is_file() and f.suffix != ".safetensors" and f.name not in ("config.json", "model.safetensors.index.json"):
            shutil.copy2(f, out / f.name)
    log.info("fp8: wrote %s: %d weights quantized (block %s), %d kept in float", out, n_quantized, block, len(kept))
    for module, reason in sorted(kept.items()):
        log.info("fp8: kept %s in float: %s", module, reason)
    return out
