"""The demo shop page: plain HTML and JS that talk to the public API."""

from __future__ import annotations

import logging
from pathlib import Path

from aiohttp import web

from serve.errors import ApiError

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
# Only these files: a fixed list keeps paths like ../../ out for good.
FILES = {"demo.js": "text/javascript", "demo.css": "text/css"}


async def demo_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "demo.html")


async def demo_file(request: web.Request) -> web.FileResponse:
    name = request.match_info["file"]
    if name not in FILES:
        raise ApiError(404, "not_found",
                       f"one of {', '.join(sorted(FILES))}", name)
    return web.FileResponse(STATIC / name,
                            headers={"Content-Type": FILES[name]})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/demo", demo_page)
    app.router.add_get("/demo/{file}", demo_file)
