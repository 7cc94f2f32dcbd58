"""Ray's private API is fenced in emavfi.ray_private: one version check with one line naming the supported range,
and no other module of emavfi or nodes/ names a private part of Ray (read from the source)."""
from __future__ import annotations

import re

import pytest

from emavfi import ray_private
from emavfi.errors import DistributedError
from test_structure import MODULES, REPO


def test_the_supported_range_is_checked_with_one_line():
    for version in ("2.60.0", "2.60.2", "2.60.1rc1"):
        ray_private.check_version(version)
    for version in ("2.59.0", "2.9.0", "2.61.0", "3.0.0.dev0", "unknown"):
        with pytest.raises(DistributedError) as info:
            ray_private.check_version(version)
        message = str(info.value)
        assert "\n" not in message and f"Ray {ray_private.supported_range()}" in message and version in message
        assert "requirements-ray.txt" in message


def test_requirements_bound_ray_to_the_range_the_fence_knows():
    (lo_major, lo_minor), (hi_major, hi_minor) = ray_private.RAY_RANGE
    lines = [line.split("#")[0].strip() for line in (REPO / "requirements-ray.txt").read_text().splitlines()]
    pins = [line for line in lines if line.startswith("ray")]
    assert pins and all(line.endswith(f">={lo_major}.{lo_minor},<{hi_major}.{hi_minor + 1}") for line in pins)


def test_the_installed_ray_is_in_the_range():
    ray = pytest.importorskip("ray", reason="needs the optional Ray extra (pip install -r requirements-ray.txt)")
    ray_private.check_version(ray.__version__)
    assert ray_private.ray_constants(ray) is ray._private.ray_constants


PRIVATE = re.compile(r"ray\._private|ray\.train\.torch\.config|_TorchBackend|_setup_torch_process_group|"
                     r"_set_torch_distributed_env_vars")


def test_no_other_module_names_a_private_part_of_ray():
    named = sorted(module for module, (path, _) in MODULES.items()
                   if module != "emavfi.ray_private" and PRIVATE.search(path.read_text(encoding="utf-8")))
    assert named == []
