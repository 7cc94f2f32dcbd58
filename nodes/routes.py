"""`GET /emavfi/status?variant=NAME[&repo=owner/name[@rev]]`: weights state for the loader's web widget."""
from __future__ import annotations

from . import host

STATUS_PATH = "/emavfi/status"
_registered = False


def register() -> None:
    """Add the route to ComfyUI's server (before it starts serving); no-op outside ComfyUI."""
    global _registered
    server = host.prompt_server()
    if server is None or _registered:
        return
    from aiohttp import web

    from .loader import weights_status

    @server.routes.get(STATUS_PATH)
    async def status(request: web.Request) -> web.Response:
        variant = request.query.get("variant", "")
        try:
            body = weights_status(variant, request.query.get("repo", ""))
        except ValueError as exc:
            return web.json_response({"variant": variant, "state": "error", "message": str(exc)}, status=400)
        return web.json_response(body)

    _registered = True
