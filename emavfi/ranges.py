"""Output frame ranges for render farms: `--frames 1001-1100,1201-1300`, task splitting, the `plan` report.

Frame numbers on the command line are OUTPUT file numbers: global output index + start_number (a plate
numbered from 1001 gives frame_001001 ... for output index 0 ...). Inside the library a range is a `range` of
0-based global output indices: `render.prepare(job, frames=...)` (or the job's `--frames`) asks for exactly
what a task makes.
Pure Python: no torch, so `plan` and farm submitters can import it cheaply.
"""
from __future__ import annotations

import json
import re
from collections.abc import Sequence

_ITEM = re.compile(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?")


def _span(total: int, start_number: int) -> str:
    return f"{start_number}-{start_number + total - 1}"


def _check_shot(total: int, start_number: int) -> None:
    if total < 1:
        raise ValueError(f"this shot has no output frames (total {total})")
    if start_number < 0:
        raise ValueError(f"--start-number must be >= 0; got {start_number}")


def parse_frames(text: str, total: int, start_number: int = 0) -> list[range]:
    """Parse `--frames` ("1001-1100", "1-100,201-300", "42") into sorted ranges of 0-based global output indices.

    Numbers are output file numbers (index + start_number), both ends inclusive. Overlapping ranges, ranges
    outside the shot and unreadable text raise a one-line ValueError that names the valid frames.
    """
    _check_shot(total, start_number)
    valid = _span(total, start_number)
    items = text.split(",") if text.strip() else []
    if not items:
        raise ValueError(f"--frames is empty; give output frames like {valid} or {valid.split('-')[0]}")
    ranges: list[tuple[str, range]] = []
    for item in items:
        match = _ITEM.fullmatch(item)
        if match is None:
            raise ValueError(f"--frames {text.strip()!r}: cannot read {item.strip()!r}; use A-B or A, "
                             f"comma-separated, e.g. {valid}")
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        label = f"{first}-{last}" if match.group(2) is not None else str(first)
        if last < first:
            raise ValueError(f"--frames {label}: the first frame is after the last; did you mean {last}-{first}?")
        if first < start_number or last > start_number + total - 1:
            raise ValueError(f"--frames {label} is outside the output frames {valid} of this shot")
        ranges.append((label, range(first - start_number, last - start_number + 1)))
    ranges.sort(key=lambda pair: (pair[1].start, pair[1].stop))
    for (label_a, a), (label_b, b) in zip(ranges, ranges[1:]):
        if b.start < a.stop:
            shared = _span(min(a.stop, b.stop) - b.start, b.start + start_number)
            raise ValueError(f"--frames {label_a} and {label_b} overlap (frames {shared} twice); "
                             "give each output frame once")
    return [r for _, r in ranges]


def split_tasks(total: int, *, tasks: int | None = None, per_task: int | None = None) -> list[range]:
    """Split output indices 0..total-1 into contiguous ranges whose sizes differ by at most one (larger first).

    tasks: how many ranges (1..total); per_task: the most frames per range (>= 1; the fewest ranges that
    respect it; the CLI's --frames-per-task). Neither: one range. Both: ValueError.
    """
    if total < 1:
        raise ValueError(f"this shot has no output frames (total {total}); nothing to split")
    if tasks is not None and per_task is not None:
        raise ValueError("give --tasks or --frames-per-task, not both")
    if per_task is not None:
        if isinstance(per_task, bool) or not isinstance(per_task, int) or per_task < 1:
            raise ValueError(f"--frames-per-task must be a whole number >= 1; got {per_task!r}")
        tasks = -(-total // per_task)
    elif tasks is None:
        tasks = 1
    if isinstance(tasks, bool) or not isinstance(tasks, int) or not 1 <= tasks <= total:
        raise ValueError(f"--tasks must be between 1 and {total} (the output frame count); got {tasks!r}")
    size, extra = divmod(total, tasks)
    ranges, start = [], 0
    for k in range(tasks):
        stop = start + size + (1 if k < extra else 0)
        ranges.append(range(start, stop))
        start = stop
    return ranges


def format_range(r: range, start_number: int = 0) -> str:
    """Global output indices -> the `--frames` text for them in file numbers, e.g. range(0, 100) -> "1001-1100"."""
    if len(r) == 0 or r.step != 1:
        raise ValueError(f"format_range needs a non-empty contiguous range; got {r!r}")
    return f"{r.start + start_number}-{r.stop - 1 + start_number}"


def plan_report(total: int, task_ranges: Sequence[range], start_number: int = 0, *, as_json: bool,
                name_pattern: str | None = None) -> str:
    """The text of `python -m emavfi plan` (no final newline): output count, name pattern, one `--frames A-B` per
    task; or the same as JSON.

    name_pattern: how output files are named, e.g. "frame_######.png" (shown in the text and the JSON).
    """
    _check_shot(total, start_number)
    tasks = [{"frames": format_range(r, start_number), "first": r.start + start_number,
              "last": r.stop - 1 + start_number, "count": len(r)} for r in task_ranges]
    if as_json:
        document: dict[str, object] = {"output_frames": total, "start_number": start_number}
        if name_pattern is not None:
            document["name_pattern"] = name_pattern
        document["tasks"] = tasks
        return json.dumps(document, indent=1)
    lines = [f"output frames: {total} (numbered {_span(total, start_number)})"]
    if name_pattern is not None:
        lines.append(f"file names: {name_pattern}")
    lines.append(f"tasks: {len(tasks)}")
    width = len(str(len(tasks)))
    for k, task in enumerate(tasks, 1):
        lines.append(f"  task {k:>{width}}: {task['count']:>5} frames  --frames {task['frames']}")
    return "\n".join(lines)
