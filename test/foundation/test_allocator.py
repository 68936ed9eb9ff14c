"""inference.reuse_freed_memory (seqpose_core.allocator): after a CPU runner is built, a frame-sized tensor comes
from the process's heap, not from a fresh mapping whose pages the kernel must zero again every frame."""

import subprocess
import sys
import textwrap

import pytest

from seqpose_core.allocator import _glibc

pytestmark = pytest.mark.skipif(_glibc() is None, reason='glibc only')

PROBE = textwrap.dedent(
    """
    import ctypes, sys
    import torch
    from helpers.tiny_runner import make_runner, tiny_model

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            'arena', 'ordblks', 'smblks', 'hblks', 'hblkhd', 'usmblks', 'fsmblks', 'uordblks', 'fordblks', 'keepcost')]

    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = MallInfo2

    def mapped_while_held():
        before = libc.mallinfo2().hblkhd
        table = torch.empty(10_000_000)  # 40 MB, above glibc's largest dynamic mmap threshold (32 MiB)
        table.fill_(1.0)
        grown = libc.mallinfo2().hblkhd - before
        del table
        return grown

    first = mapped_while_held()
    make_runner(tiny_model(), **{a.split('=')[0]: a.split('=')[1] == 'True' for a in sys.argv[1:]})
    print(first, mapped_while_held())
    """
)


def run_probe(*settings):
    out = subprocess.run(
        [sys.executable, '-c', PROBE, *settings], capture_output=True, text=True, cwd='test', timeout=300, check=True
    )
    return [int(value) for value in out.stdout.split()[-2:]]


def test_a_cpu_runner_keeps_freed_memory_for_the_next_frame():
    before, after = run_probe()
    assert before >= 40_000_000  # the C library's default: a fresh mapping for a large block
    assert after == 0  # the runner's: the heap, where the last frame's pages are warm


def test_the_setting_off_leaves_the_allocator_alone():
    before, after = run_probe('reuse_freed_memory=False')
    assert before >= 40_000_000 and after >= 40_000_000
