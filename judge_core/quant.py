"""Quantization plug-ins: the one table of the methods judge_core reads, and the hooks loaders call.

A method is a plug-in with four hooks, called by both loaders (hf: judge_core/loader.py, packed:
judge_core/models/weights.py) in this order (gpt-fast's "quantization is a module swap"):

    parse(quant_json, where) -> config        the checkpoint's quantization_config, typed and validated
    wrap_reader(reader, config) -> reader      the tensors as the model will take them (FP8: dequantized
                                               weights, scales hidden; GPTQ: implied g_idx supplied)
    swap_modules(model, reader, config, key_prefix, external, fuse) -> names
                                               on the meta model, before any tensor is read: the
                                               layers that hold the method's own tensors (GPTQ);
                                               external: quantized layers the loader reads itself
                                               (the packed head rows); fuse=False: no fused groups
    after_load(model, reader, config, key_prefix)
                                               on the loaded model: checks, and swaps built from loaded
                                               weights (FP8 re-quantizes the layers stored in fp8)

`key_prefix`: a module named `n` has checkpoint key `key_prefix + n` (the packed model's `layers.0` is
`model.layers.0`). The plug-ins live with their formats (judge_core/gptq/loader.py, judge_core/fp8/load.py)
and are imported by name when a checkpoint needs one, as backends/__init__.py does for backends, so this
module imports nothing of judge_core and the checkpoint floor can ask it to parse.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Protocol

# method -> its plug-in ("module:object"); the ONLY list of the methods judge_core reads.
PLUGINS = {
    "gptq": "judge_core.gptq.loader:GPTQ",
    "fp8": "judge_core.fp8.load:FP8",
}
METHODS = tuple(PLUGINS)
# Methods `quantization=` / `--quantization` can apply to a float checkpoint while loading it.
AT_LOAD = ("fp8",)
QUANTIZATIONS = ("none", *AT_LOAD)


class QuantPlugin(Protocol):
    name: str

    def parse(self, quant_json: dict, where: str) -> Any: ...

    def wrap_reader(self, reader, config): ...

    def swap_modules(self, model, reader, config, *, key_prefix: str = "", external: tuple[str, ...] = (),
                     fuse: bool = True) -> list[str]: ...

    def after_load(self, model, reader, config, *, key_prefix: str = "") -> None: ...


def plugin(method: str) -> QuantPlugin:
    if method not in PLUGINS:
        raise ValueError(f"quant_method={method!r} is not supported by judge_core: expected one of {METHODS}")
    module_name, obj = PLUGINS[method].split(":")
    return getattr(importlib.import_module(module_name), obj)


@dataclass(frozen=True)
class Quantization:
    """A checkpoint's quantization, parsed once: the method and its typed config
    (judge_core.gptq.QuantConfig, judge_core.fp8.FP8Config)."""

    method: str
    config: Any

    @property
    def plugin(self) -> QuantPlugin:
        return plugin(self.method)


def detect(quant_json: dict | None, where: str = "quantization_config") -> Quantization | None:
    """The typed quantization of a raw quantization_config (checkpoint.quantization_json), None when
    float; an unknown method or value raises naming it."""
    if quant_json is None:
        return None
    method = str(quant_json.get("quant_method")).lower()
    if method not in PLUGINS:
        hint = (" (compressed-tensors FP8 checkpoints are a different format)" if method == "compressed-tensors"
                else "")
        raise ValueError(f"{where}: quant_method={quant_json.get('quant_method')!r} is not supported by judge_core "
                         f"(it reads {', '.join(METHODS)}){hint}")
    return Quantization(method, plugin(method).parse(quant_json, where))


def check_quantization(value) -> str | None:
    """What `quantization=` asks for: None / "none" -> None, a method of AT_LOAD -> its name; anything
    else is a ValueError naming it."""
    if value is None:
        return None
    if isinstance(value, str) and value.lower() in QUANTIZATIONS:
        return None if value.lower() == "none" else value.lower()
    raise ValueError(f"quantization={value!r} is not supported: expected None or one of {QUANTIZATIONS}")
