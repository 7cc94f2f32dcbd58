"""The `emavfi` model folder: `models/frame_interpolation/emavfi/`, extendable in extra_model_paths.yaml.

A yaml entry `emavfi: /some/dir` (applied by ComfyUI before packs load) is kept and searched first; the
default folder is appended. Nothing is created at import: the folder appears on the first download.
"""
from __future__ import annotations

import os

from . import host

FOLDER_KEY = "emavfi"
# Only safetensors: pickles can run code (convert them once with `python -m emavfi convert`).
WEIGHT_EXTENSIONS = frozenset({".safetensors"})
DOWNLOAD_CHOICE = "(download)"


def default_dir() -> str:
    """ComfyUI's models/frame_interpolation/emavfi folder."""
    return os.path.join(host.folder_paths().models_dir, "frame_interpolation", FOLDER_KEY)


def register() -> None:
    """Add the default folder (and the .safetensors extension) to ComfyUI's `emavfi` model folder entry."""
    fp = host.folder_paths()
    default = default_dir()
    paths, extensions = fp.folder_names_and_paths.get(FOLDER_KEY, ([], set()))
    paths = list(paths)
    if default not in paths:
        paths.append(default)
    fp.folder_names_and_paths[FOLDER_KEY] = (paths, set(extensions) | WEIGHT_EXTENSIONS)


def folders() -> list[str]:
    """Every folder searched for weights, the download target first."""
    fp = host.folder_paths()
    if FOLDER_KEY not in fp.folder_names_and_paths:
        register()
    return fp.get_folder_paths(FOLDER_KEY)


def download_dir() -> str:
    """The folder downloads go to: the first `emavfi` folder."""
    return folders()[0]


def choices() -> list[str]:
    """Combo values of the loader's `weights` input: the download choice, then every local .safetensors file
    (the library's listing, which skips the hidden Hub cache that downloads go to)."""
    from ..emavfi.local_weights import list_local_weights

    return [DOWNLOAD_CHOICE, *list_local_weights(folders())]
