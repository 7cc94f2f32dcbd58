"""The file pipeline around the one engine: frames decoded ahead in a thread, each once; writes in a pool of threads.

`SharedFrames` is the engine's `Frames` for a file source: one store of decoded frames that the device
windows and the scene-cut finder both read (the finder reads each frame's thumbnail, made once as the frame is
decoded), filled by one decode-ahead thread and bounded: it holds the frames from the current window's first
to AHEAD frames past the furthest frame asked for, so a 1080p run with cuts on holds about
chunk + cuts.CUT_CONTEXT + 1 + AHEAD frames. `WriterPool` is the engine's `Sink` for files: each frame is
encoded and written (atomically) in one of `threads` threads, and committed (logged, counted, muxed) strictly in
the order the engine gave it; a writer's error stops the run at that frame, and nothing given after it is
committed.
"""
from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from .buffers import keep_frame_buffers
from .media import FramesIOError

if TYPE_CHECKING:
    import torch

    from .media import Source

AHEAD = 2
"""Frames decoded past the furthest frame the engine asked for (the decode-ahead bound)."""
IN_FLIGHT_PER_THREAD = 2
"""Output frames given to the writer pool and not yet committed, per writer thread (the write-behind bound)."""


def default_io_threads() -> int:
    """Writer threads when --io-threads is automatic: the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # no sched_getaffinity (macOS, Windows)
        return max(1, os.cpu_count() or 1)


class _Entry:
    """One decoded frame: as the source stores it (a folder's RawImage, a video's PyAV frame; None for other
    sources) and, near the windows, in the working encoding."""

    __slots__ = ("frame", "raw")

    def __init__(self, frame: torch.Tensor | None, raw: Any):
        self.frame, self.raw = frame, raw


class SharedFrames:
    """Source frames decoded once, ahead of the engine, by one thread (an `engine.Frames`).

    Each frame is decoded once; its scene-cut thumbnail (`thumbnails`) is made from it at once and kept from
    CUT_CONTEXT + 1 frames before the latest window on. Frames are kept from the latest window's first on, as
    stored (a quarter of the memory for 8-bit files) until they come within AHEAD frames of a window, when the
    thread makes them float (frames whose colour is converted are kept as float); keep_raw: float frames keep
    their stored samples too (`raw`: the sink writes copies from them), else these are let go as each frame is
    made float. skip_damaged: a frame that cannot be read is recorded in `damaged` and stands in as zeros. A
    jump back, or far ahead in a folder (resume, --frames), re-opens the source; a video reads on (skipping
    frames means decoding them).
    """

    def __init__(self, source: Source, count: int, *, skip_damaged: bool = False, thumbnails: bool = True,
                 keep_raw: bool = False, ahead: int = AHEAD):
        from .cuts import CUT_CONTEXT

        self.source, self.count, self.skip_damaged = source, count, skip_damaged
        self.size = source.size
        self.damaged: dict[int, str] = {}
        self._make_thumbs, self._ahead, self._keep_raw = thumbnails, ahead, keep_raw
        self._context = CUT_CONTEXT + 1 if thumbnails else 0  # thumbnails kept before the window
        kind = type(source)  # a view such as dedupe.KeptFrames numbers frames its own way: its iterator only
        self._stored = hasattr(kind, "raw_frames") and hasattr(kind, "decode")
        self._random_access = self._stored and hasattr(kind, "read_raw")
        # Frames whose colour is converted (OpenColorIO: EXR, DPX) are held as float: converting twice costs more
        # than the memory it saves.
        self._hold_stored = self._stored and getattr(getattr(source, "colour", None), "identity", True)
        self._frames: dict[int, _Entry] = {}
        self._thumbs: dict[int, torch.Tensor] = {}
        self._errors: dict[int, BaseException] = {}
        self._lock = threading.Condition()
        self._low = 0  # frames below this are dropped (thumbnails below it - _context)
        self._high = -1  # the furthest frame asked for
        self._window_high = -1  # the furthest frame a window asked for
        self._next = 0  # the next frame the thread decodes
        self._restart: int | None = None
        self._stop = False
        self._fatal: BaseException | None = None  # what stopped the decode thread
        self._thread: threading.Thread | None = None

    # -- what the engine reads

    def get(self, lo: int, hi: int) -> torch.Tensor:
        """Frames lo..hi: [hi - lo + 1, C, H, W] float32 in the working encoding."""
        import torch

        return torch.stack(self._wait(lo, hi, self._frames, window=True))

    def peek(self, lo: int, hi: int) -> torch.Tensor:
        """Frames lo..hi like `get`, for a reader ahead of the windows (the overlay finder reads CONTEXT frames
        past them): the windows' frames are kept, and frames held as stored are made float for this call only."""
        import torch

        entries = self._wait(lo, hi, self._frames, window=False)
        return torch.stack([entry.frame if entry.frame is not None else self.source.decode(entry.raw)  # type: ignore
                            for entry in entries])

    def thumbnails(self, lo: int, hi: int) -> torch.Tensor:
        """Scene-cut thumbnails of frames lo..hi [hi - lo + 1, 3, h, w] (emavfi.cuts.thumbnails), each made once."""
        import torch

        from .cuts import thumbnails

        if not self._make_thumbs:
            return thumbnails(self.get(lo, hi))
        return torch.stack(self._wait(lo, hi, self._thumbs, window=False))

    def raw(self, index: int) -> Any:
        """Frame index as its source stores it (for a folder: media.images.RawImage) while it is held, else None."""
        with self._lock:
            entry = self._frames.get(index)
        return None if entry is None else entry.raw

    def close(self) -> None:
        """Stop the decode thread (it finishes the frame it is decoding)."""
        with self._lock:
            self._stop = True
            self._lock.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _wait(self, lo: int, hi: int, table: dict[int, Any], *, window: bool) -> list[Any]:
        """table[lo..hi] once the decode thread has made them; its error for a frame that failed. A window (the
        engine's frames) lets go of the frames before it and gets them float; otherwise (thumbnails, a peek at
        frames) the entries are returned as they are. A peek leaves frames ahead to the thread reading on (a
        folder is not re-opened there: the frames before them are still to come)."""
        peek = not window and table is self._frames
        with self._lock:
            if window:
                self._window_high = max(self._window_high, hi)
                if lo > self._low:  # windows move forward: older frames are not read again
                    self._low = lo
                    for index in [i for i in self._frames if i < lo]:
                        del self._frames[index]
                    for index in [i for i in self._thumbs if i < lo - self._context]:
                        del self._thumbs[index]
            self._high = max(self._high, hi)
            missing = [i for i in range(lo, hi + 1) if i not in table and i not in self._errors]
            if missing and (not peek or self._thread is None or missing[0] < self._next):
                self._reposition(missing[0])
            self._lock.notify_all()
            found = []
            for index in range(lo, hi + 1):
                while index not in table or (window and table[index].frame is None):
                    if index in self._errors:
                        raise self._errors.pop(index)
                    if self._fatal is not None:
                        raise self._fatal
                    self._lock.wait()
                found.append(table[index].frame if window else table[index])
            return found

    def _reposition(self, index: int) -> None:
        """Start the thread, or re-open the source, where frame index (needed now) will not otherwise come."""
        early = max(0, index - self._context)  # the cut finder reads thumbnails this far before a window
        if self._thread is None:
            self._next = self._low = early
            self._thread = threading.Thread(target=self._produce, name="emavfi-decode", daemon=True)
            self._thread.start()
        elif index < self._next or (self._random_access and index > self._next + self._ahead + self._context):
            self._restart = self._low = early if index >= self._next else index

    # -- the decode thread

    def _due(self) -> int | None:
        """A held frame within AHEAD of the windows that is not float yet (under the lock)."""
        return next((i for i in range(self._low, self._window_high + self._ahead + 1)
                     if i in self._frames and self._frames[i].frame is None and i not in self._errors), None)

    def _produce(self) -> None:
        try:
            self._produce_frames()
        except BaseException as exc:  # noqa: BLE001 - the engine's thread raises it instead of waiting forever
            with self._lock:
                self._fatal = exc
                self._lock.notify_all()

    def _produce_frames(self) -> None:
        frames: Iterator[Any] | None = None
        while True:
            with self._lock:
                while not self._stop and self._restart is None and (due := self._due()) is None and \
                        (self._next >= self.count or self._next > self._high + self._ahead):
                    self._lock.wait()
                if self._stop:
                    return
                if self._restart is not None:
                    self._next, self._restart, frames, due = self._restart, None, None, None
                index = self._next
                entry = self._frames[due] if due is not None else None
            if entry is not None:
                try:
                    frame = self.source.decode(entry.raw)  # type: ignore[attr-defined]
                except BaseException as exc:  # noqa: BLE001 - handed to the engine's thread, which raises it
                    frame, self._errors[due] = None, exc  # type: ignore[index]
                with self._lock:
                    entry.frame = frame
                    if frame is not None and not self._keep_raw:
                        entry.raw = None
                    self._lock.notify_all()
                continue
            frames = frames or self._read(index)
            entry, thumb, error, frames = self._decode(index, frames)
            with self._lock:
                if self._restart is None:  # else a jump made this frame moot
                    if error is not None:
                        self._errors[index] = error
                    if entry is not None and index >= self._low:
                        if self._hold_stored and entry.raw is not None and index > self._window_high + self._ahead:
                            entry.frame = None  # kept as stored until a window comes near
                        elif not self._keep_raw:
                            entry.raw = None
                        self._frames[index] = entry
                    if thumb is not None and index >= self._low - self._context:
                        self._thumbs[index] = thumb
                    self._next = index + 1
                self._lock.notify_all()

    def _read(self, start: int) -> Iterator[tuple[Any, torch.Tensor]]:
        """(as stored or None, frame) from start on."""
        if self._stored:
            return ((raw, self.source.decode(raw)) for raw in self.source.raw_frames(start))  # type: ignore
        return ((None, frame) for frame in self.source.frames(start))

    def _decode(self, index: int, frames: Iterator[tuple[Any, torch.Tensor]]) -> tuple[Any, Any, Any, Any]:
        """Frame index from frames: (entry, thumbnail, None, frames to go on with) or (None, None, error, None)."""
        import torch

        try:
            item = next(frames, None)
        except FramesIOError as exc:
            if not self.skip_damaged:
                return None, None, exc, None
            self.damaged[index] = str(exc)  # read by the engine once the window holding it is returned
            zeros = torch.zeros(self.source.channels, *self.size)
            return _Entry(zeros, None), self._thumb(zeros), None, self._read(index + 1)
        except BaseException as exc:  # noqa: BLE001 - handed to the engine's thread, which raises it
            return None, None, exc, None
        if item is None:  # not a usage error (exit 1): the input changed under the run
            return None, None, FramesIOError(f"the input ended after {index} frames while {self.count} were "
                                             "counted; was it changed during the run?"), None
        raw, frame = item
        return _Entry(frame, raw), self._thumb(frame), None, frames

    def _thumb(self, frame: torch.Tensor) -> torch.Tensor | None:
        if not self._make_thumbs:
            return None
        from .cuts import thumbnails

        return thumbnails(frame[None])[0]


# ----------------------------------------------------------------------------------------------- writing

class WriterPool:
    """A sink that runs `stage(index, image, copy_of, raw)` in `threads` threads and `commit(index, staged)` in
    the order frames were given (an `engine.Sink`): in the calling thread, or with commit_thread (a video's
    encoder, the costly step) in one thread of its own, after the first frame, which opens the encoder where
    native libraries' banners are held back (emavfi.media.quiet).

    raws: the decoded file samples of a source frame (SharedFrames.raw), looked up as a copy is given, so it is
    written without reading the file again. After each commit the buffers freed since may go back to the system
    (keep_frame_buffers, set up here, before any frame is decoded). At most `in_flight` frames are staged and not
    yet committed. The
    first error, in the order given, is raised by a later `write` or by `close`; the frames being written then
    finish (complete files) and nothing given after the failed frame is committed.
    """

    def __init__(self, stage: Callable[[int, Any, int | None, Any], Any], commit: Callable[[int, Any], None], *,
                 threads: int, raws: Callable[[int], Any] | None = None, in_flight: int | None = None,
                 commit_thread: bool = False):
        self.stage, self.raws = stage, raws
        self.commit = _then(commit, keep_frame_buffers())
        self.threads = max(1, threads)
        self.in_flight = in_flight or IN_FLIGHT_PER_THREAD * self.threads
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="emavfi-write")
        self._pending: deque[tuple[int, Future[Any]]] = deque()
        self._committer = ThreadPoolExecutor(1, thread_name_prefix="emavfi-commit") if commit_thread else None
        self._committing: deque[Future[None]] = deque()
        self._stopped = threading.Event()  # a commit failed or the run stops: later frames are not committed
        self._given = 0

    def write(self, index: int, image: torch.Tensor | None, *, copy_of: int | None = None) -> None:
        """Give output frame index: staged in a writer thread, committed in turn (see the class)."""
        raw = self.raws(copy_of) if self.raws is not None and copy_of is not None else None
        staged = self._pool.submit(self.stage, index, image, copy_of, raw)
        self._given += 1
        if self._committer is None or self._given == 1:
            self._pending.append((index, staged))
            self._commit_ready(0 if self._committer is not None else self.in_flight)
            return
        self._raise_failed()
        self._committing.append(self._committer.submit(self._commit_staged, index, staged))
        while len(self._committing) > self.in_flight:
            self._committing.popleft().result()

    def close(self) -> None:
        """Wait for every frame to be written and commit them; the first error is raised."""
        try:
            self._commit_ready(0)
            while self._committing:
                self._committing.popleft().result()
        except BaseException:
            self._stop()
            raise
        finally:
            self._shutdown()

    def abort(self) -> None:
        """Stop (Ctrl-C, an error elsewhere): frames not started are dropped, those being written finish, and the
        written ones are committed in order up to the first that is not; nothing is raised."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._committer is not None:
            self._committer.shutdown(wait=True)  # each commits its frame if it was written, in order
            self._committing.clear()
        while self._pending:
            index, future = self._pending.popleft()
            if future.cancelled() or future.exception() is not None:
                break
            try:
                self.commit(index, future.result())
            except Exception:  # noqa: BLE001 - stopping anyway; the error that stopped the run is the one shown
                break
        self._pending.clear()

    def _commit_staged(self, index: int, staged: Future[Any]) -> None:
        """In the commit thread: commit frame index once staged, unless an earlier frame failed."""
        if self._stopped.is_set():
            return
        try:
            self.commit(index, staged.result())
        except BaseException:
            self._stopped.set()
            raise

    def _raise_failed(self) -> None:
        """The first commit error, in order, among the frames committed so far."""
        while self._committing and self._committing[0].done():
            self._committing.popleft().result()

    def _stop(self) -> None:
        self._stopped.set()
        self._pool.shutdown(wait=True, cancel_futures=True)  # later frames finish; none is committed

    def _shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._committer is not None:
            self._committer.shutdown(wait=True)

    def _commit_ready(self, keep: int) -> None:
        """Commit, in order, the frames at the front that are written; wait while more than `keep` are left."""
        while self._pending and (self._pending[0][1].done() or len(self._pending) > keep):
            index, future = self._pending.popleft()
            try:
                self.commit(index, future.result())
            except BaseException:
                self._pending.clear()
                self._stop()
                raise


def _then(commit: Callable[[int, Any], None], after: Callable[[], None]) -> Callable[[int, Any], None]:
    def committed(index: int, staged: Any) -> None:
        commit(index, staged)
        after()
    return committed
