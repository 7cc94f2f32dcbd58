"""The Comfy Registry metadata `comfy node publish` reads from pyproject.toml: every field it needs is there and
well formed, and the ComfyUI and frontend ranges admit the ComfyUI the end-to-end tests run (../shared/comfyui)."""
from __future__ import annotations

import re
import tomllib

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from comfy_helpers import REPO, comfy_source

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT, COMFY = PYPROJECT["project"], PYPROJECT["tool"]["comfy"]
FRONTEND = "comfyui-frontend-package"


def frontend_range() -> SpecifierSet:
    """The frontend range, as comfy-cli reads it: the `comfyui-frontend-package` entry of [project] dependencies."""
    entries = [d for d in PROJECT["dependencies"] if d.startswith(FRONTEND)]
    assert len(entries) == 1, f"one {FRONTEND} entry in [project] dependencies, got {entries}"
    return SpecifierSet(entries[0].removeprefix(FRONTEND))


def test_project_fields_the_registry_requires():
    name = PROJECT["name"]
    assert len(name) < 100 and re.fullmatch(r"[A-Za-z][A-Za-z0-9]*(?:[-_.][A-Za-z0-9]+)*", name), name
    assert "comfyui" not in name.lower()  # the registry's naming rule
    assert re.fullmatch(r"\d+\.\d+\.\d+", PROJECT["version"])  # X.Y.Z
    assert PROJECT["description"] and PROJECT["license"] and (REPO / "LICENSE").is_file()
    assert any(c.startswith("Operating System ::") for c in PROJECT["classifiers"])


def test_urls_and_tool_comfy():
    urls = PROJECT["urls"]
    for key in ("Repository", "Documentation", "Issues"):
        assert urls[key].startswith("https://"), key
    assert urls["Repository"].rstrip("/").endswith("/ComfyUI-EMA-VFI")
    assert COMFY["PublisherId"] and COMFY["DisplayName"]
    assert "web" not in COMFY  # __init__.py's WEB_DIRECTORY serves web/; both would load the extension twice
    assert 'WEB_DIRECTORY = "./web"' in (REPO / "__init__.py").read_text()
    SpecifierSet(COMFY["requires-comfyui"])  # a valid range
    assert "0.3.46" not in SpecifierSet(COMFY["requires-comfyui"])  # V3 nodes need comfy_api (ComfyUI 0.3.47+)


def test_ranges_admit_the_comfyui_the_tests_run():
    source = comfy_source()
    if not (source / "comfyui_version.py").is_file():
        pytest.skip(f"{source} is absent (the tested ComfyUI lives in ../shared/comfyui)")
    version = re.search(r'__version__ = "([^"]+)"', (source / "comfyui_version.py").read_text()).group(1)
    assert Version(version) in SpecifierSet(COMFY["requires-comfyui"])
    pinned = re.search(rf"^{FRONTEND}==(\S+)$", (source / "requirements.txt").read_text(), re.M).group(1)
    assert Version(pinned) in frontend_range()
    assert (source / "comfy_api" / "v0_0_2").is_dir()  # the API version nodes/spec.py pins ships with it
