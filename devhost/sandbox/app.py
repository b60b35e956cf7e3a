"""Assembles the sandbox ASGI app that the devhost mounts at /sandbox."""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .api import TwilioApi
from .config import SandboxConfig
from .phones import Phones
from .state import SandboxState

STATIC = Path(__file__).parent / "static"


def create_sandbox_app(config: SandboxConfig) -> Starlette:
    """A fresh, in-memory Twilio: REST API under /twilio, phones under /phones, the simulator at /phone."""
    state = SandboxState()

    async def calls(request: Request) -> Response:
        """Sandbox-only: the REST requests received (GET), or forget them (DELETE)."""
        if request.method == "DELETE":
            state.clear_calls()
            return Response(status_code=204)
        return JSONResponse([call.__dict__ for call in state.calls()])

    async def phone_page(request: Request) -> Response:
        return FileResponse(STATIC / "phone.html", media_type="text/html")

    routes = [
        Route("/calls", calls, methods=["GET", "DELETE"]),
        Route("/twilio/calls", calls, methods=["GET", "DELETE"]),
        Mount("/twilio", app=TwilioApi(config, state).router()),
        *Phones(config, state).routes(),
        Route("/phone", phone_page, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes)
    app.state.sandbox = state
    return app
