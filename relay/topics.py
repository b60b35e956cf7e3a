"""The MQTT topic layout, in one place, under the configurable prefix."""

from __future__ import annotations

from dataclasses import dataclass

UNROUTED = "unrouted"


@dataclass(frozen=True)
class Topics:
    prefix: str = "sms"

    def of(self, audience: str, kind: str) -> str:
        """`audience` is a webAppId or UNROUTED; `kind` is inbound, outbound, status, claimed, reminder, scheduled,
        contact, batch, template, ...: all under the desk's own `<prefix>/<desk>/#`, which is all its ACL grants."""
        return f"{self.prefix}/{audience}/{kind}"

    def filters_for(self, web_app_id: str) -> list[str]:
        """What a desk may subscribe to: its own topics and the unrouted ones."""
        return [f"{self.prefix}/{web_app_id}/#", f"{self.prefix}/{UNROUTED}/#"]

    def control(self, name: str) -> str:
        """Between relay instances and the broker: desks can neither subscribe to these nor publish on them."""
        return f"{self.prefix}/_control/{name}"

    def everything(self) -> str:
        return f"{self.prefix}/#"
