"""The Personalizer-compatible API, mounted under /personalizer (loop `default`) and /loops/{loop}/personalizer."""

from __future__ import annotations

from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from nextbest.server.http.api import Services
from nextbest.server.http.calls import HttpError


def error_response(error: HttpError) -> Response:
    """Personalizer's error body."""
    return JSONResponse({"error": {"code": error.code.name, "message": error.message}}, status_code=error.status)


def routes(services: Services) -> list[BaseRoute]:
    """The routes of the Personalizer API (relative to its mount point)."""
    return []
