"""Development defaults: what `make run` needs so that nothing from outside is required.

Secrets that must survive a restart (the signing key, the staff and admin codes, the sandbox's account) are
generated once and kept in `.data/devhost.json`, which git ignores.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

DEFAULT_FROM = "+14155550100"
DEFAULT_POLL_SCHEDULE = "*/30 * * * * *"


def persistent_secrets(path: Path) -> dict[str, str]:
    """Kept ones first; any missing (a file from an older version lacks the admin code) are made and added."""
    fresh = {
        "RELAY_SIGNING_KEY": secrets.token_urlsafe(48),
        "RELAY_ACCESS_CODE": secrets.token_urlsafe(12),
        "RELAY_ADMIN_CODE": secrets.token_urlsafe(18),
        "SANDBOX_ACCOUNT_SID": "AC" + secrets.token_hex(16),
        "SANDBOX_AUTH_TOKEN": secrets.token_hex(16),
    }
    kept: dict[str, str] = {}
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict):
                kept = {str(k): str(v) for k, v in data.items()}
        except ValueError:
            pass
    if set(fresh) <= set(kept):
        return kept
    data = {**fresh, **kept}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    path.chmod(0o600)
    return data


def development_environment(
    environ: dict[str, str],
    *,
    sandbox: bool,
    sandbox_base: str,
    mqtt_port: int,
    ws_port: int,
    secrets_path: Path,
) -> dict[str, str]:
    """Fill what the environment (and local.settings.json, applied later) leaves unset."""
    env = dict(environ)
    kept = persistent_secrets(secrets_path)
    env.setdefault("RELAY_SIGNING_KEY", kept["RELAY_SIGNING_KEY"])
    env.setdefault("RELAY_ACCESS_CODE", kept["RELAY_ACCESS_CODE"])
    env.setdefault("RELAY_ADMIN_CODE", kept["RELAY_ADMIN_CODE"])
    env.setdefault("POLL_SCHEDULE", DEFAULT_POLL_SCHEDULE)  # the poller's timer names it as %POLL_SCHEDULE%
    env.setdefault("MQTT_URL", f"mqtt://127.0.0.1:{mqtt_port}")
    env.setdefault("MQTT_BROWSER_URL", f"ws://127.0.0.1:{ws_port}/mqtt")
    if sandbox:
        env.setdefault("TWILIO_ACCOUNT_SID", kept["SANDBOX_ACCOUNT_SID"])
        env.setdefault("TWILIO_AUTH_TOKEN", kept["SANDBOX_AUTH_TOKEN"])
        if not env.get("TWILIO_MESSAGING_SERVICE_SID"):
            env.setdefault("TWILIO_FROM_NUMBER", DEFAULT_FROM)
        env["TWILIO_API_BASE_URL"] = f"{sandbox_base}/sandbox/twilio"
    return env
