"""emavfi.ranges: `--frames` parsing in output file numbers, task splitting, the `plan` report."""
from __future__ import annotations

import json

import pytest

from emavfi.ranges import format_range, parse_frames, plan_report, split_tasks


# ----------------------------------------------------------------------------------------------- parse_frames

@pytest.mark.parametrize(("text", "total", "start", "expected"), [
    ("1001-1100", 100, 1001, [range(0, 100)]),
    ("1001-1010", 100, 1001, [range(0, 10)]),
    ("1050", 100, 1001, [range(49, 50)]),
    ("0-9", 10, 0, [range(0, 10)]),
    ("1-100,201-300", 300, 1, [range(0, 100), range(200, 300)]),
    ("201-300, 1-100", 300, 1, [range(0, 100), range(200, 300)]),  # sorted, kept apart
    (" 5 - 6 ,7", 10, 0, [range(5, 7), range(7, 8)]),  # adjacent ranges are not merged
])
def test_parse_frames_reads_output_file_numbers(text, total, start, expected):
    assert parse_frames(text, total, start) == expected


@pytest.mark.parametrize(("text", "total", "start", "message"), [
    ("90-120", 100, 1001, "--frames 90-120 is outside the output frames 1001-1100 of this shot"),
    ("1100-1101", 100, 1001, "--frames 1100-1101 is outside the output frames 1001-1100 of this shot"),
    ("10", 10, 0, "--frames 10 is outside the output frames 0-9 of this shot"),
    ("1-50,40-60", 100, 1, "--frames 1-50 and 40-60 overlap (frames 40-50 twice)"),
    ("3,3", 10, 0, "--frames 3 and 3 overlap (frames 3-3 twice)"),
    ("20-10", 100, 1, "--frames 20-10: the first frame is after the last; did you mean 10-20?"),
    ("", 100, 1, "--frames is empty; give output frames like 1-100"),
    ("1-x", 100, 1, "--frames '1-x': cannot read '1-x'; use A-B or A"),
    ("1-5,,7", 100, 1, "cannot read ''"),
    ("-5", 100, 1, "cannot read '-5'"),
    ("1..5", 100, 1, "cannot read '1..5'"),
])
def test_parse_frames_errors_are_one_line_and_name_the_valid_frames(text, total, start, message):
    with pytest.raises(ValueError) as info:
        parse_frames(text, total, start)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_parse_frames_needs_a_shot():
    with pytest.raises(ValueError, match="no output frames"):
        parse_frames("1", 0)
    with pytest.raises(ValueError, match="--start-number must be >= 0"):
        parse_frames("1", 10, -1)


# ----------------------------------------------------------------------------------------------- split_tasks

@pytest.mark.parametrize("total", [1, 2, 7, 29, 100, 401])
@pytest.mark.parametrize("tasks", [1, 2, 3, 7, 16])
def test_split_tasks_covers_every_frame_once_and_is_balanced(total, tasks):
    if tasks > total:
        with pytest.raises(ValueError, match=f"--tasks must be between 1 and {total}"):
            split_tasks(total, tasks=tasks)
        return
    ranges = split_tasks(total, tasks=tasks)
    assert len(ranges) == tasks
    assert [k for r in ranges for k in r] == list(range(total))  # contiguous, in order, each frame once
    sizes = [len(r) for r in ranges]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


@pytest.mark.parametrize(("total", "per_task", "sizes"), [
    (100, 10, [10] * 10), (101, 10, [10] * 10 + [1]), (5, 100, [5]), (7, 1, [1] * 7), (9, 4, [4, 4, 1]),
])
def test_split_tasks_per_task_gives_that_many_frames_a_task_and_the_rest_last(total, per_task, sizes):
    ranges = split_tasks(total, per_task=per_task)
    assert [len(r) for r in ranges] == sizes
    assert [k for r in ranges for k in r] == list(range(total))


def test_split_tasks_bounds_its_numbers():
    assert split_tasks(12) == [range(0, 12)]
    for bad in (0, -1, 13, 2.5, True):
        with pytest.raises(ValueError, match="--tasks must be between 1 and 12"):
            split_tasks(12, tasks=bad)
    for bad in (0, -3, 1.5):
        with pytest.raises(ValueError, match="--frames-per-task must be a whole number >= 1"):
            split_tasks(12, per_task=bad)
    with pytest.raises(ValueError, match="not both"):
        split_tasks(12, tasks=2, per_task=3)
    with pytest.raises(ValueError, match="no output frames"):
        split_tasks(0, tasks=1)


# ----------------------------------------------------------------------------------------------- format and plan

def test_format_range_round_trips_through_parse_frames():
    total, start = 397, 1001
    ranges = split_tasks(total, tasks=6)
    texts = [format_range(r, start) for r in ranges]
    assert texts[0] == "1001-1067"
    assert [parse_frames(t, total, start) for t in texts] == [[r] for r in ranges]
    assert parse_frames(",".join(reversed(texts)), total, start) == ranges
    assert format_range(range(4, 5)) == "4-4"
    with pytest.raises(ValueError, match="non-empty contiguous"):
        format_range(range(3, 3))


def test_plan_report_text_has_one_ready_frames_fragment_per_task():
    ranges = split_tasks(100, tasks=3)
    text = plan_report(100, ranges, 1001, as_json=False, name_pattern="frame_######.png")
    lines = text.splitlines()
    assert lines[0] == "output frames: 100 (numbered 1001-1100)"
    assert lines[1] == "file names: frame_######.png"
    assert lines[2] == "tasks: 3"
    assert [line.split("--frames ")[1] for line in lines[3:]] == ["1001-1034", "1035-1067", "1068-1100"]
    assert "34 frames" in lines[3]


def test_plan_report_json_lists_tasks_in_file_numbers():
    ranges = split_tasks(10, per_task=4)
    document = json.loads(plan_report(10, ranges, 1, as_json=True))
    assert document == {"output_frames": 10, "start_number": 1, "tasks": [
        {"frames": "1-4", "first": 1, "last": 4, "count": 4},
        {"frames": "5-8", "first": 5, "last": 8, "count": 4},
        {"frames": "9-10", "first": 9, "last": 10, "count": 2}]}
    covered = [k for task in document["tasks"] for k in range(task["first"], task["last"] + 1)]
    assert covered == list(range(1, 11))
