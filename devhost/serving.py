"""Serving `function_app` over HTTP: in one process, or in several worker processes sharing one port."""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import multiprocessing
import os
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.types import ASGIApp

from devhost.functions_host import FunctionsHost
from devhost.sandbox import SandboxConfig, create_sandbox_app
from devhost.server import create_app
from devhost.supervision import die_with_parent
from devhost.timers import run_timers
from relay.runtime import build, install
from relay.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
READY_SECONDS = 15.0


def sandbox_config(settings: Settings, http_base: str) -> SandboxConfig:
    return SandboxConfig(
        account_sid=settings.twilio_account_sid,
        auth_token=settings.twilio_auth_token,
        from_number=settings.twilio_from_number,
        messaging_service_sid=settings.twilio_messaging_service_sid,
        webhook_url=f"{http_base}/{route_prefix()}/receive_sms",
        public_base_url=settings.public_base_url,
        webhook_shared_key=settings.twilio_webhook_shared_key,
        **SandboxConfig.options_from(os.environ),
    )


@functools.cache
def route_prefix() -> str:
    """host.json's routePrefix, read once: the announcement asks for it every 50 ms until ready."""
    host_json = json.loads((ROOT / "host.json").read_text(encoding="utf-8"))
    return str(host_json.get("extensions", {}).get("http", {}).get("routePrefix", "api"))


def http_config(app: ASGIApp, args: argparse.Namespace) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=args.host,
        port=args.http_port,
        log_level="warning",
        access_log=False,
        proxy_headers=False,  # the functions decide which forwarded headers to trust (TRUSTED_PROXY_HOPS)
        timeout_graceful_shutdown=3,
        timeout_keep_alive=60,  # like a front end: idle client connections are reused, not cut after 5 s
    )


async def serve(
    args: argparse.Namespace, settings: Settings, announce: Announcement, sandbox: Starlette | None
) -> None:
    """One process: the functions, the timers and the sandbox share one event loop."""
    announcing = asyncio.create_task(announce.when_ready())
    try:
        await run_functions(args, settings, sandbox=sandbox, timers=True)
    finally:
        announcing.cancel()


async def run_functions(
    args: argparse.Namespace,
    settings: Settings,
    *,
    sandbox: Starlette | None,
    timers: bool,
    sockets: list[socket.socket] | None = None,
) -> None:
    runtime = build(settings)
    install(runtime)
    import function_app

    prefix = route_prefix()
    host = FunctionsHost(function_app.app, prefix, threads=args.threads)
    server = uvicorn.Server(http_config(create_app(host, prefix, ROOT / "webclient", sandbox), args))
    stop = asyncio.Event()
    timer_task = asyncio.create_task(run_timers(host.timers if timers else [], stop))
    try:
        await server.serve(sockets=sockets)
    finally:
        stop.set()
        await timer_task
        host.close()
        runtime.close()
        install(None)


def serve_workers(
    args: argparse.Namespace, settings: Settings, announce: Announcement, sandbox_listener: socket.socket | None
) -> None:
    """Several interpreters serve one port, so one GIL no longer caps the host, as the Functions host runs
    several Python workers. The sandbox keeps its in-memory state here, on its own port; the first worker
    alone runs the timers, as one instance holds a timer trigger's lock on Azure."""
    reservation = port_socket(args.host, args.http_port, listen=False)  # a taken port fails here, not in a worker
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=run_worker, args=(args, settings, i == 0, os.getpid()), name=f"devhost-worker-{i}")
        for i in range(args.workers)
    ]
    for worker in workers:
        worker.start()
    try:
        asyncio.run(supervise(args, settings, announce, sandbox_listener, workers))
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.join(10)
            if worker.is_alive():
                worker.kill()
                worker.join(5)
        reservation.close()


def port_socket(host: str, port: int, *, listen: bool) -> socket.socket:
    """Each worker listens on a socket of its own with SO_REUSEPORT, and the kernel spreads connections evenly
    across them; with one shared socket, whichever worker woke first took most of a client's connections."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    # Accepted connections inherit it. uvloop leaves it off on a socket it did not bind, and then every
    # response written in two parts waited out the client's 40 ms delayed ACK.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    if listen:
        sock.listen(2048)
    return sock


def run_worker(args: argparse.Namespace, settings: Settings, timers: bool, parent: int) -> None:
    die_with_parent(parent)
    listener = port_socket(args.host, args.http_port, listen=True)
    asyncio.run(run_functions(args, settings, sandbox=None, timers=timers, sockets=[listener]))


async def supervise(
    args: argparse.Namespace,
    settings: Settings,
    announce: Announcement,
    sandbox_listener: socket.socket | None,
    workers: Sequence[multiprocessing.process.BaseProcess],
) -> None:
    """Until Ctrl-C, SIGTERM or a worker's death, serving the sandbox meanwhile."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.create_task(announce.when_ready()), asyncio.create_task(_watch(workers, stop))]
    try:
        if sandbox_listener is None:
            await stop.wait()
            return
        sandbox = create_sandbox_app(sandbox_config(settings, announce.http_base))
        server = uvicorn.Server(http_config(Starlette(routes=[Mount("/sandbox", app=sandbox)]), args))
        serving = asyncio.create_task(server.serve(sockets=[sandbox_listener]))
        await stop.wait()
        server.should_exit = True
        await serving
    finally:
        for task in tasks:
            task.cancel()


async def _watch(workers: Sequence[multiprocessing.process.BaseProcess], stop: asyncio.Event) -> None:
    while not stop.is_set():
        dead = [w for w in workers if w.exitcode is not None]
        if dead:
            print(f"devhost: {dead[0].name} exited with {dead[0].exitcode}; stopping", file=sys.stderr, flush=True)
            stop.set()
        await asyncio.sleep(0.5)


class Announcement:
    """Print the URLs once /api/health says ready (broker connected, store reachable), or say why not."""

    def __init__(self, settings: Settings, http_base: str, sandbox_base: str | None, own_broker: bool) -> None:
        self.settings = settings
        self.http_base = http_base
        self.sandbox_base = sandbox_base
        self.own_broker = own_broker

    async def when_ready(self) -> None:
        deadline = asyncio.get_running_loop().time() + READY_SECONDS
        report = "no answer"
        async with httpx.AsyncClient(timeout=2, trust_env=False) as client:
            while asyncio.get_running_loop().time() < deadline:
                try:
                    response = await client.get(f"{self.http_base}/{route_prefix()}/health")
                    if response.status_code == 200:
                        print(self.text(), flush=True)
                        return
                    report = response.text
                except httpx.HTTPError as exc:
                    report = type(exc).__name__
                await asyncio.sleep(0.05)
        print(f"devhost: not ready after {READY_SECONDS:g} s: {report}", file=sys.stderr, flush=True)

    def text(self) -> str:
        settings = self.settings
        code = f"?code={settings.relay_access_code}" if settings.relay_auth == "accesscode" else ""
        lines = ["SMS relay is running. Open:", f"  Web app          {self.http_base}/{code}"]
        if self.sandbox_base:
            lines.append(f"  Phone simulator  {self.sandbox_base}/sandbox/phone")
        desks = ", ".join(d.name + (f" (#{d.alias})" if d.alias else "") for d in settings.relay_desks)
        lines += [
            f"  Desks            {desks}",
            f"  Operator page    {self.http_base}/admin.html (the admin code is in .data/devhost.json)",
            f"  Health           {self.http_base}/{route_prefix()}/health",
            f"  MQTT             {settings.mqtt_url} (service){' [embedded amqtt]' if self.own_broker else ''}",
            f"  MQTT for pages   {settings.mqtt_browser_url}",
            "Press Ctrl-C to stop.",
        ]
        return "\n".join(lines)
