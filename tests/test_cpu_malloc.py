"""The CPU forward's allocator setting (judge_core/cpu_malloc.py): big freed blocks stay in the heap."""

from __future__ import annotations

import ctypes
import platform
import subprocess
import sys

import pytest

from judge_core.cpu_malloc import ENV, malloc_choice

# Run in a child so the setting under test does not depend on what this process did before. mallinfo2's
# hblkhd counts the bytes glibc holds in mmapped blocks: a 64 MiB tensor lands there unless the setting
# keeps big blocks in the heap.
_PROBE = """
import ctypes, sys, torch
from judge_core.cpu_malloc import keep_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
applied = keep_freed_memory()
before = libc.mallinfo2().hblkhd
x = torch.ones(16 << 20)                      # 64 MiB of float32
mapped = libc.mallinfo2().hblkhd - before
del x
heap_free = libc.mallinfo2().fordblks
print(applied, mapped, heap_free)
"""


def test_bad_setting_names_the_value():
    with pytest.raises(ValueError, match=f"{ENV}='tcmalloc'"):
        malloc_choice({ENV: "tcmalloc"})
    assert malloc_choice({}) == "keep" and malloc_choice({ENV: "system"}) == "system"


def _has_mallinfo2() -> bool:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        return hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2")      # glibc >= 2.33
    except OSError:
        return False


@pytest.mark.skipif(not _has_mallinfo2(), reason="needs glibc >= 2.33 (mallinfo2)")
@pytest.mark.parametrize("setting", ["keep", "system"])
def test_big_tensor_comes_from_the_heap_and_stays(setting, monkeypatch):
    monkeypatch.setenv(ENV, setting)
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True)
    applied, mapped, heap_free = out.stdout.split()
    print(f"{ENV}={setting}: applied {applied}, 64 MiB tensor mmapped bytes {mapped}, heap free after del {heap_free}")
    if setting == "keep":
        # served from the heap, and kept there for the next allocation once freed
        assert applied == "True" and int(mapped) == 0 and int(heap_free) >= 16 << 22
    else:
        assert applied == "False" and int(mapped) >= 16 << 22


def test_judge_refuses_a_bad_setting_before_loading(monkeypatch):
    from judge_core import Judge

    monkeypatch.setenv(ENV, "sometimes")
    with pytest.raises(ValueError, match=f"{ENV}='sometimes'"):
        Judge.from_pretrained("tiny", device="cpu")
