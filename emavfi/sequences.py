"""Frame sequences as pipelines name them: `sh010_plate.1001.exr` is frame 1001 of `sh010_plate.####.exr`.

A folder's image files are grouped into sequences by what surrounds the last number of their names
(prefix, suffix, extension). One sequence per input: two are refused with a line listing them (`--pattern`
picks one). Frame numbers are the frames' identity: output numbering follows the first one, and a missing
number is a gap, refused before any work unless `--gaps interpolate` (frames made at their true times) or
`--gaps ignore` (the files taken as if they were consecutive). Pure Python: no torch, no image library.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

from .schedule import Request, Schedule, make_schedule

GAPS = ("error", "interpolate", "ignore")
_NUMBERED = re.compile(r"^(.*?)(\d+)(\D*)$")
_MAX_LISTED = 4


class SequenceError(ValueError):
    """A folder's files do not form one gap-free sequence; the message names what to do."""


@dataclass(frozen=True)
class FrameSequence:
    """The files of one sequence in frame order, with their frame numbers (None: names carry no number)."""

    folder: Path
    paths: tuple[Path, ...]
    numbers: tuple[int, ...] | None
    label: str  # e.g. "sh010_plate.####.exr"

    @property
    def first_number(self) -> int | None:
        """The frame number of the first file (None when names carry no number)."""
        return self.numbers[0] if self.numbers else None

    def missing(self) -> list[int]:
        """Frame numbers between the first and the last that have no file."""
        if not self.numbers:
            return []
        have = set(self.numbers)
        return [n for n in range(self.numbers[0], self.numbers[-1] + 1) if n not in have]

    def describe_range(self) -> str:
        """E.g. "1001-1011" (or "" without numbers)."""
        return "" if not self.numbers else f"{self.numbers[0]}-{self.numbers[-1]}"


def natural_key(name: str) -> tuple:
    """Sort key that orders numbers by value: frame_2 before frame_10."""
    parts = re.split(r"(\d+)", name)
    return tuple(int(part) if i % 2 else part.casefold() for i, part in enumerate(parts))


def _key(path: Path, extension: str) -> tuple[str, str, str, int | None]:
    """(prefix, suffix, extension, number) of a file name; unnumbered names share one key."""
    match = _NUMBERED.match(path.stem)
    if match is None:
        return ("", "", extension, None)
    return (match.group(1), match.group(3), extension, int(match.group(2)))


def _label(prefix: str, suffix: str, extension: str, numbered: bool, width: int) -> str:
    return f"{prefix}{'#' * width}{suffix}{extension}" if numbered else f"*{extension} (no frame numbers)"


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """`--pattern`: a file-name pattern with `#` (one or more digits for a run of #), `*` and `?`."""
    parts = re.split(r"(#+|\*|\?)", pattern)
    body = "".join("\\d+" if p.startswith("#") else ".*" if p == "*" else "." if p == "?" else re.escape(p)
                   for p in parts)
    return re.compile(body, re.IGNORECASE)


def group(folder: Path, paths: Iterable[Path], canonical: dict[str, str] | None = None,
          pattern: str | None = None) -> FrameSequence:
    """The one sequence among `paths` (files of `folder`); SequenceError when there are several or none.

    canonical: extension aliases (".tiff" -> ".tif") so that one sequence may mix spellings of one type.
    """
    canonical = canonical or {}
    paths = list(paths)
    if pattern is not None:
        regex = pattern_regex(pattern)
        paths = [p for p in paths if regex.fullmatch(p.name)]
        if not paths:
            raise SequenceError(f"no image files in {folder} match --pattern {pattern!r}")
    groups: dict[tuple[str, str, str], list[tuple[int | None, Path]]] = {}
    for path in paths:
        ext = path.suffix.lower()
        prefix, suffix, ext, number = _key(path, canonical.get(ext, ext))
        groups.setdefault((prefix, suffix, ext), []).append((number, path))
    labelled = {key: _label(key[0], key[1], key[2], items[0][0] is not None, _width(items))
                for key, items in groups.items()}
    if len(groups) > 1:
        listed = sorted(groups, key=lambda k: -len(groups[k]))
        names = ", ".join(f"{labelled[k]} ({_files(len(groups[k]))})" for k in listed[:_MAX_LISTED])
        more = f" and {len(listed) - _MAX_LISTED} more" if len(listed) > _MAX_LISTED else ""
        raise SequenceError(f"{folder} holds {len(groups)} sequences: {names}{more}; pick one with "
                            f"--pattern '{labelled[listed[0]].split(' ')[0]}'")
    (key, items), = groups.items()
    if items[0][0] is None:
        ordered = sorted((p for _, p in items), key=lambda p: natural_key(p.name))
        return FrameSequence(folder, tuple(ordered), None, labelled[key])
    items.sort(key=lambda item: (item[0], item[1].name))
    numbers = [n for n, _ in items]
    doubles = sorted({n for a, n in zip(numbers, numbers[1:]) if a == n})
    if doubles:
        first = next(p.name for n, p in items if n == doubles[0])
        second = [p.name for n, p in items if n == doubles[0]][1]
        raise SequenceError(f"frame {doubles[0]} of {labelled[key]} in {folder} is there twice ({first} and "
                            f"{second}); keep one")
    return FrameSequence(folder, tuple(p for _, p in items), tuple(numbers), labelled[key])  # type: ignore[arg-type]


def _files(count: int) -> str:
    return f"{count} file{'s' if count != 1 else ''}"


def _width(items: Sequence[tuple[int | None, Path]]) -> int:
    digits = [len(_NUMBERED.match(p.stem).group(2)) for n, p in items if n is not None]  # type: ignore[union-attr]
    return min(digits, default=1)


def describe_numbers(numbers: Sequence[int]) -> str:
    """1006, 1009, 1010 -> "1006, 1009-1010"."""
    spans: list[list[int]] = []
    for n in numbers:
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def check_gaps(sequence: FrameSequence, gaps: str) -> list[int]:
    """The missing frame numbers (gaps "interpolate"/"ignore"), or SequenceError naming them (gaps "error")."""
    if gaps not in GAPS:
        raise SequenceError(f"--gaps must be one of {', '.join(GAPS)}; got {gaps!r}")
    missing = sequence.missing()
    if missing and gaps == "error":
        raise SequenceError(f"missing frames {describe_numbers(missing)} in {sequence.folder} (frames "
                            f"{sequence.describe_range()}): add --gaps interpolate to make them at their true times, "
                            "--gaps ignore to treat the files as consecutive, or render the missing frames first")
    return missing if gaps == "interpolate" else []


def frame_times(sequence: FrameSequence) -> list[Fraction]:
    """Each file's time in frames from the first (its frame number less the first)."""
    assert sequence.numbers is not None
    return [Fraction(n - sequence.numbers[0]) for n in sequence.numbers]


def schedule_over_gaps(source: object, request: Request, arbitrary_t: bool, gaps: str) -> Schedule | None:
    """The schedule of a folder sequence with missing frames (None when there is nothing to fill).

    gaps "error" refuses a gap; "ignore" leaves the files consecutive (None); "interpolate" places every output
    at its true time, the frame numbers giving the times: -m N makes N outputs per frame number, gaps included
    (a missing frame is an in-between of its neighbours), and an fps retime reads frame n at n / source fps.
    """
    sequence = getattr(source, "sequence", None)
    if not isinstance(sequence, FrameSequence) or not check_gaps(sequence, gaps):
        return None
    n = len(sequence.paths)
    if request.timesteps is not None:
        raise SequenceError("--gaps interpolate places frames at their true times, with -m or --fps; --timesteps "
                            "place frames per pair of files: use --gaps ignore with them")
    times = frame_times(sequence)
    if request.is_retime:
        if request.source_fps is None:
            raise SequenceError("an fps retime needs the input frame rate: add --source-fps")
        return make_schedule(request, n, arbitrary_t, times=[t / request.source_fps for t in times])
    base = make_schedule(request, n, arbitrary_t)  # the multiplier's own checks (e.g. powers of two)
    per_frame = Request(target_fps=Fraction(len(request.per_pair) + 1), source_fps=Fraction(1),
                        method=request.method)
    filled = make_schedule(per_frame, n, arbitrary_t, times=times)
    return replace(filled, out_fps=base.out_fps, warning=filled.warning or base.warning)


def gaps_note(source: object, gaps: str) -> str | None:
    """One line for the run summary and `plan` when missing frames are made (gaps "interpolate")."""
    sequence = getattr(source, "sequence", None)
    if gaps != "interpolate" or not isinstance(sequence, FrameSequence) or not sequence.missing():
        return None
    return (f"missing frames {describe_numbers(sequence.missing())} of {sequence.label} are made at their true "
            "times (--gaps interpolate)")


def output_start(start_number: int | None, source: object) -> int:
    """The file number of output frame 0: `--start-number`, else the input's first frame number, else 0."""
    if start_number is not None:
        return start_number
    sequence = getattr(source, "sequence", None)
    first = sequence.first_number if isinstance(sequence, FrameSequence) else None
    return first or 0
