"""The README's two set-up commands: the main job on examples/ works (local weights, and weights from a
loopback fake Hub in place of the real one), and CI runs exactly the README's test command."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from conftest import REPO
from fakehub import FakeHub, make_tiny_weights


def _commands() -> list[str]:
    blocks = re.findall(r"```\n(.*?)\n```", (REPO / "README.md").read_text(), flags=re.S)
    return [b.strip() for b in blocks if b.strip().startswith("python3 -m venv .venv &&")]


def test_readme_has_exactly_two_setup_commands_and_ci_runs_the_test_one():
    commands = _commands()
    assert len(commands) == 2
    assert "-m emavfi interpolate examples/frames" in commands[0]
    assert commands[1].endswith("-m pytest tests")
    assert commands[1] in (REPO / ".ci" / "run").read_text().splitlines()


def _main_job(tmp_path: Path, extra: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    job = _commands()[0].split("&& .venv/bin/python ", 1)[1].split()
    assert job[:3] == ["-m", "emavfi", "interpolate"]
    out = tmp_path / "out"
    args = [sys.executable] + job[:job.index("-o") + 1] + [str(out)] + job[job.index("-o") + 2:] + extra
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "EMAVFI_HOME": str(tmp_path / "home"), **env}
    return subprocess.run(args, cwd=REPO, env=full_env, capture_output=True, text=True, timeout=300)


def _check_output(tmp_path: Path) -> None:
    outputs = sorted((tmp_path / "out").glob("*.png"))
    sources = sorted((REPO / "examples" / "frames").glob("*.png"))
    assert len(outputs) == (len(sources) - 1) * 4 + 1
    for i, src in enumerate(sources):  # source frames come through unchanged
        assert Image.open(outputs[4 * i]).tobytes() == Image.open(src).tobytes()


@pytest.fixture(scope="module")
def weights_bytes() -> bytes:
    return make_tiny_weights("ours_small_t", seed=1)


def test_main_job_with_a_local_weights_file(tmp_path, weights_bytes):
    weights = tmp_path / "ours_small_t.safetensors"
    weights.write_bytes(weights_bytes)
    run = _main_job(tmp_path, ["--weights", str(weights)], {"HF_HUB_OFFLINE": "1"})
    assert run.returncode == 0, run.stderr
    _check_output(tmp_path)


def test_main_job_downloads_the_default_weights_from_the_hub(tmp_path, weights_bytes):
    with FakeHub() as hub:
        hub.add_repo("vvolhejn/ema-vfi-small", {"model.safetensors": weights_bytes})
        run = _main_job(tmp_path, [], {"EMAVFI_HF_ENDPOINT": hub.url})
        assert run.returncode == 0, run.stderr
        assert hub.body_downloads("model.safetensors") == 1
    _check_output(tmp_path)
    # the second run finds the verified copy in the cache and needs no server at all
    (tmp_path / "out").rename(tmp_path / "first")
    again = _main_job(tmp_path, [], {"EMAVFI_HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "1"})
    assert again.returncode == 0, again.stderr
    _check_output(tmp_path)


def test_the_package_builds_with_every_module_and_its_extras(tmp_path):
    """`pip install .[cli]` (README) works: the wheel holds every module of emavfi/ and declares the extras."""
    pytest.importorskip("setuptools", reason="building the wheel needs setuptools in this environment")
    import zipfile

    build = subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation",
                            "-q", "-w", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next(tmp_path.glob("*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = next(archive.read(n).decode() for n in names if n.endswith("METADATA"))
    modules = {str(p.relative_to(REPO)) for p in (REPO / "emavfi").rglob("*.py")}
    assert modules <= names, sorted(modules - names)
    assert 'extra == "cli"' in metadata and 'extra == "ray"' in metadata
    assert not any(n.startswith(("nodes/", "tests/")) for n in names)


def test_the_cpu_only_torch_hint_comes_before_both_setup_commands_and_satisfies_their_pin():
    readme = (REPO / "README.md").read_text()
    setup = readme[readme.index("## Set up"):]
    hint = re.search(r"`(python3 -m venv \.venv && \.venv/bin/pip install (torch==[\d.]+) --index-url "
                     r"https://download\.pytorch\.org/whl/cpu)`", setup)
    assert hint, "the set-up section has no CPU-only torch command"
    commands = _commands()
    assert all(hint.start() < setup.index(command) for command in commands)  # read before anything is run
    assert f"install -q {hint.group(2)} " in commands[1]  # the test command keeps the CPU build it finds


def test_readme_and_help_give_one_figure_for_grad_checkpoint():
    from emavfi.cli import build_parser

    readme = " ".join((REPO / "README.md").read_text().split())
    [in_readme] = re.findall(r"`--grad-checkpoint` cut peak RSS by about a fifth for about ([\d.]+)× the time", readme)
    finetune = build_parser()._subparsers._group_actions[0].choices["finetune"]
    [action] = [a for a in finetune._actions if "--grad-checkpoint" in a.option_strings]
    assert re.findall(r"about ([\d.]+)x the time", action.help) == [in_readme]
    measured = (REPO / "benchmarks" / "bench_finetune.py").read_text()  # its docstring records the last run
    assert f"(x{in_readme}" in measured
