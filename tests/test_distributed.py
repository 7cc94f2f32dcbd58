"""emavfi.distributed on a real embedded Ray (2 CPUs, 127.0.0.1 only) and `--frames` tasks via emavfi.render.

Every way of rendering a shot must give the same files, byte for byte: one process, `--frames` tasks in any
order, Ray with one or two workers, Ray with a worker killed mid-run. The shot: 8 frames of 32x48 PNG cut
from skimage's astronaut, then its cat (a moving crop, one scene cut), x4 (29 output frames numbered from
1001), random ours_small_t weights (the smallest official architecture; speed is not the point here).
Footage large enough for torch's CPU kernels to split work by thread (144x192, weights at PyTorch's own
initialisation) checks that the workers compute with the driver's thread count.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

import emavfi
from emavfi import distributed, loading, ranges, ray_cluster, render
from emavfi.files import is_partial
from emavfi.schedule import Request
from emavfi.settings import OutputOptions, Settings
from helpers import random_state

ray = pytest.importorskip("ray", reason="the distributed tests need the optional Ray extra "
                                        "(pip install -r requirements-ray.txt)")

REPO = Path(__file__).resolve().parents[1]
START = 1001
pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def shot(tmp_path_factory) -> tuple[Path, Path]:
    """(input folder of 8 PNG frames, ours_small_t weights file)."""
    from PIL import Image
    from skimage import data

    root = tmp_path_factory.mktemp("shot")
    source = root / "plate"
    source.mkdir()
    for i in range(8):  # a crop moving 2 px down and 3 px right per frame; a cut to another shot after frame 3
        image = data.astronaut() if i < 4 else data.chelsea()
        crop = image[100 + 2 * i:132 + 2 * i, 150 + 3 * i:198 + 3 * i]
        Image.fromarray(crop).save(source / f"plate.{START + i}.png")
    weights = root / "ours_small_t.safetensors"
    emavfi.weights.save_safetensors(random_state("ours_small_t"), weights, "ours_small_t")
    return source, weights


def _job(shot: tuple[Path, Path], output: Path, **output_options) -> render.Job:
    source, weights = shot
    settings = Settings(request=Request(multiplier=4), weights=weights, device="cpu",
                        output=OutputOptions(start_number=START, **output_options))
    return render.Job(source, output, settings)


@pytest.fixture(scope="module")
def reference(shot, tmp_path_factory) -> Path:
    """The shot rendered in this process, in one go: what every other way must reproduce exactly."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as the tests' driver: its workers compute with its thread count
    try:
        job = _job(shot, tmp_path_factory.mktemp("reference") / "out")
        report = render.render(render.prepare(job), loading.load_model_for(job.settings))
    finally:
        torch.set_num_threads(before)
    assert report.written == 29 and report.cuts == [3]  # the cut between frames 3 and 4 is found
    return job.output


def _frames(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.suffix == ".png"}


def _assert_identical(folder: Path, reference: Path) -> int:
    """Same frame names, same bytes, no partial files left; returns how many files were compared."""
    got, expected = _frames(folder), _frames(reference)
    assert list(got) == list(expected)
    differing = [name for name in expected if got[name] != expected[name]]
    assert not differing, f"{len(differing)} of {len(expected)} frames differ, e.g. {differing[0]}"
    assert not [p.name for p in folder.iterdir() if is_partial(p.name)]
    return len(expected)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ----------------------------------------------------------------------------------------------- --frames tasks

def test_frames_tasks_in_any_order_make_the_one_process_files(shot, reference, tmp_path):
    job = _job(shot, tmp_path / "out")
    total = render.prepare(job).total
    model = loading.load_model_for(job.settings)
    tasks = ranges.split_tasks(total, tasks=4)
    for task in reversed(tasks):  # as a farm might run them; each task is its own `--frames A-B` job
        text = ranges.format_range(task, START)
        task_job = _job(shot, job.output, frames=text)
        report = render.render(render.prepare(task_job), model)
        assert report.written == len(task)
    assert _assert_identical(job.output, reference) == 29


def test_plan_lists_exactly_the_frames_a_run_writes(shot, reference):
    total = render.prepare(_job(shot, reference.parent / "unused")).total
    plan = json.loads(ranges.plan_report(total, ranges.split_tasks(total, tasks=3), START, as_json=True))
    planned = [f"frame_{n:06d}.png" for task in plan["tasks"] for n in range(task["first"], task["last"] + 1)]
    assert plan["output_frames"] == 29
    assert planned == list(_frames(reference))


# ----------------------------------------------------------------------------------------------- Ray

def _ray_sockets() -> list[tuple[str, str, str]]:
    """(process name, local address, remote address) of every TCP socket of this process and its descendants
    (the embedded Ray's GCS, raylet, agents and workers), as `ss -tnp` would list them."""
    import psutil

    found = []
    for process in [psutil.Process(), *psutil.Process().children(recursive=True)]:
        try:
            name, connections = process.name(), process.net_connections(kind="tcp")
        except psutil.Error:  # exited meanwhile
            continue
        found += [(name, f"{c.laddr.ip}:{c.laddr.port}", f"{c.raddr.ip}:{c.raddr.port}" if c.raddr else "")
                  for c in connections]
    return found


def test_two_ray_workers_make_the_one_process_files(cluster, shot, reference, tmp_path):
    seen: list[tuple[int, int]] = []
    sockets: list[tuple[str, str, str]] = []

    def record(done: int, total: int) -> None:
        seen.append((done, total))
        if done and not sockets:  # mid-run: both workers busy, all connections open
            sockets.extend(_ray_sockets())

    job = _job(shot, tmp_path / "out")
    report = distributed.render(job, workers=2, task_frames=4, progress=record)
    assert len({name for name, _, _ in sockets}) >= 3  # gcs_server, raylet, workers ... were seen
    loopback = ("127.0.0.1:", "::ffff:127.0.0.1:")
    assert [s for s in sockets if not s[1].startswith(loopback) or (s[2] and not s[2].startswith(loopback))] == []
    assert (report.output_frames, report.requested, report.written, report.skipped) == (29, 29, 29, 0)
    assert (report.workers, report.tasks, report.cuts) == (2, 7, (3,))  # 4 outputs per pair: tasks hold whole pairs
    assert len(report.frames_by_worker) == 2 and sum(report.frames_by_worker.values()) == 29
    assert seen[0] == (0, 29) and seen[-1] == (29, 29) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert _assert_identical(job.output, reference) == 29


@pytest.fixture(scope="module")
def footage(tmp_path_factory) -> tuple[Path, Path]:
    """(5 PNG frames of 144x192: the astronaut panning, a cut to the cat, ours_small_t weights at PyTorch's own
    initialisation). At this size and scale the CPU arithmetic of 1 and 3 threads differs in a few 8-bit values."""
    from PIL import Image
    from skimage import data

    root = tmp_path_factory.mktemp("footage")
    source = root / "plate"
    source.mkdir()
    for i in range(5):
        image = data.astronaut() if i < 3 else data.chelsea()
        Image.fromarray(image[40 + 2 * i:184 + 2 * i, 60 + 4 * i:252 + 4 * i]).save(source / f"plate.{START + i}.png")
    weights = root / "ours_small_t.safetensors"
    torch.manual_seed(0)
    emavfi.weights.save_safetensors(emavfi.build_model("ours_small_t").state_dict(), weights, "ours_small_t")
    return source, weights


@pytest.mark.parametrize("multiplier", [2, 4])
def test_ray_workers_compute_with_the_drivers_threads_and_make_its_files(cluster, footage, multiplier, tmp_path):
    # As on a 3-core machine: one process computes with 3 threads, and workers on one CPU each used to compute
    # with 1, which changed a few values by one level (oneDNN's blocking, element-wise kernels' thread tails).
    source, weights = footage
    torch.set_num_threads(3)  # the one_thread fixture restores it
    settings = Settings(request=Request(multiplier=multiplier), weights=weights, device="cpu",
                        output=OutputOptions(start_number=START))
    one = render.Job(source, tmp_path / "one", settings)
    assert render.render(render.prepare(one), loading.load_model_for(one.settings)).cuts == [2]
    report = distributed.render(render.Job(source, tmp_path / "ray", settings), workers=2, task_frames=multiplier)
    assert (report.workers, report.written, report.cuts) == (2, 4 * multiplier + 1, (2,))
    assert len(report.frames_by_worker) == 2
    assert _assert_identical(tmp_path / "ray", tmp_path / "one") == 4 * multiplier + 1


def test_by_default_a_worker_reserves_as_many_cpus_as_it_computes_with_threads(cluster, shot, tmp_path):
    # The 2-CPU cluster: workers of 2 threads get 2 CPUs each (one worker), of 1 thread one each (two workers).
    two = distributed.render(_job(shot, tmp_path / "two"), threads=2, task_frames=8)
    one = distributed.render(_job(shot, tmp_path / "one"), threads=1, task_frames=8)
    assert (two.workers, two.written, one.workers, one.written) == (1, 29, 2, 29)


def test_one_ray_worker_then_a_rerun_is_refused_or_resumed_like_one_process(cluster, shot, reference, tmp_path,
                                                                            monkeypatch):
    job = _job(shot, tmp_path / "out")
    report = distributed.render(job, workers=1, task_frames=10)
    assert (report.written, report.skipped, report.workers, report.tasks) == (29, 0, 1, 3)
    assert _assert_identical(job.output, reference) == 29
    read, state_for = [], distributed._state_for
    monkeypatch.setattr(distributed, "_state_for", lambda job: read.append(job) or state_for(job))
    with pytest.raises(distributed.DistributedError, match=r"^worker 0 \(.*\) failed: .*already holds 29 frames"):
        distributed.render(job, workers=1)
    assert read == []  # like the one-process CLI: the output folder is refused before any weights are read
    again = distributed.render(_job(shot, job.output, resume=True), workers=1)  # verified, kept, none re-rendered
    assert (again.written, again.skipped) == (0, 29) and len(read) == 1
    assert _assert_identical(job.output, reference) == 29


def test_a_worker_killed_mid_run_is_restarted_and_its_frames_rerun(cluster, shot, reference, tmp_path):
    killed: list[str] = []

    def kill_once(done: int, total: int) -> None:
        if done and not killed:
            name = next(n["name"] for n in ray.util.list_named_actors(all_namespaces=True)
                        if n["name"].startswith("emavfi-") and n["name"].endswith("-0"))
            ray.kill(ray.get_actor(name), no_restart=False)
            killed.append(name)

    job = _job(shot, tmp_path / "out")
    report = distributed.render(job, workers=2, task_frames=3, progress=kill_once)
    assert killed
    assert report.written + report.skipped == 29
    assert len(report.frames_by_worker) == 3  # the restarted worker is a new process that rendered frames
    assert _assert_identical(job.output, reference) == 29


def test_ctrl_c_cancels_outstanding_work_and_leaves_only_complete_frames(cluster, shot, reference, tmp_path):
    progress: list[int] = []

    def interrupt_after_first_task() -> None:
        if progress and progress[-1] > 0:
            raise KeyboardInterrupt

    job = _job(shot, tmp_path / "out")
    with pytest.raises(KeyboardInterrupt):
        distributed.render(job, workers=2, task_frames=2, progress=lambda done, n: progress.append(done),
                           cancel=interrupt_after_first_task)
    written = _frames(job.output)
    assert 0 < len(written) < 29
    assert all(written[name] == data for name, data in _frames(reference).items() if name in written)
    assert not [p.name for p in job.output.iterdir() if is_partial(p.name)]
    deadline = time.monotonic() + 10  # ray.kill is asynchronous
    while [n for n in ray.util.list_named_actors(all_namespaces=True) if n["name"].startswith("emavfi-")]:
        assert time.monotonic() < deadline, "the workers of the interrupted run are still alive"
        time.sleep(0.1)
    report = distributed.render(_job(shot, job.output, resume=True), workers=1)
    assert report.skipped == len(written) and report.written == 29 - len(written)
    assert _assert_identical(job.output, reference) == 29


def test_an_unwritable_output_folder_fails_with_the_workers_message(cluster, shot, tmp_path):
    if os.geteuid() == 0:  # root writes into read-only folders: use a path below a plain file instead
        blocker = tmp_path / "not-a-folder"
        blocker.write_text("")
        output = blocker / "out"
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        output = locked / "out"
    started = time.monotonic()
    with pytest.raises(distributed.DistributedError) as info:
        distributed.render(_job(shot, output), workers=1)
    message = str(info.value)
    assert message.startswith("worker 0 (") and "failed: " in message and str(output) in message
    assert "\n" not in message and time.monotonic() - started < 30
    assert not output.exists()


def test_an_unreachable_address_fails_within_seconds_with_one_line(shot, tmp_path):
    port = _closed_port()
    started = time.monotonic()
    with pytest.raises(distributed.DistributedError) as info:
        distributed.render(_job(shot, tmp_path / "out"), address=f"127.0.0.1:{port}")
    assert time.monotonic() - started < 10
    assert str(info.value) == (f"cannot reach the Ray cluster at 127.0.0.1:{port} (connection refused); check that it "
                               "is running (`ray status` on the head node) and that the port is open")
    with pytest.raises(distributed.DistributedError, match=f"ray://127.0.0.1:{port} .connection refused"):
        ray_cluster.probe(f"ray://127.0.0.1:{port}")
    assert not (tmp_path / "out").exists()


def test_workers_without_the_package_give_one_clear_line(cluster, shot, tmp_path):
    # A second driver joins the cluster from a folder where `emavfi` cannot be imported, so its workers (which
    # get the driver's working directory, not its sys.path) lack the package, as on a cluster without it.
    driver = tmp_path / "driver.py"
    driver.write_text(textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(REPO)!r}, {str(REPO / "tests")!r}]
        from emavfi import distributed, render
        from emavfi.schedule import Request
        from emavfi.settings import Settings
        job = render.Job({str(shot[0])!r}, {str(tmp_path / "out")!r},
                         Settings(request=Request(multiplier=4), weights={str(shot[1])!r}, device="cpu"))
        try:
            distributed.render(job, address={cluster!r}, workers=1)
        except distributed.DistributedError as exc:
            print(exc)
    """))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, str(driver)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    # Ray itself prints the workers' tracebacks as it retries; the error is our one line
    lines = [line for line in done.stdout.splitlines() if line.startswith("worker 0 ")]
    assert len(lines) == 1, done.stdout + done.stderr
    assert lines[0].startswith("worker 0 cannot import emavfi (ModuleNotFoundError: No module named 'emavfi')")
    assert lines[0].endswith("install this package on every node of the Ray cluster, or pass it with a runtime_env")
    assert not (tmp_path / "out").exists()


def test_missing_ray_and_bad_arguments_are_one_line(shot, tmp_path, monkeypatch):
    job = _job(shot, tmp_path / "out")
    with pytest.raises(distributed.DistributedError, match="workers must be a whole number >= 1; got 0"):
        distributed.render(job, workers=0)
    with pytest.raises(distributed.DistributedError, match="threads must be a whole number >= 1; got 0"):
        distributed.render(job, threads=0)
    video = render.Job(shot[0], tmp_path / "out.mp4", job.settings)
    with pytest.raises(distributed.DistributedError, match="Ray workers write a folder of frames"):
        distributed.render(video)
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` does where the extra is not installed
    with pytest.raises(distributed.DistributedError) as info:
        distributed.render(job)
    assert str(info.value) == "Ray is an optional extra: pip install -r requirements-ray.txt"
