"""Process-level settings generated code runs best under.

Large NumPy temporaries (over 128 KiB) come from fresh mmap'ed pages on every
call under glibc's defaults, and each page faults on first touch: on a
transformer block that was half the run time. Like the caching allocators of
PyTorch and JAX, we ask malloc to keep freed memory for reuse instead of
returning it to the OS. Done once, on the first compilation of an array model;
SYMBACKPROP_MALLOC_TUNING=0 keeps glibc's defaults.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
#: allocations below this come from the reusable heap rather than fresh pages
MMAP_THRESHOLD = 64 * 1024 * 1024
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD

_done = False
_lock = threading.Lock()


def tune_allocator() -> bool:
    """Raise glibc's mmap and trim thresholds once; True if they were set by this call or an earlier one."""
    global _done
    with _lock:
        if _done:
            return True
        if os.environ.get("SYMBACKPROP_MALLOC_TUNING", "1") == "0":
            return False
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt = libc.mallopt
        except (OSError, AttributeError):  # not glibc: nothing to tune
            return False
        mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        _done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
        return _done
