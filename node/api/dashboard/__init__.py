"""The dashboard: one web page every node serves at ``/``.

The page (``static/index.html``, ``app.js``, ``style.css``) is plain
HTML, CSS and JavaScript with no framework and no external fetch: it reads
the node's own API with relative URLs (status, blocks, the event stream,
trace, compliance, recall impact, audit) and draws the provenance graph as
SVG in the browser.  :func:`routes` is added to the client API's
application.

Only the files present in ``static/`` when :func:`routes` is called, with
a known type, are served: a request names a file, never a path, so no
directory traversal is possible.  The HTML carries a Content-Security-Policy
that allows nothing but this origin.
"""

from __future__ import annotations

import re
from pathlib import Path

from aiohttp import web

STATIC_DIR = Path(__file__).resolve().parent / "static"
INDEX = "index.html"

CONTENT_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
_TEXT_TYPES = frozenset({".html", ".js", ".css", ".svg"})
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,100}")

# Same origin only: the page fetches its node's API and opens its event
# stream there ('self' covers ws:/wss: to the same host in current browsers).
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_COMMON_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def static_files(directory: Path = STATIC_DIR) -> dict[str, Path]:
    """The servable files: name -> path, for plain files of a known type."""
    if not directory.is_dir():
        return {}
    return {
        path.name: path
        for path in sorted(directory.iterdir())
        if path.is_file() and path.suffix in CONTENT_TYPES and _NAME.fullmatch(path.name)
    }


def _file_response(path: Path) -> web.Response:
    suffix = path.suffix
    headers = dict(_COMMON_HEADERS)
    if suffix == ".html":
        headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        headers["X-Frame-Options"] = "DENY"
    return web.Response(
        body=path.read_bytes(),
        content_type=CONTENT_TYPES[suffix],
        charset="utf-8" if suffix in _TEXT_TYPES else None,
        headers=headers,
    )


def routes(directory: Path = STATIC_DIR) -> list[web.RouteDef]:
    """``GET /`` (the page) and ``GET /static/{name}`` (its files)."""
    files = static_files(directory)

    async def index(request: web.Request) -> web.Response:
        path = files.get(INDEX)
        if path is None:
            raise web.HTTPNotFound(reason="the dashboard is not installed on this node")
        return _file_response(path)

    async def static(request: web.Request) -> web.Response:
        path = files.get(request.match_info["name"])
        if path is None:
            raise web.HTTPNotFound(reason="no such dashboard file")
        return _file_response(path)

    return [web.get("/", index), web.get("/static/{name}", static)]
