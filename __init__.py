"""ComfyUI entry point of the EMA-VFI node pack (classic node API).

ComfyUI imports this folder as a package; the nodes live in `nodes/`, the model library in `emavfi/`.
"""
from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS, setup_comfy

WEB_DIRECTORY = "./web"

setup_comfy()

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
