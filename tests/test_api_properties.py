"""schemathesis against `docs/openapi.yaml`, through `python -m devhost` with its Twilio sandbox.

Its examples, coverage and fuzzing phases run per operation, and its stateful phase follows the spec's `links`
(a sent text's number into its conversation, a page's `next` into the next page, an unrouted number into a
claim). Desks authenticate through a schemathesis auth provider (`POST /api/session` with the access code), and
the webhooks carry a real Twilio signature, so generated forms get past the signature check and into the
pipeline; the generated (forged) signature is kept for the negative cases.

For every response: no 5xx (the store and broker are up throughout), the status, content type, headers and
body are the spec's (schemathesis's checks), and a request answered with a 4xx made no Twilio REST call (the
sandbox records every one). The run prints its size, by phase and by status.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
import yaml
from schemathesis import Case
from schemathesis.config import SchemathesisConfig
from schemathesis.core.transport import Response
from schemathesis.engine import events
from twilio.request_validator import RequestValidator

from tests.support.broker import BrokerProcess
from tests.support.devhost import DevhostProcess

pytestmark = pytest.mark.slow

AnyCase = Case[Any]

REPO = Path(__file__).resolve().parents[1]
SPEC_PATH = REPO / "docs" / "openapi.yaml"
SPEC: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))
WEBHOOKS = {"receiveSms": "receive_sms", "smsStatus": "sms_status"}
ADMIN = {
    "adminListDesks",
    "adminAddDesk",
    "adminChangeDesk",
    "adminArchiveDesk",
    "adminSessions",
    "adminEndSession",
    "adminEndStaff",
}
UNAUTHENTICATED = {"openSession", "health", *WEBHOOKS, *ADMIN}


# Sized for about a minute on two cores: every phase reaches every operation, fuzzing and stateful stay short.
def config(base_url: str) -> SchemathesisConfig:
    return SchemathesisConfig.from_dict(
        {
            "base-url": base_url,
            "seed": 15,
            "request-timeout": 60,  # a shared, busy machine must not turn a slow answer into a failure
            "phases": {
                "examples": {"enabled": True},
                "coverage": {"enabled": True},
                "fuzzing": {"enabled": True},
                "stateful": {"enabled": True, "max-steps": 12},
            },
            "generation": {"mode": "all", "max-examples": 60, "database": "none"},
            # A schema-valid send can still be refused (a number no carrier has, a country not allowed): that 4xx
            # is the API working, so "positive data is accepted" does not hold here by design.
            "checks": {"positive_data_acceptance": {"enabled": False}},
        }
    )


def session_request(access_code: str) -> dict[str, Any]:
    """The body of `POST /api/session` for a new desk: the spec's own example, with this host's access code.

    The one place that knows the session request's shape; when the spec's example changes, so does this."""
    example = dict(SPEC["components"]["schemas"]["SessionRequest"]["examples"][0])
    return {**example, "accessCode": access_code}


class Run:
    """The host under test, and what the run saw: counts by phase and status, and contract breaks."""

    def __init__(self, host: DevhostProcess) -> None:
        self.host = host
        self.by_phase: Counter[str] = Counter()
        self.by_status: Counter[int] = Counter()
        self.problems: list[str] = []
        self.http = httpx.Client(timeout=15)
        self.twilio_calls = len(self.calls())
        # Each login attempt from an address of its own: ten wrong codes from one address block it for 15 min.
        self.addresses = (f"198.51.{a}.{b}" for a in range(256) for b in range(1, 255))

    def calls(self) -> list[dict[str, Any]]:
        r = self.http.get(f"{self.host.sandbox_url}/calls")
        r.raise_for_status()
        calls: list[dict[str, Any]] = r.json()
        return calls

    def new_token(self) -> str:
        r = self.http.post(f"{self.host.base_url}/api/session", json=session_request(self.host.access_code))
        r.raise_for_status()
        return str(r.json()["token"])

    def before_call(self, case: AnyCase) -> None:
        """Place logins; note the Twilio calls so far, to see which ones this request makes."""
        if operation_id(case) == "openSession" or operation_id(case) in ADMIN:
            case.headers["X-Forwarded-For"] = next(self.addresses)  # wrong admin codes count like wrong logins
        self.twilio_calls = len(self.calls())

    def sign(self, case: AnyCase, route: str, auth_token: str) -> None:
        assert isinstance(case.body, dict)
        form = {str(k): [str(x) for x in v] if isinstance(v, list) else [str(v)] for k, v in case.body.items()}
        case.headers.pop("X-Twilio-Webhooks-Signature-Settings", None)  # the Auth Token's signature: SHA-1
        case.headers["X-Twilio-Signature"] = _sign(auth_token, f"{self.host.base_url}/api/{route}", form)

    def after_call(self, case: AnyCase, response: Response) -> None:
        phase = case.meta.phase.name.value if case.meta is not None else "other"
        self.by_phase[phase] += 1
        self.by_status[response.status_code] += 1
        if response.status_code >= 500:
            self.problems.append(f"{case.as_curl_command()} -> {response.status_code} {response.text[:300]}")

    def twilio_called(self, case: AnyCase, response: Response) -> str | None:
        """Why this response breaks "no Twilio call for an invalid request", or None."""
        new = self.calls()[self.twilio_calls :]
        if not new or not 400 <= response.status_code < 500:
            return None
        code = _error_code(response)
        operation = operation_id(case)
        # A media 404 may be Twilio's own answer for the attachment; a 409 opted_out may be Twilio's 21610.
        media_fetch = operation == "getMedia" and all(c["method"] == "GET" for c in new)
        twilio_opt_out = operation == "sendSms" and code == "opted_out" and len(new) == 1
        if media_fetch or twilio_opt_out:
            return None
        return f"{case.method} {case.formatted_path} -> {response.status_code} ({code}) made {len(new)} Twilio call(s)"

    def summary(self) -> str:
        phases = ", ".join(f"{p}: {n}" for p, n in sorted(self.by_phase.items()))
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(self.by_status.items()))
        return f"schemathesis: {sum(self.by_phase.values())} requests ({phases}); by status {{{statuses}}}"


def operation_id(case: AnyCase) -> str:
    return str(case.operation.definition.raw.get("operationId", ""))


def _sign(token: str, url: str, form: dict[str, list[str]]) -> str:
    class Form(dict[str, list[str]]):
        """The SDK signs every value of a repeated key when the mapping offers `getall`."""

        def getall(self, name: str) -> list[str]:
            return self[name]

    return str(RequestValidator(token).compute_signature(url, Form(form)))


def _error_code(response: Response) -> str | None:
    try:
        return str(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return None


def twilio_signature(run: Run) -> type:
    """schemathesis's auth provider for the webhooks: X-Twilio-Signature over the form as it will be sent, so
    its `ignored_auth` check sends the same form unsigned. Negative cases keep the signature they generated."""

    class TwilioSignature:
        def get(self, case: AnyCase, context: Any) -> str:
            return run.host.auth_token

        def set(self, case: AnyCase, data: str, context: Any) -> None:
            negative = case.meta is not None and case.meta.generation.mode.name == "NEGATIVE"
            if not negative and isinstance(case.body, dict):
                run.sign(case, WEBHOOKS[operation_id(case)], data)

    return TwilioSignature


def admin_code(run: Run) -> type:
    """schemathesis's auth provider for the operator API: the host's admin code in X-Admin-Code."""

    class AdminCode:
        def get(self, case: AnyCase, context: Any) -> str:
            return run.host.admin_code

        def set(self, case: AnyCase, data: str, context: Any) -> None:
            case.headers["X-Admin-Code"] = data

    return AdminCode


def desk_token(run: Run) -> type:
    """schemathesis's auth provider: a desk's Bearer token from `POST /api/session`, refreshed on a 401; signing
    out gets a token of its own, so the run's desk stays signed in."""

    class DeskToken:
        def get(self, case: AnyCase, context: Any) -> str:
            return run.new_token()

        def set(self, case: AnyCase, data: str, context: Any) -> None:
            token = run.new_token() if operation_id(case) == "signOut" else data
            case.headers["Authorization"] = f"Bearer {token}"

    return DeskToken


def seed(run: Run) -> None:
    """Something for the links and lists to find: sent texts, an MMS with its media, unrouted numbers."""
    host, token = run.host, run.new_token()
    with httpx.Client(base_url=host.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=20) as client:
        for n in range(3):
            sent = client.post("/api/send_sms", json={"to": f"+1415555{150 + n:04d}", "body": f"hello {n}"})
            assert sent.status_code == 201, sent.text
    reply = httpx.post(f"{host.sandbox_url}/phones/+14155550150/reply", json={"body": "photo", "image": True})
    assert reply.status_code == 200 and reply.json()["status"] == 200, reply.text
    for n in range(3):
        answer = httpx.post(f"{host.sandbox_url}/phones/+1415555{170 + n:04d}/reply", json={"body": "new here"})
        assert answer.status_code == 200, answer.text


@pytest.fixture(scope="module")
def run(broker: BrokerProcess, signing_key: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """A host of its own: sends are not rate-limited, so generated sends that pass every check reach Twilio;
    one trusted proxy hop, so each login can come from a client address of its own; and a default desk with an
    id the fuzzer cannot guess, so the operator API it fuzzes with a real admin code cannot archive the desk
    the run's sessions are at (it archives what it can name: a 401 `desk_archived` is in the contract)."""
    env = {
        "SEND_LIMIT_PER_MINUTE": "100000",
        "SEND_LIMIT_PER_DAY": "100000",
        "TRUSTED_PROXY_HOPS": "1",
        "RELAY_DESKS": f"Fuzz {secrets.token_hex(6)}=F,Reception=R,Billing=B",
    }
    data_dir = tmp_path_factory.mktemp("fuzzed-host")
    with DevhostProcess(
        broker, data_dir, access_code=secrets.token_urlsafe(12), signing_key=signing_key, extra_env=env
    ) as host:
        run = Run(host)
        seed(run)
        yield run
        run.http.close()


def schemathesis_run(run: Run) -> tuple[list[str], Counter[str]]:
    """One schemathesis run, every phase; the failures it found, and its scenarios by phase and status."""
    # Archiving is left out: with the admin code, the stateful phase learns every desk's id from the operator's
    # list and archives them all, and then no session can be opened. tests/test_admin.py and the routing and
    # broker tests cover archiving with real parts.
    schema = schemathesis.openapi.from_path(SPEC_PATH, config=config(run.host.base_url)).exclude(
        operation_id="adminArchiveDesk"
    )
    schema.auth().skip_for(operation_id=sorted(UNAUTHENTICATED))(desk_token(run))
    schema.auth().apply_to(operation_id=sorted(WEBHOOKS))(twilio_signature(run))
    schema.auth().apply_to(operation_id=sorted(ADMIN))(admin_code(run))

    def before_call(context: Any, case: AnyCase, kwargs: dict[str, Any]) -> None:
        run.before_call(case)

    def after_call(context: Any, case: AnyCase, response: Response) -> None:
        run.after_call(case, response)

    @schemathesis.check
    def no_twilio_call_for_an_invalid_request(ctx: Any, response: Response, case: AnyCase) -> bool | None:
        problem = run.twilio_called(case, response)
        if problem:
            raise AssertionError(problem)
        return None

    failures: list[str] = []
    scenarios: Counter[str] = Counter()
    hooks = [schemathesis.hook(before_call), schemathesis.hook(after_call)]  # global: call hooks have no other scope
    try:
        for event in schemathesis.engine.from_schema(schema).execute():
            if isinstance(event, events.ScenarioFinished):
                scenarios[f"{event.phase.value} {event.status.value}"] += 1
                failures += scenario_failures(event)
            elif isinstance(event, (events.NonFatalError, events.FatalError)):
                failures.append(f"schemathesis error: {event!r}")
    finally:
        for hook in hooks:
            schemathesis.hooks.unregister(hook)
    return failures, scenarios


# uvicorn's answer to a request it cannot parse (a generated `Content-Length: %m`, say): no route is reached.
UNPARSABLE = b"Invalid HTTP request received."


def scenario_failures(event: events.ScenarioFinished) -> list[str]:
    found = []
    for case_id, checks in event.recorder.checks.items():
        for check in checks:
            if check.failure_info is not None:
                interaction = event.recorder.interactions.get(case_id)
                if interaction and interaction.response and interaction.response.content == UNPARSABLE:
                    continue  # refused by the HTTP server before any function ran, as Azure's front end would
                status = interaction.response.status_code if interaction and interaction.response else None
                failure = check.failure_info.failure
                body = interaction.response.content[:200] if interaction and interaction.response else b""
                found.append(
                    f"{event.label} -> {status}: {check.name}: {failure.title}: {failure.message[:300]}\n"
                    f"  answered {body!r}\n  {check.failure_info.code_sample[:600]}"  # to reproduce it
                )
    return found


@pytest.mark.timeout(600)  # about a minute on two idle cores; the bound is for a machine others are loading
def test_every_phase_of_schemathesis_finds_no_5xx_and_no_answer_outside_the_spec(run: Run) -> None:
    started = time.monotonic()
    failures, scenarios = schemathesis_run(run)
    print(f"\n{run.summary()} in {time.monotonic() - started:.0f}s; scenarios {dict(sorted(scenarios.items()))}")
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(sorted(set(failures)) + run.problems)
    for phase in ("examples", "coverage", "fuzzing", "stateful"):
        assert run.by_phase[phase] > 0, f"the {phase} phase sent nothing"
    assert sum(run.by_phase.values()) >= 500


def test_the_spec_covers_every_route_the_host_serves(run: Run) -> None:
    """Each documented path answers something other than the host's 'no function serves this path'."""
    for template, item in SPEC["paths"].items():
        names = {"phone": "%2B14155550151", "sid": "SM" + "0" * 32, "index": "0", "desk": "billing", "session": "s1"}
        url = run.host.base_url + template.format(**names, staff="n1", id="SQ1", batch="B" + "0" * 24)
        method = sorted(m for m in item if m in ("get", "post", "put", "patch", "delete"))[0]
        r = httpx.request(method.upper(), url, timeout=10)
        assert r.status_code != 404 or r.json()["error"]["code"] != "not_found", template


def test_a_rate_limited_send_leaves_its_idempotency_key_unused(devhost: DevhostProcess) -> None:
    """429 says 'retry after N seconds'; the retry, with the same Idempotency-Key, must not be a 409."""
    desk = devhost.session()
    headers = {"Authorization": f"Bearer {desk['token']}"}
    url = f"{devhost.base_url}/api/send_sms"
    with httpx.Client(timeout=15) as client:
        for n in range(60):
            r = client.post(url, headers=headers, json={"to": "+14155550160", "body": f"filling the minute {n}"})
            if r.status_code == 429:
                break
            assert r.status_code == 201, r.text
        key = {**headers, "Idempotency-Key": f"retry-{secrets.token_hex(4)}"}
        first = client.post(url, headers=key, json={"to": "+14155550160", "body": "once the window frees"})
        again = client.post(url, headers=key, json={"to": "+14155550160", "body": "once the window frees"})
    assert first.status_code == 429, first.text
    assert (again.status_code, again.json()["error"]["code"]) == (429, "rate_limited"), again.text
