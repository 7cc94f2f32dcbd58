"""How a file job's frame-sized buffers are kept. Where glibc maps big buffers in huge pages
(`huge_pages_advised`: `python -m emavfi` starts itself so), each is mapped afresh and unmapped when freed;
elsewhere glibc reuses them from one arena and gives free ones back to the system past KEPT_FREE (called as each
output frame is committed)."""
from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any

_RESTARTED = "EMAVFI_STARTED_WITH_HUGE_PAGES"  # set for the new start only; it removes it at once
HUGE_PAGES = "glibc.malloc.hugetlb=1"
"""The glibc tunable (2.35 and later, read once as a process starts) that has malloc advise transparent huge pages
for the buffers it maps: a fresh 25 MB buffer then faults in 13 pages, not 6,100."""


def huge_pages_advised() -> bool:
    """True where this process's glibc maps big buffers in transparent huge pages (HUGE_PAGES in effect)."""
    return HUGE_PAGES in os.environ.get("GLIBC_TUNABLES", "").split(":") and _huge_pages_possible()


def start_with_huge_pages() -> None:
    """Start this command again in place (the same process, arguments and streams) with HUGE_PAGES in glibc's
    tunables, where `huge_pages_environment` gives them; otherwise return. It starts again once at most: where
    the tunable does not reach the new start (glibc drops it in set-user-ID processes), that one goes on without."""
    if os.environ.pop(_RESTARTED, None) is not None:
        return
    env = huge_pages_environment(os.environ)
    if env is None or not getattr(sys, "orig_argv", None):
        return
    try:
        os.execve(sys.executable, sys.orig_argv, {**env, _RESTARTED: "1"})
    except OSError:  # cannot start the interpreter again: go on with the reused buffers
        return


def huge_pages_environment(environ: Mapping[str, str]) -> dict[str, str] | None:
    """environ with HUGE_PAGES added to GLIBC_TUNABLES, where glibc and the kernel can use it and the tunable is
    not set already (a user's own hugetlb setting is kept); None where nothing is to change."""
    tunables = environ.get("GLIBC_TUNABLES", "")
    if "glibc.malloc.hugetlb=" in tunables or not _huge_pages_possible():
        return None
    return {**environ, "GLIBC_TUNABLES": f"{tunables}:{HUGE_PAGES}" if tunables else HUGE_PAGES}


def _huge_pages_possible() -> bool:
    """Linux, glibc 2.35 or later (which knows HUGE_PAGES) and a kernel that gives transparent huge pages."""
    return sys.platform.startswith("linux") and _glibc_at_least(2, 35) and _huge_pages_available()


def _glibc_at_least(major: int, minor: int) -> bool:
    try:
        name, version = os.confstr("CS_GNU_LIBC_VERSION").split()  # type: ignore[union-attr]
        found = tuple(int(part) for part in version.split(".")[:2])
    except (AttributeError, ValueError, OSError):  # not glibc (musl, macOS, Windows)
        return False
    return name == "glibc" and found >= (major, minor)


def _huge_pages_available() -> bool:
    """The kernel gives transparent huge pages where a program asks ("always" or "madvise", not "never")."""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as setting:
            return "[never]" not in setting.read()
    except OSError:
        return False


def keep_frame_buffers() -> Callable[[], None]:
    """Set how glibc keeps frame-sized buffers for this file job; returns what keeps free ones from piling up (the
    writer pool calls it as each output frame is committed).

    With huge pages advised (`huge_pages_advised`), every buffer over MAPPED is mapped afresh and unmapped when
    freed: resident memory follows the live buffers, and a fresh 1080p float frame costs 13 faults. Measured at
    1080p x2 (25 frames, stand-in network): peak memory 8-14 % lower than the reuse below (PNG 877 -> 756 MB, EXR
    1,239 -> 1,088) for 0-11 % more CPU; the network alone on the CPU 6-15 % slower (the kernel zeroes each fresh
    page), a whole job at 544x960 as fast (693 ms an output frame, against 690; mapped in 4 KiB pages, 815).

    Otherwise glibc reuses freed buffers of up to REUSED bytes (a 1080p float frame is 25 MB) from one arena, and
    `_Release` gives free pages back past KEPT_FREE: a buffer mapped in 4 KiB pages costs a fault per page on first
    touch (an operation on a new 25 MB buffer took 13.4 ms against 2.2 ms on a reused one; the network at 544x960
    spent 2.9 s a pair in the kernel with a fixed 4 MiB mapping threshold, 1.2 s with this). One arena keeps frames
    freed by other threads than made them from piling up in per-thread arenas; reuse alone let a render's memory
    creep up (900 MB after 9 frames and 1,170 MB after 40 at 1080p) as the heap fragmented. Elsewhere (no glibc)
    nothing changes.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        libc = None
    if libc is None or not hasattr(libc, "mallopt") or not hasattr(libc, "malloc_trim"):
        return lambda: None
    if huge_pages_advised():
        libc.mallopt(_M_MMAP_THRESHOLD, MAPPED)
        return lambda: None
    libc.mallopt(_M_ARENA_MAX, 1)
    libc.mallopt(_M_MMAP_THRESHOLD, REUSED)  # fixed: glibc stops moving it
    libc.mallopt(_M_TRIM_THRESHOLD, TRIMMED)
    return _Release(libc)


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8  # glibc's mallopt parameters
REUSED = 32 << 20  # glibc's largest mapping threshold
MAPPED = 4 << 20  # with huge pages: buffers over this are mapped afresh (a 1080p 8-bit frame is 6 MB)
TRIMMED = 128 << 20  # free space kept at the top of the heap (more than a 1080p float frame and its neighbours)
KEPT_FREE = 128 << 20
"""Free buffers kept resident for reuse; past this, `_Release` gives the free pages back to the system (256 MiB
let a 9-frame 1080p MP4 job peak 11 % higher, and no trim at all a 25-frame PNG job 33 %)."""


class _Release:
    """Gives the heap's free pages back to the system (malloc_trim, inside the heap too) once more than KEPT_FREE
    of them are resident. Those are the resident bytes beyond the live heap buffers and beyond what was resident
    outside them after the latest trim (code, the interpreter's own memory). Each trim costs the next frames a
    fault per page they reuse (at 1080p, up to 45 % more wall time than never trimming), so a job whose free buffers
    stay under KEPT_FREE (smaller frames) never pays it. Without glibc's mallinfo2 (before 2.33) it trims on every
    call."""

    def __init__(self, libc: Any):
        import ctypes

        class MallInfo2(ctypes.Structure):
            _fields_ = [(name, ctypes.c_size_t) for name in
                        ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                         "fordblks", "keepcost")]

        self._libc = libc
        self._info = getattr(libc, "mallinfo2", None)
        if self._info is not None:
            self._info.restype = MallInfo2
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._outside: int | None = None  # _beyond_live() right after the latest trim
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            if self._info is None:
                self._libc.malloc_trim(0)
            elif self._outside is None or self._beyond_live() - self._outside > KEPT_FREE:
                self._libc.malloc_trim(0)
                self._outside = self._beyond_live()

    def _beyond_live(self) -> int:
        """Resident bytes that are not live heap buffers: free heap pages, code, the interpreter's own memory."""
        with open("/proc/self/statm", "rb") as statm:
            resident = int(statm.read().split()[1]) * self._page
        info = self._info()
        return resident - info.uordblks - info.hblkhd
