"""`GET /emavfi/status?variant=NAME[&repo=owner/name[@rev]]`: weights state for the loader's web widget."""
from __future__ import annotations

from . import host
from .state import PackState

STATUS_PATH = "/emavfi/status"


def register(state: PackState) -> bool:
    """Add the route to ComfyUI's server (before it starts serving), reading downloads from `state`; False outside
    ComfyUI or when the route is already there (the server's route table is the record, not a flag here)."""
    server = host.prompt_server()
    if server is None or any(getattr(route, "path", None) == STATUS_PATH for route in server.routes):
        return False
    from aiohttp import web

    from .loader import weights_status

    @server.routes.get(STATUS_PATH)
    async def status(request: web.Request) -> web.Response:
        variant = request.query.get("variant", "")
        try:
            body = weights_status(variant, request.query.get("repo", ""), state.downloads)
        except ValueError as exc:
            return web.json_response({"variant": variant, "state": "error", "message": str(exc)}, status=400)
        return web.json_response(body)

    return True
