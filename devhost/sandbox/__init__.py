"""An offline Twilio: fake REST API, virtual phones and signed webhooks for local development and tests."""

from .app import create_sandbox_app
from .config import SandboxConfig

__all__ = ["SandboxConfig", "create_sandbox_app"]
