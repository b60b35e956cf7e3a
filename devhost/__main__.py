"""`python -m devhost`: the whole product on one machine: broker, functions, sandbox and web client.

Azure Functions Core Tools cannot be installed here, so this runs the same `function_app.app` Azure runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
from pathlib import Path

from devhost.blobs import start_blob_service
from devhost.devsettings import development_environment
from devhost.sandbox import create_sandbox_app
from devhost.serving import Announcement, sandbox_config, serve, serve_workers
from devhost.supervision import BrokerFailed, BrokerSupervisor, Stopped, say, stop_on_signals, stop_process
from relay.errors import SettingsError
from relay.settings import Settings, local_values

ROOT = Path(__file__).resolve().parent.parent


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
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="function processes serving the HTTP port (default: FUNCTIONS_WORKER_PROCESS_COUNT, else 1); "
        "with more than one, the sandbox gets a port of its own",
    )
    parser.add_argument("--sandbox-port", type=int, default=0, help="the sandbox's port with --workers > 1 (0: free)")
    parser.add_argument(
        "--blob-port",
        type=int,
        default=10000,
        help="Azurite's blob service for the pictures desks send, unless MEDIA_STORAGE is set (0: a free port)",
    )
    return parser.parse_args(argv)


def worker_shape(args: argparse.Namespace, env: dict[str, str]) -> None:
    """Processes and threads per process, read from the app settings Azure's Python worker reads."""
    try:
        if args.workers is None:
            args.workers = int(env.get("FUNCTIONS_WORKER_PROCESS_COUNT") or 1)
        threads = env.get("PYTHON_THREADPOOL_THREAD_COUNT")
        args.threads = int(threads) if threads else min(32, (os.cpu_count() or 1) + 4)  # ThreadPoolExecutor's
    except ValueError:
        raise SystemExit("devhost: worker process and thread counts must be whole numbers") from None
    if not 1 <= args.workers <= 10 or not 1 <= args.threads <= 32:
        raise SystemExit("devhost: between 1 and 10 worker processes, each with 1 to 32 threads")


def bound_hosts(args: argparse.Namespace) -> list[str]:
    """The names this host answers webhooks on: the address it binds, and localhost for a loopback one."""
    name = f"[{args.host}]" if ":" in args.host else args.host
    hosts = [f"{name}:{args.http_port}"]
    if args.host in ("127.0.0.1", "::1"):
        hosts.append(f"localhost:{args.http_port}")
    return hosts


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    http_base = f"http://{args.host}:{args.http_port}"
    base_env = dict(os.environ)
    for name, value in local_values(ROOT / "local.settings.json").items():
        base_env.setdefault(name, value)
    worker_shape(args, base_env)
    sandbox_on = args.sandbox if args.sandbox is not None else not base_env.get("TWILIO_ACCOUNT_SID")
    external_broker = bool(base_env.get("MQTT_URL"))
    data_dir = Path(args.data_dir)
    base_env.setdefault("RELAY_STORE", str(data_dir / "relay.sqlite3"))
    sandbox_listener = None
    if args.workers > 1 and sandbox_on:
        sandbox_listener = socket.create_server((args.host, args.sandbox_port))
    sandbox_base = http_base if sandbox_listener is None else f"http://{args.host}:{sandbox_listener.getsockname()[1]}"
    env = development_environment(
        base_env,
        sandbox=sandbox_on,
        sandbox_base=sandbox_base,
        mqtt_port=args.mqtt_port,
        ws_port=args.ws_port,
        secrets_path=data_dir / "devhost.json",
    )
    env["WEBHOOK_HOSTS"] = ",".join(filter(None, [env.get("WEBHOOK_HOSTS"), *bound_hosts(args)]))
    try:
        settings = Settings.load(env, local_settings=Path("/nonexistent"))
    except SettingsError as exc:
        print(f"devhost: invalid setting {exc}", file=sys.stderr)
        return 2
    blobs = start_blob_service(data_dir, args.blob_port) if settings.media_storage is None else None
    if blobs is not None:
        env["MEDIA_STORAGE"] = blobs[1]
        settings = settings.with_overrides(media_storage=blobs[1])
    os.environ.update({k: v for k, v in env.items() if k.isupper()})
    stop_on_signals()
    broker = None if external_broker else BrokerSupervisor(env, args.mqtt_port, args.ws_port)
    try:
        if broker is not None:
            broker.start()
        announce = Announcement(settings, http_base, sandbox_base if sandbox_on else None, broker is not None)
        if args.workers == 1:
            sandbox = create_sandbox_app(sandbox_config(settings, http_base)) if sandbox_on else None
            asyncio.run(serve(args, settings, announce, sandbox))
        else:
            serve_workers(args, settings, announce, sandbox_listener)
        return 0
    except BrokerFailed as exc:
        say(str(exc))
        return 1
    except Stopped:
        return 0
    finally:
        if broker is not None:
            broker.stop()
        if blobs is not None:
            stop_process(blobs[0])


if __name__ == "__main__":
    raise SystemExit(main())
