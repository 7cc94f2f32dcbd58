"""ComfyUI entry point of the EMA-VFI node pack (V3 node schema, `comfy_api` v0.0.2).

ComfyUI imports this folder as a package and calls `comfy_entrypoint`; the nodes live in `nodes/`, the model
library in `emavfi/`. No NODE_CLASS_MAPPINGS here: ComfyUI would then ignore `comfy_entrypoint`.
"""
from .nodes import comfy_entrypoint

WEB_DIRECTORY = "./web"

__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
