"""The local blob service for pictures the desks send: Azurite's, since Twilio fetches media by URL and a local
folder would not be what production runs on.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import httpx

from devhost.supervision import ROOT, die_with_parent, say

AZURITE_BLOB = ROOT / "node_modules" / ".bin" / "azurite-blob"
READY_SECONDS = 20.0
# The emulator's published, well-known development account: not a secret.
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def blob_connection_string(port: int) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{port}/{DEV_ACCOUNT};"
    )


def start_blob_service(data_dir: Path, port: int) -> tuple[subprocess.Popen[bytes], str] | None:
    """Azurite's blob service on loopback, keeping its blobs under `data_dir`; port 0 takes a free one. Without
    it the product runs on, with pictures from the desk off (POST /api/media says why), so None and a word."""
    if not AZURITE_BLOB.exists():
        say("pictures from the desk are off: node_modules has no azurite-blob (run make setup)")
        return None
    if port == 0:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
    location = data_dir / "azurite"
    location.mkdir(parents=True, exist_ok=True)
    parent = os.getpid()
    log = (location / "azurite.log").open("ab")
    proc = subprocess.Popen(
        [
            *(str(AZURITE_BLOB), "--silent", "--disableTelemetry", "--skipApiVersionCheck", "--loose"),
            *("--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", str(location)),
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        process_group=0,
        preexec_fn=lambda: die_with_parent(parent),
    )
    log.close()
    connection = blob_connection_string(port)
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            # Azurite's own answer, not just an open port: another program may hold it.
            answer = httpx.get(f"http://127.0.0.1:{port}/{DEV_ACCOUNT}?comp=list", timeout=0.5)
            if "x-ms-request-id" in answer.headers and proc.poll() is None:
                return proc, connection
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    proc.wait(5)
    say(f"pictures from the desk are off: Azurite's blob service did not start on port {port} (see {location})")
    return None
