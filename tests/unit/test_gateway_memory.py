"""The gateway's allocator setting: big buffers stay out of the heap arenas (the soak's memory growth)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# In a fresh process: free one 4 MiB buffer (glibc then raises its mmap threshold past 4 MiB), allocate 1 MiB,
# and print how many bytes that allocation added to glibc's mmapped total (mallinfo2's hblkhd).
PROBE = """
import ctypes, sys
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
import service
if sys.argv[1] == "gateway":
    service.return_large_buffers_to_the_os()
big = bytearray(4 << 20)
del big
before = libc.mallinfo2().hblkhd
buffer = bytearray(1 << 20)
print(libc.mallinfo2().hblkhd - before)
"""


def _mapped_bytes_of_a_1mib_buffer(mode: str) -> int:
    result = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    return int(result.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_gateway_keeps_big_buffers_in_their_own_mappings():
    # glibc's default: after the 4 MiB free, a 1 MiB buffer comes from the heap (what fragmented the gateway)
    assert _mapped_bytes_of_a_1mib_buffer("default") == 0
    # the gateway's setting: it is mapped on its own, and unmapped (given back) when freed
    assert _mapped_bytes_of_a_1mib_buffer("gateway") >= 1 << 20
