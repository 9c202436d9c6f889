"""A checkpoint on disk: where it is, its config, its tensors, its quantization. The ground floor.

Every loader (the hf and packed backends, the quantization plug-ins, the quantizers, the reference
twin) goes through here. One load opens the checkpoint once and passes the `Checkpoint` down:

    ckpt = Checkpoint.open("selfhypnosis-ai/Qwen3.5-4B-Creative-Writing-Judge")  # local dir or HF cache
    ckpt.config, ckpt.text      # config.json, read once; the language model's part of it, found once
    ckpt.quant                  # judge_core.quant.Quantization (method + typed config) or None
    reader = TensorReader(ckpt.path)    # causal-LM keys ("model.layers.0...") for both layouts

Hub ids resolve through huggingface_hub: the Hugging Face cache first (HF_HUB_CACHE, else
HF_HOME/hub, read when called, not at import), then a download unless HF_HUB_OFFLINE is set.
This module imports nothing of judge_core at import time; `Checkpoint.open` asks judge_core.quant (the
one table of quantization methods) to parse the quantization config.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch

# What a judge needs from a hub repo: config, weights, tokenizer, chat template. Not the other files
# a repo may hold (other weight formats, images, training logs).
HUB_FILES = ["*.json", "*.safetensors", "*.jinja", "*.txt", "*.model", "*.tiktoken"]

# Checkpoint key prefix -> the causal-LM (Qwen3_5ForCausalLM) key prefix, None = not used by the judge.
# First match wins, so the multimodal prefix precedes the plain "model." one. Keys matching no rule
# pass through unchanged, so a loader sees them and can refuse what it does not know.
KEY_MAP: tuple[tuple[str, str | None], ...] = (
    ("model.visual.", None),                  # vision tower of the multimodal layout
    ("visual.", None),
    ("model.mtp.", None),                     # multi-token-prediction head
    ("mtp.", None),
    ("model.language_model.", "model."),      # multimodal layout: Qwen3_5ForConditionalGeneration
    ("model.", "model."),                     # text-only layout: Qwen3_5ForCausalLM
    ("lm_head.", "lm_head."),
)

_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


class CheckpointError(ValueError):
    """A checkpoint that cannot be found or read; the message names the path or repo id."""


# -- where: local dir or hub id -----------------------------------------------------------------------
def hub_cache_dir() -> Path:
    """The Hugging Face hub cache, from the environment as it is now (HF_HUB_CACHE, HF_HOME/hub)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def looks_like_local_path(name: str) -> bool:
    """True for what can only be a path: absolute, ./ ../ ~, a backslash, or more than one slash."""
    return (name.startswith(("/", "./", "../", "~", ".\\")) or "\\" in name or name.count("/") > 1
            or name in (".", ".."))


def resolve(path_or_repo_id: str | os.PathLike, revision: str | None = None, token: str | bool | None = None,
            cache_dir: str | os.PathLike | None = None) -> Path:
    """A local checkpoint directory for a local path or a hub repo id ("org/name").

    A local directory is used as it is (it must hold config.json). A repo id is looked up in the hub
    cache without any network access; if it is not cached, it is downloaded (config, safetensors,
    tokenizer), unless HF_HUB_OFFLINE is set, which is an error naming the repo id and the cache.
    """
    name = os.fspath(path_or_repo_id)
    local = Path(name).expanduser()
    if local.is_dir():
        if revision is not None:
            raise CheckpointError(f"revision={revision!r} was given, but {name!r} is a local directory, "
                                  "not a hub repo id")
        if not (local / "config.json").is_file():
            raise CheckpointError(f"{name}: a directory without config.json is not a checkpoint "
                                  "(expected config.json, *.safetensors and tokenizer files)")
        return local
    if local.exists():
        raise CheckpointError(f"{name}: is a file; expected a checkpoint directory or a hub repo id (org/name)")
    if looks_like_local_path(name) or not _REPO_ID.match(name):
        raise CheckpointError(f"{name!r}: no such directory, and not a hub repo id of the form 'org/name'")
    return _resolve_repo(name, revision, token, cache_dir)


def _resolve_repo(repo_id: str, revision, token, cache_dir) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    cache = Path(cache_dir).expanduser() if cache_dir else hub_cache_dir()
    where = f"{repo_id}" + (f" (revision {revision})" if revision else "")
    try:
        path = Path(snapshot_download(repo_id, revision=revision, cache_dir=str(cache), local_files_only=True))
    except LocalEntryNotFoundError:
        path = None
    if path is not None and (path / "config.json").is_file():
        return path
    if hub_offline():
        download = f"hf download {repo_id}" + (f" --revision {revision}" if revision else "")
        raise CheckpointError(f"{where} is not in the Hugging Face cache {cache} and HF_HUB_OFFLINE is set: "
                              f"download it first (`{download}`), point HF_HUB_CACHE / HF_HOME at the cache that "
                              f"holds it, or pass a local directory; {_cached_revisions_hint(cache, repo_id)}")
    try:
        path = Path(snapshot_download(repo_id, revision=revision, cache_dir=str(cache), token=token,
                                      allow_patterns=HUB_FILES))
    except Exception as e:  # noqa: BLE001 - every hub failure becomes one message naming the repo
        raise CheckpointError(f"{where}: not in the Hugging Face cache {cache}, and the download failed "
                              f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from e
    if not (path / "config.json").is_file():
        raise CheckpointError(f"{where}: the repo has no config.json (not a model checkpoint)")
    return path


def _cached_revisions_hint(cache: Path, repo_id: str) -> str:
    """What the cache holds of `repo_id`, as a hint to pick one with --revision / revision=."""
    repo_dir = cache / f"models--{repo_id.replace('/', '--')}"
    refs = sorted(p.name for p in (repo_dir / "refs").glob("*") if p.is_file()) if (repo_dir / "refs").is_dir() else []
    snapshots = sorted(p.name for p in (repo_dir / "snapshots").glob("*") if (p / "config.json").is_file()) \
        if (repo_dir / "snapshots").is_dir() else []
    if not refs and not snapshots:
        return ("a specific branch, tag or commit is chosen with --revision (revision= in Python), "
                "the default being main")
    held = ", ".join([*refs, *(s[:12] for s in snapshots)][:6])
    return f"the cache holds {repo_id} at: {held}: choose one with --revision (revision= in Python)"


# -- config -------------------------------------------------------------------------------------------
def read_config(path: str | os.PathLike) -> dict:
    """config.json of a resolved checkpoint directory, as a dict. The one place judge_core reads it."""
    file = Path(path) / "config.json"
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no config.json (resolve() the path or repo id first)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{file}: not valid JSON ({e})") from e


def text_config(config):
    """The language model's part of a config: multimodal checkpoints nest it under `text_config`.

    The one lookup for every caller: a config.json dict, or a transformers config object."""
    if isinstance(config, dict):
        return config.get("text_config") or config
    return getattr(config, "text_config", None) or config


def quantization_json(path: str | os.PathLike, config: dict) -> dict | None:
    """The checkpoint's raw quantization config with `quant_method` lower-cased, or None when float.

    Looked up in config.json (top level, then text_config), then in auto-gptq's legacy
    quantize_config.json (which implies GPTQ and may omit quant_method). Not validated here: that is
    the plug-in's `parse` (judge_core.quant).
    """
    quant = config.get("quantization_config") or text_config(config).get("quantization_config")
    if quant:
        if not isinstance(quant, dict):
            raise CheckpointError(f"{path}/config.json: quantization_config={quant!r} is not a JSON object")
        return dict(quant, quant_method=str(quant.get("quant_method", "gptq")).lower())
    legacy = Path(path) / "quantize_config.json"
    if legacy.is_file():
        return dict(json.loads(legacy.read_text(encoding="utf-8")), quant_method="gptq")
    return None


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint as a load sees it, built once and passed to every loader.

    path: the resolved local directory ("in-memory model" for `from_config` without one).
    config: config.json as a dict. text: its language-model part (`text_config(config)`).
    quant: the parsed quantization (judge_core.quant.Quantization: `.method`, `.config`, `.plugin`),
        None for a float checkpoint.
    """

    path: Path
    config: dict
    quant: Any = None
    text: dict = field(init=False, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "text", text_config(self.config))

    @property
    def quant_method(self) -> str | None:
        """"gptq", "fp8", ... or None for a float checkpoint."""
        return None if self.quant is None else self.quant.method

    @classmethod
    def open(cls, path_or_repo_id: "str | os.PathLike | Checkpoint", revision: str | None = None,
             token: str | bool | None = None, cache_dir: str | os.PathLike | None = None) -> "Checkpoint":
        """Resolve (local dir or hub id), read config.json once, parse the quantization once.

        A Checkpoint passed in is returned as it is (loaders accept either)."""
        if isinstance(path_or_repo_id, Checkpoint):
            return path_or_repo_id
        path = resolve(path_or_repo_id, revision=revision, token=token, cache_dir=cache_dir)
        return cls.from_config(read_config(path), path)

    @classmethod
    def from_config(cls, config: dict, path: str | os.PathLike = "in-memory model") -> "Checkpoint":
        """A Checkpoint over a config already in hand (an in-memory model's, or one read by `open`)."""
        from .quant import detect

        where = f"{path}/config.json quantization_config"
        return cls(Path(path), config, detect(quantization_json(path, config), where))


# -- tensors --------------------------------------------------------------------------------------------
def model_key(raw: str) -> str | None:
    """Checkpoint key -> causal-LM key (`model.layers.0.mlp.up_proj.weight`), None for unused parts."""
    for prefix, target in KEY_MAP:
        if raw.startswith(prefix):
            return None if target is None else target + raw[len(prefix):]
    return raw


def checkpoint_files(path: str | os.PathLike) -> list[Path]:
    """The safetensors files of a checkpoint dir: the shards of model.safetensors.index.json, or all."""
    path = Path(path)
    index = path / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        missing = [s for s in shards if not (path / s).is_file()]
        if missing:
            raise CheckpointError(f"{path}: model.safetensors.index.json names {len(missing)} missing shard(s), "
                                  f"e.g. {missing[:3]}")
        return [path / s for s in shards]
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{path}: no *.safetensors files (judge_core reads safetensors checkpoints only)")
    return files


def _safetensors_device(device: torch.device | str) -> str:
    device = torch.device(device)
    return f"cuda:{device.index or 0}" if device.type == "cuda" else str(device)  # safetensors wants cuda:N


class TensorReader:
    """The judge's tensors of a checkpoint dir (or of an in-memory state dict) by causal-LM key.

    Both layouts give the same keys (`model.layers.3.self_attn.q_proj.weight`, `lm_head.weight`);
    unused parts (KEY_MAP) are not listed. Files are mmap'ed; `get` reads one tensor onto `device`.
    """

    def __init__(self, path: str | os.PathLike, device: torch.device | str = "cpu"):
        from safetensors import safe_open

        self.path = str(path)
        where = _safetensors_device(device)
        self._handles = [safe_open(str(f), framework="pt", device=where) for f in checkpoint_files(path)]
        self._where: dict[str, tuple[int, str]] = {}
        for i, handle in enumerate(self._handles):
            for raw in handle.keys():
                key = model_key(raw)
                if key is not None:
                    self._where[key] = (i, raw)
        self._tensors: dict[str, torch.Tensor] | None = None

    @classmethod
    def from_state_dict(cls, state_dict: dict[str, torch.Tensor], where: str = "in-memory model") -> "TensorReader":
        """The same interface over a model's state dict (benches build the 4B shape without writing it)."""
        self = cls.__new__(cls)
        self.path, self._handles, self._where = where, [], {}
        self._tensors = {}
        for raw, tensor in state_dict.items():
            key = model_key(raw)
            if key is not None:
                self._tensors[key] = tensor.detach()
        return self

    def keys(self) -> set[str]:
        return set(self._tensors) if self._tensors is not None else set(self._where)

    def __contains__(self, key: str) -> bool:
        return key in (self._tensors if self._tensors is not None else self._where)

    def raw_key(self, key: str) -> str:
        return key if self._tensors is not None else self._where[key][1]

    def shape(self, key: str) -> tuple[int, ...]:
        if self._tensors is not None:
            return tuple(self._tensors[key].shape)
        i, raw = self._where[key]
        return tuple(self._handles[i].get_slice(raw).get_shape())

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: self.shape(k) for k in self.keys()}

    def get(self, key: str) -> torch.Tensor:
        if key not in self:
            raise KeyError(f"{self.path}: the checkpoint has no tensor {key!r} (either layout)")
        if self._tensors is not None:
            return self._tensors[key]
        i, raw = self._where[key]
        return self._handles[i].get_tensor(raw)

    def items(self) -> Iterator[tuple[str, torch.Tensor]]:
        for key in sorted(self.keys()):
            yield key, self.get(key)


def iter_raw_tensors(path: str | os.PathLike) -> Iterator[tuple[str, str | None, torch.Tensor]]:
    """(checkpoint key, causal-LM key or None, tensor) for EVERY tensor, unused parts included
    (writers copy them through), one at a time on the CPU."""
    from safetensors import safe_open

    for file in checkpoint_files(path):
        with safe_open(str(file), framework="pt") as f:
            for raw in f.keys():
                yield raw, model_key(raw), f.get_tensor(raw)
