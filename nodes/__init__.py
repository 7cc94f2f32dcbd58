"""ComfyUI nodes of the EMA-VFI pack (V3 schema, `comfy_api` v0.0.2): a thin adapter over the `emavfi` library.

`comfy_entrypoint()` is what ComfyUI calls: it registers the model folder and the HTTP route, and returns the
extension, which owns the pack's state and lists the node classes bound to it. Importing this package needs
ComfyUI's source on the import path (for `comfy_api`), not a running ComfyUI.
"""
from __future__ import annotations

from . import routes, weights_folder
from .host import logger
from .interpolate import InterpolateNode
from .loader import LoadModelNode
from .retime import RetimeNode
from .spec import ComfyExtension
from .state import PackNode, PackState

NODES: tuple[type[PackNode], ...] = (LoadModelNode, InterpolateNode, RetimeNode)


class EmaVfiExtension(ComfyExtension):
    """The pack as ComfyUI loads it: one PackState, and the nodes bound to it."""

    def __init__(self, state: PackState | None = None):
        self.state = state or PackState()

    async def get_node_list(self) -> list[type[PackNode]]:
        return [node.bound(self.state) for node in NODES]


def setup_comfy(state: PackState) -> None:
    """Register the `emavfi` model folder and `/emavfi/status`; each step is skipped outside ComfyUI."""
    try:
        weights_folder.register()
    except ImportError:
        logger.debug("folder_paths not importable: not running inside ComfyUI")
    routes.register(state)


async def comfy_entrypoint() -> EmaVfiExtension:
    """ComfyUI's V3 entry point (called once when it loads the pack)."""
    extension = EmaVfiExtension()
    setup_comfy(extension.state)
    return extension


__all__ = ["EmaVfiExtension", "NODES", "comfy_entrypoint", "setup_comfy"]
