"""Lazy access to ComfyUI's modules.

The node classes must import without a running ComfyUI (unit tests, linters), so ComfyUI modules are
imported on first use, never at module import. `comfy.model_management`, `comfy.utils` and `folder_paths`
are required at run time; the model patcher and the server are optional (absent -> plain `.to(device)` and no
websocket events).
"""
from __future__ import annotations

import logging
from types import ModuleType
from typing import Any

logger = logging.getLogger("emavfi.nodes")


def model_management() -> ModuleType:
    import comfy.model_management as mm

    return mm


def folder_paths() -> ModuleType:
    import folder_paths as fp

    return fp


def progress_bar(total: int, node_id: str | None = None) -> Any:
    """A `comfy.utils.ProgressBar`; each update is also a Cancel point (ComfyUI's hook checks the flag)."""
    import comfy.utils

    return comfy.utils.ProgressBar(total, node_id=node_id)


def model_patcher_class() -> type | None:
    try:
        from comfy.model_patcher import ModelPatcher
    except ImportError:
        return None
    return ModelPatcher


def prompt_server() -> Any | None:
    """`PromptServer.instance`, or None outside a ComfyUI server."""
    try:
        from server import PromptServer
    except ImportError:
        return None
    return getattr(PromptServer, "instance", None)


def send_event(event: str, data: dict[str, Any]) -> None:
    """Send a custom websocket event to the client that queued the prompt (all clients when unknown)."""
    server = prompt_server()
    if server is None:
        return
    try:
        server.send_sync(event, data, getattr(server, "client_id", None))
    except Exception:  # a lost websocket must not fail the node
        logger.debug("could not send %s", event, exc_info=True)


def send_text(text: str, node_id: str | None) -> None:
    """Status text under a node (ComfyUI's `send_progress_text`); no-op without a server or node id."""
    server = prompt_server()
    if server is None or node_id is None or not hasattr(server, "send_progress_text"):
        return
    try:
        server.send_progress_text(text, node_id, getattr(server, "client_id", None))
    except Exception:
        logger.debug("could not send progress text", exc_info=True)
