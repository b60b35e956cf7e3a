"""The relay's errors: each maps to one HTTP status and one error code, in one place."""

from __future__ import annotations


class RelayError(Exception):
    """Base of every error the relay reports to a caller."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.headers = headers or {}

    def to_json(self) -> dict[str, object]:
        return {"error": {"code": self.code, "message": self.message}}


class BadRequest(RelayError):
    status = 400
    code = "bad_request"


class Unauthorized(RelayError):
    status = 401
    code = "unauthorized"


class Forbidden(RelayError):
    status = 403
    code = "forbidden"


class NotFound(RelayError):
    status = 404
    code = "not_found"


class Conflict(RelayError):
    status = 409
    code = "conflict"


class OwnedElsewhere(Conflict):
    """Another desk has the conversation; the answer names it, so the page can offer to take it over."""

    code = "owned_by_other_desk"

    def __init__(self, message: str, *, owner: dict[str, str]) -> None:
        super().__init__(message)
        self.owner = owner

    def to_json(self) -> dict[str, object]:
        body = super().to_json()
        error = body["error"]
        assert isinstance(error, dict)
        error["owner"] = self.owner
        return body


class PayloadTooLarge(RelayError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(RelayError):
    status = 415
    code = "unsupported_media_type"


class TooManyRequests(RelayError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int, code: str | None = None) -> None:
        super().__init__(message, code=code, headers={"Retry-After": str(max(1, retry_after))})
        self.retry_after = retry_after


class UpstreamRefused(RelayError):
    """Twilio answered with an error; its own code travels with ours."""

    status = 502
    code = "twilio_error"

    def __init__(self, message: str, *, twilio_code: int | None, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.twilio_code = twilio_code

    def to_json(self) -> dict[str, object]:
        body = super().to_json()
        error = body["error"]
        assert isinstance(error, dict)
        error["twilioCode"] = self.twilio_code
        return body


class Unavailable(RelayError):
    """A dependency (broker, store, Twilio transport) is down; the caller may retry."""

    status = 503
    code = "unavailable"


class PublishFailed(Unavailable):
    code = "broker_unavailable"


class StoreUnavailable(Unavailable):
    code = "store_unavailable"


class DeadlineExceeded(Unavailable):
    """A webhook's work was not done by WEBHOOK_DEADLINE_SECONDS; Twilio retries, and dedup makes that safe."""

    code = "deadline_exceeded"


class SettingsError(Exception):
    """A setting is missing or malformed; raised at start-up and names the setting."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")
        self.name = name
