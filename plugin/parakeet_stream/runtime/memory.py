"""How the engine's process reuses the memory of its step tensors on the CPU.

Every step of N streams allocates its outputs anew (encoder output, new caches: hundreds of megabytes at a thousand
streams of the demo model) and frees the last step's. glibc's malloc serves blocks above its mmap threshold with a
fresh ``mmap`` and gives them back with ``munmap`` when freed, so each step pays for mapping, page-faulting and
unmapping them again: ~14 us of the inference thread per stream-step at 1 024 streams on a 2-core VM, and the
model's own steps take 2.4x as long (``bench/stream_overhead.py``). CUDA's caching allocator keeps freed blocks for
the next step; ``keep_freed_memory`` makes glibc do the same for a CPU engine: large blocks come from the heap and
stay there once freed, so the process's resident memory stays at its peak (the step's working set, which the next
step needs again anyway).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import platform

logger = logging.getLogger("parakeet_stream")

# mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
KEEP_BELOW_BYTES = 1 << 30  # blocks under 1 GiB come from the heap (mallopt takes an int)

_kept = False


def keep_freed_memory() -> bool:
    """Make glibc's malloc serve large blocks from the heap and keep freed memory for reuse, once per process.
    Returns whether it did (only glibc has these settings; elsewhere nothing changes).

    One arena (``M_ARENA_MAX``): a thread's own arena grows in heaps of at most 64 MB and maps anything larger
    afresh whatever the threshold; the main arena grows without that limit. It applies to threads whose arena is
    not chosen yet, such as the inference threads started after this call."""
    global _kept
    if _kept:
        return True
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        done = all(libc.mallopt(param, value) == 1 for param, value in (
            (M_MMAP_THRESHOLD, KEEP_BELOW_BYTES), (M_TRIM_THRESHOLD, KEEP_BELOW_BYTES), (M_ARENA_MAX, 1)))
    except (OSError, AttributeError):
        done = False
    if done:
        _kept = True
        logger.info("freed memory kept for reuse", extra={"mmap_threshold_bytes": KEEP_BELOW_BYTES,
                                                           "arenas": 1})
    return done
