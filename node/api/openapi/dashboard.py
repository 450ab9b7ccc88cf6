"""The dashboard: the web page every node serves, and its files."""

from __future__ import annotations

from node.api.openapi.common import STR, Schema, error_responses, operation, path_param


def dashboard_ops() -> dict[str, Schema]:
    page = {"description": "The dashboard page.", "content": {"text/html": {"schema": STR}}}
    files = {
        "description": "A file of the page (script, style sheet, image).",
        "content": {
            media: {"schema": STR}
            for media in (
                "text/html",
                "text/javascript",
                "text/css",
                "image/svg+xml",
                "image/png",
                "image/x-icon",
            )
        },
    }
    name = path_param(
        "name",
        {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,100}$"},
        "A file name (never a path).",
        "app.js",
    )
    return {
        "/": {
            "get": operation(
                "dashboard",
                "dashboard",
                "The dashboard (HTML)",
                {"200": page, **error_responses(("not_found",))},
                description="404 `not_found` when the dashboard is not installed.",
            )
        },
        "/static/{name}": {
            "get": operation(
                "dashboardFile",
                "dashboard",
                "A file of the dashboard",
                {"200": files, **error_responses(("not_found",))},
                [name],
            )
        },
    }
