"""Throwaway Azurite Table and Blob emulators on free loopback ports, so the stores are tested against real services."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from devhost.blobs import DEV_ACCOUNT, DEV_KEY
from tests.support.ports import free_port, wait_for_port
from tests.support.tools import require_tool

REPO_ROOT = Path(__file__).resolve().parents[2]
AZURITE_TABLE = REPO_ROOT / "node_modules" / ".bin" / "azurite-table"
AZURITE_BLOB = REPO_ROOT / "node_modules" / ".bin" / "azurite-blob"


def connection_string(port: int, service: str = "Table") -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
        f"{service}Endpoint=http://127.0.0.1:{port}/{DEV_ACCOUNT};"
    )


@contextmanager
def start_azurite(startup_timeout: float = 20.0) -> Iterator[str]:
    """Run Azurite's Table and Blob services in memory and yield one connection string naming both; stopped
    (bounded wait) on exit."""
    with azurite_process(startup_timeout) as (tables, _), azurite_process(startup_timeout, "blob") as (blobs, _):
        yield tables + blobs.split(";", 3)[3]


@contextmanager
def azurite_process(
    startup_timeout: float = 20.0, service: str = "table"
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """One service, with its process, for a test that stops it with signals."""
    binary = AZURITE_BLOB if service == "blob" else AZURITE_TABLE
    require_tool(binary.exists() and shutil.which("node") is not None, "node and node_modules azurite needed")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="azurite-") as workspace, open(Path(workspace) / "stderr.log", "wb") as log:
        proc = subprocess.Popen(
            [
                str(binary),
                "--inMemoryPersistence",
                "--disableTelemetry",
                "--silent",
                "--skipApiVersionCheck",
                "--loose",
                f"--{service}Host",
                "127.0.0.1",
                f"--{service}Port",
                str(port),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
            cwd=workspace,
        )
        try:
            try:
                wait_for_port(port, startup_timeout)
            except TimeoutError:
                proc.kill()
                proc.wait(timeout=5)
                err = (Path(workspace) / "stderr.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"azurite-{service} did not start: {err}") from None
            yield connection_string(port, service.capitalize()), proc
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
