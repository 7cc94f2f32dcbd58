"""ComfyUI nodes of the EMA-VFI pack: a thin adapter over the `emavfi` library.

Importing this package needs no ComfyUI: ComfyUI modules are imported where they are used (`host.py`).
`setup_comfy()` registers the model folder and the HTTP route when running inside ComfyUI.
"""
from __future__ import annotations

from .host import logger
from .interpolate import InterpolateNode
from .loader import LoadModelNode
from .retime import RetimeNode
from .spec import node_mappings

NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS = node_mappings(LoadModelNode, InterpolateNode, RetimeNode)


def setup_comfy() -> None:
    """Register the `emavfi` model folder and `/emavfi/status`; does nothing outside ComfyUI."""
    from . import routes, weights_folder

    try:
        weights_folder.register()
    except ImportError:
        logger.debug("folder_paths not importable: not running inside ComfyUI")
    routes.register()


__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "setup_comfy"]
