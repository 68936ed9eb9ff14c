"""Keep freed memory in the process (inference.reuse_freed_memory): what a CPU frame's large tensors cost.

PyTorch's CPU tensors come from the C library's malloc. glibc serves a large block (above its mmap threshold,
128 KiB at start, raised as blocks are freed, up to 32 MiB) with a fresh mmap and gives it back on free, so every
frame's large tensors are new pages: the kernel zeroes each 4 KiB page on its first touch. For the S config the
fused levels' table alone is 34 MB, and its page faults cost as much as half the matmuls that fill it (`seqpose
bench --config seqpose_vits --mode mf`, fusion stage: 19-22 ms, 13.7-14.1 ms with the memory kept;
benchmarks/README.md). Raising the mmap and trim thresholds to 1 GiB keeps freed blocks in the heap, so the next
frame reuses warm pages. The cost: the process keeps its peak heap instead of returning it to the system.

Process-wide and one-way (the runner turns it on; nothing turns it off); a no-op where the C library is not
glibc.
"""

import ctypes
import ctypes.util
import functools

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
KEEP_BELOW = 1 << 30  # bytes: blocks below this come from the heap and stay there when freed


@functools.lru_cache(maxsize=1)
def _glibc():
    name = ctypes.util.find_library('c')
    try:
        libc = ctypes.CDLL(name)
    except (OSError, TypeError):
        return None
    return libc if hasattr(libc, 'gnu_get_libc_version') else None  # only glibc has it


def keep_freed_memory():
    """Ask glibc to serve blocks below 1 GiB from its heap and keep freed memory; True where it took effect."""
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, KEEP_BELOW)) and bool(libc.mallopt(M_TRIM_THRESHOLD, KEEP_BELOW))
