"""The checkpoint's tokenizer, loaded once per process: every judge from the same directory shares it.

transformers 5 reads a Qwen3.5 tokenizer.json (11 MB, a 248k vocabulary) through Python's json module:
~3 s per load, ten times the tiny model's weights and a third of a 4B model's load on a fast disk. Many
judges on one checkpoint in one process are common (a service with a reference twin, `rank` with a
tournament cache, the Ray replicas' retries, a test run): they share one tokenizer. judge_core never
changes a tokenizer it loaded; a user who does should `copy.deepcopy(judge.tokenizer)` first.

The cache keys on the directory and the size and mtime of every file in it other than weights, so a
rewritten tokenizer or template loads afresh; it holds the last few checkpoints only.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
_MAX_CACHED = 4

_cache: OrderedDict = OrderedDict()
_lock = threading.Lock()


def _key(path: Path) -> tuple:
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.endswith(_WEIGHT_SUFFIXES))
    return (str(path.resolve()), tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files))


def load_tokenizer(path: str | Path):
    """AutoTokenizer.from_pretrained(path) for a local checkpoint directory, shared within the process."""
    from transformers import AutoTokenizer

    path = Path(path)
    if not path.is_dir():   # not ours to cache: let transformers resolve it (and name what is wrong)
        return AutoTokenizer.from_pretrained(str(path))
    key = _key(path)
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    tokenizer = AutoTokenizer.from_pretrained(str(path))   # outside the lock: loads of other paths go on
    with _lock:
        tokenizer = _cache.setdefault(key, tokenizer)
        _cache.move_to_end(key)
        while len(_cache) > _MAX_CACHED:
            _cache.popitem(last=False)
    return tokenizer


def clear_tokenizer_cache() -> None:
    with _lock:
        _cache.clear()
