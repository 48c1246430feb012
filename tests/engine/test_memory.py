"""A CPU engine's process keeps freed memory for reuse, as CUDA's caching allocator does (``runtime/memory.py``):
its step tensors (hundreds of megabytes at a thousand streams of the demo model) come from the heap instead of a
fresh ``mmap`` per step."""
from __future__ import annotations

import ctypes
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
BLOCK = 40 << 20  # above glibc's largest dynamic mmap threshold (32 MB), under a thread arena's heap (64 MB)


class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                      "fsmblks", "uordblks", "fordblks", "keepcost")]


def mapped_blocks_while_allocating() -> int:
    """How many more blocks glibc holds mapped (``mallinfo2().hblks``) while a new thread holds a ``BLOCK``."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    seen = []

    def allocate() -> None:
        before = libc.mallinfo2().hblks
        block = np.ones(BLOCK // 4, dtype=np.float32)
        seen.append(libc.mallinfo2().hblks - before)
        del block

    t = threading.Thread(target=allocate)
    t.start()
    t.join()
    return seen[0]


PROBE = f"""
import logging, sys
logging.basicConfig(level=logging.INFO)
sys.path.insert(0, {str(ROOT / 'tests')!r})
from engine.test_memory import mapped_blocks_while_allocating
from parakeet_stream.runtime.memory import keep_freed_memory
print(mapped_blocks_while_allocating(), keep_freed_memory(), keep_freed_memory(), mapped_blocks_while_allocating())
"""


def test_keep_freed_memory_serves_large_blocks_from_the_heap():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=ROOT,
                         env={"PYTHONPATH": f"{ROOT / 'plugin'}:{ROOT}", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    # glibc's default maps the block afresh; once kept (a second call is a no-op that says so), the heap serves it
    assert out.stdout.split() == ["1", "True", "True", "0"]
    assert "freed memory kept for reuse" in out.stderr


ENGINES = f"""
import sys
sys.path.insert(0, {str(ROOT / 'tests')!r})
from engine.test_memory import mapped_blocks_while_allocating
import parakeet_stream as ps
from parakeet_stream.testing import build_random_model
for keep in (False, True):
    config = ps.EngineConfig(model="tiny", device="cpu", keep_freed_memory=keep)
    engine = ps.Engine.from_model(build_random_model, config)
    print(mapped_blocks_while_allocating())
    engine.close()
"""


def test_an_engine_keeps_freed_memory_unless_told_not_to():
    """In a fresh process: an engine with ``keep_freed_memory=False`` leaves glibc's defaults; the next, with the
    default, changes them for the process."""
    out = subprocess.run([sys.executable, "-c", ENGINES], capture_output=True, text=True, cwd=ROOT,
                         env={"PYTHONPATH": f"{ROOT / 'plugin'}:{ROOT}", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "0"]


def test_a_cpu_engine_keeps_freed_memory(demo_engine):
    assert demo_engine.info.device == "cpu"
    assert mapped_blocks_while_allocating() == 0
