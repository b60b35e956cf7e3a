"""A throwaway Azurite Table emulator on a free loopback port, so the Table store is tested against a real service."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.ports import free_port, wait_for_port
from tests.support.tools import require_tool

REPO_ROOT = Path(__file__).resolve().parents[2]
AZURITE_TABLE = REPO_ROOT / "node_modules" / ".bin" / "azurite-table"

# The emulator's published, well-known development account: not a secret.
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def connection_string(port: int) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
        f"TableEndpoint=http://127.0.0.1:{port}/{DEV_ACCOUNT};"
    )


@contextmanager
def start_azurite(startup_timeout: float = 20.0) -> Iterator[str]:
    """Run azurite-table in memory and yield its connection string; stopped (bounded wait) on exit."""
    with azurite_process(startup_timeout) as (connection, _):
        yield connection


@contextmanager
def azurite_process(startup_timeout: float = 20.0) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The same, with the process, for a test that stops it with signals."""
    require_tool(AZURITE_TABLE.exists() and shutil.which("node") is not None, "node and node_modules azurite needed")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="azurite-") as workspace, open(Path(workspace) / "stderr.log", "wb") as log:
        proc = subprocess.Popen(
            [
                str(AZURITE_TABLE),
                "--inMemoryPersistence",
                "--disableTelemetry",
                "--silent",
                "--skipApiVersionCheck",
                "--loose",
                "--tableHost",
                "127.0.0.1",
                "--tablePort",
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
                raise RuntimeError(f"azurite-table did not start: {err}") from None
            yield connection_string(port), proc
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
