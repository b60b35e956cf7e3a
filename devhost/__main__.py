"""`python -m devhost`: the whole product on one machine: broker, functions, sandbox and web client.

Azure Functions Core Tools cannot be installed here, so this runs the same `function_app.app` Azure runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import uvicorn

from devhost.devsettings import development_environment
from devhost.functions_host import FunctionsHost
from devhost.sandbox import SandboxConfig, create_sandbox_app
from devhost.server import create_app
from devhost.timers import run_timers
from relay.errors import SettingsError
from relay.runtime import Runtime, build, install
from relay.settings import Settings, local_values

ROOT = Path(__file__).resolve().parent.parent
BROKER_READY_SECONDS = 20.0
READY_SECONDS = 15.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devhost", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--http-port", type=int, default=7071)
    parser.add_argument("--mqtt-port", type=int, default=1883)
    parser.add_argument("--ws-port", type=int, default=9001)
    parser.add_argument(
        "--sandbox",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run the Twilio sandbox (default: on when TWILIO_ACCOUNT_SID is unset)",
    )
    parser.add_argument("--data-dir", default=str(ROOT / ".data"), help="where development secrets and SQLite live")
    return parser.parse_args(argv)


def start_broker(env: dict[str, str], mqtt_port: int, ws_port: int) -> subprocess.Popen[str]:
    """The embedded broker as a child process, so a slow subscriber never stalls the functions."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "broker",
            "--host",
            "127.0.0.1",
            "--mqtt-port",
            str(mqtt_port),
            "--ws-port",
            str(ws_port),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + BROKER_READY_SECONDS
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("broker ready"):
            return proc
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise SystemExit(f"devhost: the broker did not start on ports {mqtt_port}/{ws_port}")


def stop_process(proc: subprocess.Popen[str] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    http_base = f"http://{args.host}:{args.http_port}"
    base_env = dict(os.environ)
    for name, value in local_values(ROOT / "local.settings.json").items():
        base_env.setdefault(name, value)
    sandbox_on = args.sandbox if args.sandbox is not None else not base_env.get("TWILIO_ACCOUNT_SID")
    external_broker = bool(base_env.get("MQTT_URL"))
    data_dir = Path(args.data_dir)
    base_env.setdefault("RELAY_STORE", str(data_dir / "relay.sqlite3"))
    env = development_environment(
        base_env,
        sandbox=sandbox_on,
        http_base=http_base,
        mqtt_port=args.mqtt_port,
        ws_port=args.ws_port,
        secrets_path=data_dir / "devhost.json",
    )
    try:
        settings = Settings.load(env, local_settings=Path("/nonexistent"))
    except SettingsError as exc:
        print(f"devhost: invalid setting {exc}", file=sys.stderr)
        return 2
    os.environ.update({k: v for k, v in env.items() if k.isupper()})
    broker = None if external_broker else start_broker(env, args.mqtt_port, args.ws_port)
    try:
        return asyncio.run(serve(args, settings, http_base, sandbox_on, broker is not None))
    finally:
        stop_process(broker)


async def serve(
    args: argparse.Namespace, settings: Settings, http_base: str, sandbox_on: bool, own_broker: bool
) -> int:
    runtime = build(settings)
    install(runtime)
    import function_app

    host_json = json.loads((ROOT / "host.json").read_text(encoding="utf-8"))
    prefix = host_json.get("extensions", {}).get("http", {}).get("routePrefix", "api")
    host = FunctionsHost(function_app.app, prefix)
    sandbox = None
    if sandbox_on:
        sandbox = create_sandbox_app(
            SandboxConfig(
                account_sid=settings.twilio_account_sid,
                auth_token=settings.twilio_auth_token,
                from_number=settings.twilio_from_number,
                messaging_service_sid=settings.twilio_messaging_service_sid,
                webhook_url=f"{http_base}/{prefix}/receive_sms",
                public_base_url=settings.public_base_url,
            )
        )
    app = create_app(host, prefix, ROOT / "webclient", sandbox)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.http_port,
        log_level="warning",
        access_log=False,
        proxy_headers=False,  # the functions decide which forwarded headers to trust (TRUSTED_PROXY_HOPS)
        timeout_graceful_shutdown=3,
        timeout_keep_alive=60,  # like a front end: idle client connections are reused, not cut after 5 s
    )
    server = uvicorn.Server(config)
    stop = asyncio.Event()
    timers = asyncio.create_task(run_timers(host.timers, stop))
    announce = asyncio.create_task(_announce(server, runtime, http_base, sandbox_on, own_broker))
    try:
        await server.serve()
    finally:
        stop.set()
        announce.cancel()
        await timers
        runtime.close()
        install(None)
    return 0


async def _announce(server: uvicorn.Server, runtime: Runtime, http_base: str, sandbox_on: bool, own: bool) -> None:
    """Print the URLs once /api/health would say ready (broker connected, store reachable), or say why not."""
    settings = runtime.settings
    deadline = asyncio.get_running_loop().time() + READY_SECONDS
    while not server.started or not (await asyncio.to_thread(runtime.health))[0]:
        if asyncio.get_running_loop().time() > deadline:
            _, report = await asyncio.to_thread(runtime.health)
            print(f"devhost: not ready after {READY_SECONDS:g} s: {report}", file=sys.stderr, flush=True)
            break
        await asyncio.sleep(0.05)
    code = f"?code={settings.relay_access_code}" if settings.relay_auth == "accesscode" else ""
    lines = [
        "SMS relay is running. Open:",
        f"  Web app          {http_base}/{code}",
    ]
    if sandbox_on:
        lines.append(f"  Phone simulator  {http_base}/sandbox/phone")
    lines += [
        f"  Health           {http_base}/api/health",
        f"  MQTT             {settings.mqtt_url} (service){' [embedded amqtt]' if own else ''}",
        f"  MQTT for pages   {settings.mqtt_browser_url}",
        "Press Ctrl-C to stop.",
    ]
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
