"""Where a variant's weights come from: an explicit file, the user's models folders, else the Hub (hub.py).

Order: `weights` (a path, or a name inside the models folders) -> `<variant>.safetensors` in the models
folders -> the Hub cache -> a download. Local files pass the same header check as downloaded ones.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from . import hub
from .config import get_config
from .errors import WeightsError
from .files import check_relative, default_models_dir  # noqa: F401 - its name here too (library API)
from .weights import check_weights_file

Folders = Sequence[str | os.PathLike[str]]


def default_cache_dir() -> Path:
    """The Hub cache used when none is given: `default_models_dir()/hub`."""
    return default_models_dir() / "hub"


def list_local_weights(models_dirs: Folders) -> list[str]:
    """Sorted names ('x.safetensors', 'sub/y.safetensors') of the .safetensors files in the models folders."""
    names: set[str] = set()
    for folder in map(Path, models_dirs):
        if not folder.is_dir():
            continue
        for path in folder.rglob("*.safetensors"):
            parts = path.relative_to(folder).parts
            # Hidden folders and Hub cache folders hold files managed by a downloader, not by the user.
            if path.is_file() and not any(p.startswith((".", "models--")) for p in parts[:-1]):
                names.add("/".join(parts))
    return sorted(names)


def weights_status(variant: str, *, source: hub.WeightsSource | None = None, models_dirs: Folders = (),
                   cache_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Where the variant's weights would come from, without network or hashing: local, cached or missing."""
    get_config(variant)
    source = source or hub.DEFAULT_SOURCES.get(variant)
    local = _find_in_dirs(f"{variant}.safetensors", models_dirs)
    cached = None if local or source is None else hub.cached_weights(source, cache_dir or default_cache_dir())
    path = local or cached
    return {
        "state": "local" if local else "cached" if cached else "missing",
        "path": str(path) if path else None,
        "bytes": path.stat().st_size if path else None,
        "source": source.describe() if source else None,
    }


def resolve_weights(variant: str, *, weights: str | os.PathLike[str] | None = None,
                    source: hub.WeightsSource | None = None, models_dirs: Folders = (),
                    cache_dir: str | os.PathLike[str] | None = None, endpoint: str | None = None,
                    offline: bool = False, progress: hub.Progress | None = None, remedy: str | None = None) -> Path:
    """Path of checked .safetensors weights for `variant`, downloading them from the Hub if needed.

    Order: `weights` (a path, or a name inside `models_dirs`) -> `<variant>.safetensors` in `models_dirs`
    -> the Hub cache in `cache_dir` (default `default_cache_dir()`) -> download from `source` (default
    `hub.DEFAULT_SOURCES[variant]`) unless `offline` (or HF_HUB_OFFLINE). `remedy` is the front end's
    words for working without the Hub, used in offline and network errors (default: a file in the first
    models folder, or --weights on the command line). `endpoint`, `progress`, errors: see `hub.fetch_weights`.
    """
    get_config(variant)
    if weights is not None:
        path = _given_file(weights, models_dirs)
        check_weights_file(path, variant)
        return path
    local = _find_in_dirs(f"{variant}.safetensors", models_dirs)
    if local is not None:
        check_weights_file(local, variant)
        return local
    source = source or hub.DEFAULT_SOURCES.get(variant)
    if source is None:
        raise WeightsError(_no_source_message(variant, models_dirs))
    return hub.fetch_weights(variant, source, cache_dir or default_cache_dir(), endpoint=endpoint, offline=offline,
                             progress=progress, remedy=remedy or default_remedy(variant, models_dirs))


def default_remedy(variant: str, models_dirs: Folders = ()) -> str:
    """How to do without the Hub, for error messages: a file in the first models folder, or --weights FILE."""
    cli = "on the command line, --weights FILE.safetensors"
    if models_dirs:
        target = Path(models_dirs[0]) / f"{variant}.safetensors"
        home = f" ($EMAVFI_HOME/{variant}.safetensors)" if Path(models_dirs[0]) == default_models_dir() else ""
        return f"put the file at {target}{home} or pass a local .safetensors file ({cli})"
    return f"pass a local .safetensors file ({cli}, or put it at $EMAVFI_HOME/{variant}.safetensors)"


def _given_file(weights: str | os.PathLike[str], models_dirs: Folders) -> Path:
    """A path (os.PathLike or absolute str) as is; any other str is a name looked up inside models_dirs."""
    if isinstance(weights, os.PathLike) or os.path.isabs(weights) or weights.startswith("~"):
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsError(f"weights file not found: {path}")
        return path
    if os.name == "nt":  # ComfyUI lists files in subfolders with the platform's separator
        weights = weights.replace("\\", "/")
    found = _find_in_dirs(check_relative("weights name", weights), models_dirs)
    if found is None:
        folders = ", ".join(map(str, models_dirs)) or "no models folder given"
        available = ", ".join(list_local_weights(models_dirs)) or "none"
        raise WeightsError(f"weights {weights!r} not found in the models folder ({folders}); available: {available}")
    return found


def _find_in_dirs(name: str, models_dirs: Folders) -> Path | None:
    for folder in models_dirs:
        path = Path(folder) / name
        if path.is_file():
            return path
    return None


def _no_source_message(variant: str, models_dirs: Folders) -> str:
    pkl = _find_in_dirs(f"{variant}.pkl", models_dirs)
    target = Path(models_dirs[0]) / f"{variant}.safetensors" if models_dirs else Path(f"{variant}.safetensors")
    convert = f"python -m emavfi convert {pkl or variant + '.pkl'} -o {target}"
    where = ", ".join(map(str, models_dirs)) or "no models folder given"
    then = "(this puts it into the models folder)" if models_dirs else "and pass its path as the weights"
    return (f"no {variant} weights found (looked for {variant}.safetensors in: {where}) and no Hugging Face copy of "
            f"{variant!r} is known. Convert the official {variant}.pkl from the EMA-VFI release with `{convert}` "
            f"{then}, or give a WeightsSource of your own copy.")
