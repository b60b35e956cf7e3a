"""The local host's ASGI app: functions under /api, the sandbox under /sandbox, the web client at /."""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from devhost.functions_host import FunctionsHost

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


class PageHeaders(BaseHTTPMiddleware):
    """The CSP and friends on every static page; API responses set their own."""

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await call_next(request)
        if not request.url.path.startswith("/api/"):
            response.headers.setdefault("Content-Security-Policy", CSP)
            response.headers.setdefault("X-Content-Type-Options", "nosniff")
            response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response


def create_app(host: FunctionsHost, route_prefix: str, webclient: Path, sandbox: Starlette | None) -> ASGIApp:
    prefix = "/" + route_prefix.strip("/") + "/"
    routes: list[BaseRoute] = []
    if sandbox is not None:
        routes.append(Mount("/sandbox", app=sandbox))
    routes.append(Mount("/", app=StaticFiles(directory=webclient, html=True, check_dir=False)))
    pages = Starlette(routes=routes, middleware=[Middleware(PageHeaders)])

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        """Every path under the prefix goes to the functions, even one Starlette's path patterns would not match."""
        if scope["type"] == "http" and str(scope["path"]).startswith(prefix):
            await host(scope, receive, send)
        else:
            await pages(scope, receive, send)

    return app
