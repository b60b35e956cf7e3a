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

    async def callbacks(request: Request) -> Response:
        """Sandbox-only: every status callback made, with our app's answer and its time (DELETE /calls clears)."""
        return JSONResponse([callback.__dict__ for callback in state.callbacks()])

    async def faults(request: Request) -> Response:
        """Sandbox-only: fail the next `times` REST requests whose path ends with `path` with `status` (5xx)."""
        try:
            fault = await request.json()
            path, status, times = str(fault["path"]), int(fault["status"]), int(fault.get("times", 1))
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": 'expected {"path": "/Media.json", "status": 503, "times": 1}'}, 400)
        if not 500 <= status <= 599 or times < 1:
            return JSONResponse({"error": "status must be 5xx and times at least 1"}, 400)
        state.add_fault(path, status, times)
        return Response(status_code=204)

    async def cdn(request: Request) -> Response:
        """The media CDN Twilio redirects to: the signed URL is the credential, and like S3 it refuses a request
        that also carries an Authorization header."""
        if "authorization" in request.headers:
            return Response(
                "<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism allowed</Message></Error>",
                status_code=400,
                media_type="application/xml",
            )
        found = state.media_by_token(request.path_params["token"])
        if found is None or found.data is None:
            return Response("<Error><Code>AccessDenied</Code></Error>", status_code=403, media_type="application/xml")
        return Response(found.data, media_type=found.content_type)

    async def phone_page(request: Request) -> Response:
        return FileResponse(STATIC / "phone.html", media_type="text/html")

    routes = [
        Route("/calls", calls, methods=["GET", "DELETE"]),
        Route("/twilio/calls", calls, methods=["GET", "DELETE"]),
        Route("/faults", faults, methods=["POST"]),
        Route("/callbacks", callbacks, methods=["GET"]),
        Mount("/twilio", app=TwilioApi(config, state).router()),
        Route("/cdn/{token}", cdn, methods=["GET"]),
        *Phones(config, state).routes(),
        Route("/phone", phone_page, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes)
    app.state.sandbox = state
    return app
