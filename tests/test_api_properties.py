"""Generated requests against the local host, checked against `docs/openapi.yaml`.

Some 1,500 requests, valid-ish and invalid (random JSON, wrong types, huge and unicode strings, lone surrogates,
garbage and forged tokens and signatures), across every operation. For each response:

* no 5xx (the store and broker are up throughout, so not even 503);
* the status is documented for the operation, and the content type, required headers and JSON body match it;
* a request answered with a 4xx made no Twilio REST call (the sandbox records every one).

Failures are collected rather than raised, so one run reports every distinct contract break with an example
request, and nothing is shrunk. The run prints one line with its size, by status.
"""

from __future__ import annotations

import json
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import jwt
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from tests.support.devhost import DevhostProcess
from tests.support.openapi import Contract

pytestmark = pytest.mark.slow

CONTRACT = Contract()
SID_ALPHABET = "0123456789abcdef"
FORM = "application/x-www-form-urlencoded"
HUGE_JSON = 70 * 1024  # over the functions' 64 KiB
HUGE_HOST = 1024 * 1024 + 16  # over the host's 1 MiB
STATUSES = ["queued", "sent", "delivered", "undelivered", "failed", "read", "accepted", "canceled"]


# Examples per phase: about 3,000 requests in all, some 30 s on two cores.
EXAMPLES = {"session": 350, "signout": 100, "send": 500, "webhook": 500, "read": 1000, "host": 80}


def settings_for(phase: str) -> Callable[[Any], Any]:
    return settings(
        max_examples=EXAMPLES[phase],
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )


# --- values -------------------------------------------------------------------------------------------------


# Any code point, lone surrogates included: only JSON can carry those (as \ud800 escapes).
def mostly(usual: st.SearchStrategy[Any], other: st.SearchStrategy[Any], share: float = 0.75) -> st.SearchStrategy[Any]:
    """`usual` for about `share` of the examples, `other` for the rest."""
    return st.integers(0, 99).flatmap(lambda n: usual if n < share * 100 else other)


surrogates = st.text(st.characters(categories=["Cs"]), min_size=1, max_size=3)
any_text = st.one_of(st.text(st.characters(exclude_categories=()), max_size=40), surrogates)
# What a URL or a header can carry.
plain_text = st.text(max_size=40)
# What a path segment can carry through the local host: its `/api/{path:path}` route does not match a newline,
# so such a path falls through to the static files' text/plain 404 (a devhost quirk, not the product's).
segment_text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\n"), max_size=40)
# Digits to str.isdigit() / isalnum(), not to int().
unicode_digits = st.sampled_from(["²", "١٢", "߁", "𝟗", "Ⅻ", "½", "٣٤٥", "¹⁰"])
scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70), st.floats(), any_text)
random_json = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(plain_text, inner, max_size=4), max_leaves=8
)
not_a_string = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.lists(scalars))
us_numbers = st.integers(min_value=100, max_value=199).map(lambda n: f"+1415555{n:04d}")
foreign_numbers = st.sampled_from(["+447700900123", "+33612345678", "+61412345678", "+819012345678"])
odd_numbers = st.sampled_from(
    ["4155550101", "+1", "+", "+999999999999999", "+14155550101x", " +1 415 555 0101 ", "tel:+14155550101", "0" * 300]
)
json_content_types = mostly(
    st.sampled_from(["application/json", "application/json; charset=utf-8", "APPLICATION/JSON"]),
    st.sampled_from(["text/plain", FORM, "application/jsonx", "", None]),
    0.8,
)


def sid(prefix: str = "SM") -> str:
    return prefix + "".join(secrets.choice(SID_ALPHABET) for _ in range(32))


valid_sids = st.builds(
    lambda prefix, rest: prefix + rest,
    st.sampled_from(["SM", "MM"]),
    st.text(alphabet=SID_ALPHABET, min_size=32, max_size=32),
)
sids = st.one_of(
    valid_sids,
    st.text(alphabet="ABCDEFabcdef0123456789", min_size=30, max_size=36),
    segment_text,
)


def header_bytes(value: str) -> bytes:
    """What HTTP/1.1 lets a client put in a header value (h11 refuses controls and surrounding whitespace)."""
    raw = value.encode("utf-8", "replace")
    return bytes(b for b in raw if b == 9 or 32 <= b != 127).strip(b" \t")


@dataclass
class Desk:
    web_app_id: str
    token: str
    alias: str


@dataclass
class Outcome:
    status: int
    body: Any


# --- the run: sends, checks, counts -------------------------------------------------------------------------


@dataclass
class Run:
    host: DevhostProcess
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30))
    by_status: Counter[int] = field(default_factory=Counter)
    by_operation: Counter[str] = field(default_factory=Counter)
    by_outcome: Counter[str] = field(default_factory=Counter)
    problems: dict[str, list[str]] = field(default_factory=dict)
    twilio_calls: int = 0
    clients: dict[str, httpx.Client] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.twilio_calls = len(self.calls())

    def calls(self) -> list[dict[str, Any]]:
        r = self.send("GET", f"{self.host.sandbox_url}/calls")
        r.raise_for_status()
        calls: list[dict[str, Any]] = r.json()
        return calls

    def from_address(self, address: str | None) -> httpx.Client:
        if address is None:
            return self.client
        if address not in self.clients:
            self.clients[address] = httpx.Client(timeout=30, transport=httpx.HTTPTransport(local_address=address))
        return self.clients[address]

    def close(self) -> None:
        for client in [self.client, *self.clients.values()]:
            client.close()

    def send(self, method: str, url: str, *, source: str | None = None, **kwargs: Any) -> httpx.Response:
        client = self.from_address(source)
        try:
            return client.request(method, url, **kwargs)
        except httpx.TransportError:
            # After a 500 the server closes the kept-alive connection; the next request on it is reset unsent.
            return client.request(method, url, **kwargs)

    def problem(self, key: str, example: str) -> None:
        examples = self.problems.setdefault(key, [])
        if len(examples) < 2 and example not in examples:
            examples.append(example)

    def request(
        self,
        method: str,
        template: str,
        path: dict[str, str] | None = None,
        *,
        query: dict[str, str] | None = None,
        headers: Mapping[str, str | None] | None = None,
        content: bytes | None = None,
        source: str | None = None,
        expect: set[int] | None = None,
    ) -> Outcome:
        """Send one request, check it against the contract, and return what came back."""
        url_path = template
        for name, value in (path or {}).items():
            url_path = url_path.replace("{" + name + "}", segment(value))
        url = self.host.base_url + url_path
        if query:
            url += "?" + urlencode(query)
        sent_headers = {k.encode(): header_bytes(v) for k, v in (headers or {}).items() if v is not None}
        r = self.send(method, url, headers=sent_headers, content=content, source=source)
        operation = f"{method} {template}"
        self.by_status[r.status_code] += 1
        self.by_operation[operation] += 1
        self.by_outcome[f"{operation} {r.status_code}"] += 1
        example = describe(method, url, sent_headers, content, r)
        if r.status_code >= 500:
            self.problem(f"{operation} -> {r.status_code}", example)
        else:
            for problem in CONTRACT.check(method, template, r.status_code, r.headers, r.content):
                self.problem(f"{operation} -> {r.status_code}: {problem}", example)
        if expect is not None and r.status_code not in expect:
            self.problem(f"{operation} -> {r.status_code}, expected one of {sorted(expect)}", example)
        self.check_twilio(operation, r, example)
        try:
            body = r.json() if r.headers.get("content-type", "").startswith("application/json") else None
        except ValueError:
            body = None
        return Outcome(r.status_code, body)

    def check_twilio(self, operation: str, r: httpx.Response, example: str) -> None:
        calls = self.calls()
        new, self.twilio_calls = calls[self.twilio_calls :], len(calls)
        if not new or not 400 <= r.status_code < 500:
            return
        code = error_code(r)
        # A media 404 may be Twilio's own answer for the attachment; a 409 opted_out may be Twilio's 21610.
        media_fetch = operation.startswith("GET /api/media/") and all(c["method"] == "GET" for c in new)
        twilio_opt_out = operation == "POST /api/send_sms" and code == "opted_out" and len(new) == 1
        if not (media_fetch or twilio_opt_out):
            self.problem(f"{operation} -> {r.status_code} ({code}) made {len(new)} Twilio call(s)", example)

    def summary(self) -> str:
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(self.by_status.items()))
        return (
            f"api properties: {sum(self.by_status.values())} requests over {len(self.by_operation)} operations; "
            f"by status {{{statuses}}}"
        )


def segment(value: str) -> str:
    """One path segment, dots included, so no client or proxy resolves `..` before the host sees it."""
    return quote(value, safe="").replace(".", "%2E")


def error_code(r: httpx.Response) -> str | None:
    try:
        value = r.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None
    return str(value)


def describe(method: str, url: str, headers: dict[bytes, bytes], content: bytes | None, r: httpx.Response) -> str:
    shown = {k: (v[:24] + b"..." if k.lower() == b"authorization" and len(v) > 24 else v) for k, v in headers.items()}
    body = (content or b"")[:200] + (b"..." if content and len(content) > 200 else b"")
    return f"{method} {url[:300]} headers={shown} body={body!r} -> {r.status_code} {r.content[:200]!r}"


# --- the world the requests act on --------------------------------------------------------------------------


@dataclass
class World:
    host: DevhostProcess
    run: Run
    desks: list[Desk]
    bad_tokens: list[str]
    signed_out: Desk
    phones: list[str]
    unrouted_phones: list[str]
    message_sids: list[str]
    media_sid: str
    cursors: list[str] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)
    addresses: Iterator[str] = field(default_factory=lambda: iter([]))

    def next_address(self) -> str:
        return next(self.addresses)


def forged_tokens(host: DevhostProcess, desk: Desk) -> list[str]:
    now = int(time.time())
    claims = {"sub": desk.web_app_id, "iat": now, "exp": now + 3600, "subs": [], "pub": []}
    header, payload, signature = desk.token.split(".")
    return [
        jwt.encode({**claims, "iat": now - 7200, "exp": now - 3600}, host.signing_key, algorithm="HS256"),
        jwt.encode({**claims, "sub": "relay-service"}, host.signing_key, algorithm="HS256"),
        jwt.encode({**claims, "sub": ""}, host.signing_key, algorithm="HS256"),
        jwt.encode({k: v for k, v in claims.items() if k != "iat"}, host.signing_key, algorithm="HS256"),
        jwt.encode(claims, "not-the-signing-key-" + "x" * 32, algorithm="HS256"),
        jwt.encode(claims, host.signing_key, algorithm="HS512"),
        jwt.encode(claims, "", algorithm="none"),
        f"{header}.{payload}.{signature[::-1]}",
        f"{header}.{payload[:-4]}.{signature}",
        desk.token[:-1],
        desk.token + "x",
        f"{header}.{payload}",
        "",
        "null",
    ]


def signed_webhook(host: DevhostProcess, route: str, params: dict[str, str]) -> dict[str, str]:
    url = f"{host.base_url}/api/{route}"
    return {"X-Twilio-Signature": RequestValidator(host.auth_token).compute_signature(url, params)}


def build_world(host: DevhostProcess) -> World:
    run = Run(host)
    desks = []
    for _ in range(8):
        s = host.session()
        desks.append(Desk(s["webAppId"], s["token"], s["alias"]))
    gone = host.session()
    signed_out = Desk(gone["webAppId"], gone["token"], gone["alias"])
    run.request("DELETE", "/api/session", headers={"Authorization": f"Bearer {signed_out.token}"}, expect={204})
    bearer = {"Authorization": f"Bearer {desks[0].token}", "Content-Type": "application/json"}

    phones, sids = [], []
    for n in range(4):
        phone = f"+1415555{150 + n:04d}"
        body = json.dumps({"to": phone, "body": f"hello {n}"}).encode()
        sent = run.request("POST", "/api/send_sms", headers=bearer, content=body, expect={201})
        phones.append(phone)
        sids.append(str(sent.body["sid"]))
    reply = httpx.post(
        f"{host.sandbox_url}/phones/{phones[0]}/reply", json={"body": "photo", "image": True}, timeout=20
    )
    reply.raise_for_status()
    media_sid = str(reply.json()["sid"])
    sids.append(media_sid)

    unrouted = [f"+1415555{170 + n:04d}" for n in range(6)]
    for phone in unrouted:
        params = {"MessageSid": sid(), "From": phone, "To": "+14155550100", "Body": "new here", "NumMedia": "0"}
        run.request(
            "POST",
            "/api/receive_sms",
            headers={**signed_webhook(host, "receive_sms", params), "Content-Type": FORM},
            content=urlencode(params).encode(),
            expect={200},
        )
        sids.append(params["MessageSid"])
    # Ten wrong access codes from 127.0.0.2 block that address for 15 minutes: its requests then get 429.
    for _ in range(11):
        run.request(
            "POST",
            "/api/session",
            headers={"Content-Type": "application/json"},
            content=b'{"accessCode": "wrong"}',
            source="127.0.0.2",
            expect={401, 429},
        )
    addresses = (f"127.0.{a}.{b}" for a in range(1, 250) for b in range(2, 250) for _ in range(5))
    return World(
        host=host,
        run=run,
        desks=desks,
        bad_tokens=forged_tokens(host, desks[1]),
        signed_out=signed_out,
        phones=[*phones, "+14155550100"],
        unrouted_phones=unrouted,
        message_sids=sids,
        media_sid=media_sid,
        addresses=addresses,
    )


@pytest.fixture(scope="module")
def world(devhost: DevhostProcess) -> Iterator[World]:
    w = build_world(devhost)
    yield w
    w.run.close()


# --- strategies that need the world -------------------------------------------------------------------------


def authorization(w: World) -> st.SearchStrategy[str | None]:
    live = st.sampled_from(w.desks).map(lambda d: f"Bearer {d.token}")
    return mostly(live, other_authorization(w), 0.7)


def other_authorization(w: World) -> st.SearchStrategy[str | None]:
    return st.one_of(
        st.none(),
        st.sampled_from(w.bad_tokens).map(lambda t: f"Bearer {t}"),
        st.just(f"Bearer {w.signed_out.token}"),
        st.sampled_from(w.desks).map(lambda d: f"bearer   {d.token}  "),
        st.sampled_from(w.desks).map(lambda d: d.token),
        st.sampled_from(w.desks).map(lambda d: f"Basic {d.token}"),
        plain_text,
        plain_text.map(lambda t: f"Bearer {t}"),
        st.just("Bearer"),
        st.just("Bearer " + "A" * 9000),
    )


@st.composite
def json_body(draw: st.DrawFn, objects: st.SearchStrategy[dict[str, Any]]) -> tuple[bytes, str | None]:
    """A body for a JSON endpoint: mostly a (perhaps wrong) object, sometimes not JSON at all."""
    content_type = draw(json_content_types)
    kind = draw(st.sampled_from(["object"] * 10 + ["json", "bytes", "utf8", "empty", "deep", "huge", "host"]))
    if kind == "object":
        return json.dumps(draw(objects)).encode(), content_type
    if kind == "json":
        return json.dumps(draw(random_json)).encode(), content_type
    if kind == "bytes":
        return draw(st.binary(max_size=200)), content_type
    if kind == "utf8":
        return b'{"to": "\xff\xfe", "body": "\xc3"}', content_type
    if kind == "empty":
        return b"", content_type
    if kind == "deep":
        depth = draw(st.integers(min_value=500, max_value=30_000))
        return b"[" * depth + b"]" * depth, content_type
    if kind == "huge":
        return json.dumps({"body": "x" * HUGE_JSON, "accessCode": "y"}).encode(), content_type
    return b'{"body": "' + b"x" * HUGE_HOST + b'"}', content_type


def with_extra(objects: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    extra = st.dictionaries(plain_text, random_json, max_size=3)
    return st.builds(lambda base, more: {**more, **base}, objects, extra)


def session_objects(w: World) -> st.SearchStrategy[dict[str, Any]]:
    code = st.one_of(
        st.just(w.host.access_code),
        st.just(w.host.access_code),
        any_text,
        surrogates,
        surrogates.map(lambda t: w.host.access_code + t),
        not_a_string,
        st.just(w.host.access_code + " "),
        st.just(w.host.access_code.upper()),
        st.just("x" * 5000),
    )
    web_app_id = st.one_of(st.sampled_from([d.web_app_id for d in w.desks]), any_text, not_a_string)
    token = st.one_of(
        st.sampled_from([d.token for d in w.desks] + w.bad_tokens + [w.signed_out.token]), any_text, not_a_string
    )
    desk = st.one_of(st.sampled_from(["reception", "billing", "unrouted", "nowhere"]), any_text, not_a_string)
    name = st.one_of(st.just("Maria"), st.just("Maria"), any_text, surrogates, not_a_string, st.just("x" * 41))
    base = st.fixed_dictionaries({"accessCode": code, "staffName": name}, optional={"desk": desk, "token": token})
    base = mostly(base, st.fixed_dictionaries({}, optional={"desk": desk, "webAppId": web_app_id}), 0.85)
    return with_extra(base)


def send_objects() -> st.SearchStrategy[dict[str, Any]]:
    to = st.one_of(us_numbers, us_numbers, us_numbers, foreign_numbers, odd_numbers, any_text, not_a_string)
    body = st.one_of(
        st.just("Your appointment is tomorrow at 10."),
        st.text(min_size=1, max_size=60).filter(lambda s: s.strip() != ""),
        any_text,
        st.sampled_from(["", "   ", "\n\t", "x" * 1601, "é" * 1600, "😀" * 1600]),
        not_a_string,
    )
    url = st.one_of(
        st.just("https://example.com/a.png"),
        st.just("http://example.com/a.png"),
        st.just("https://" + "x" * 2000),
        any_text,
        not_a_string,
    )
    media = st.one_of(
        st.none(),
        st.lists(url, max_size=3),
        st.lists(st.just("https://example.com/a.png"), min_size=11, max_size=12),
        random_json,
    )
    confirm = st.one_of(st.booleans(), not_a_string, any_text)
    base = st.fixed_dictionaries({"to": to, "body": body}, optional={"mediaUrl": media, "confirm": confirm})
    return st.one_of(with_extra(base), st.dictionaries(plain_text, random_json, max_size=4))


def phone_params(w: World) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(w.phones),
        st.sampled_from(w.phones),
        st.sampled_from(w.unrouted_phones),
        us_numbers,
        foreign_numbers,
        odd_numbers,
        segment_text,
        st.sampled_from(["a/b", "..", ".", "%2B14155550151", "+1415555%30151", "+14155550151/claim"]),
    )


def webhook_params(w: World, route: str) -> st.SearchStrategy[dict[str, str]]:
    phone = st.one_of(st.sampled_from(w.phones + w.unrouted_phones), us_numbers, plain_text)
    common = {
        "MessageSid": st.one_of(valid_sids, st.sampled_from(w.message_sids), plain_text),
        "AccountSid": st.just(w.host.account_sid),
    }
    if route == "receive_sms":
        fields = {
            **common,
            "From": phone,
            "To": st.one_of(st.just("+14155550100"), plain_text),
            "Body": st.one_of(
                plain_text,
                st.sampled_from(["STOP", "start", "HELP", " stop ", "#ZZ hi"]),
                st.sampled_from(w.desks).map(lambda d: f"{d.alias} for you"),
            ),
            "NumMedia": st.one_of(st.sampled_from(["0", "1", "2", "11", "-1", "x", ""]), unicode_digits, plain_text),
            "MediaUrl0": st.one_of(st.just("https://api.twilio.com/2010-04-01/x"), plain_text),
            "MediaContentType0": st.just("image/png"),
            "MessagingServiceSid": plain_text,
            "OptOutType": st.sampled_from(["STOP", "START", "HELP", ""]),
        }
        required: tuple[str, ...] = ("MessageSid", "From", "To", "Body")
    else:
        fields = {
            **common,
            "MessageStatus": st.one_of(st.sampled_from(STATUSES), plain_text),
            "SmsStatus": st.one_of(st.sampled_from(STATUSES), plain_text),
            "ErrorCode": st.one_of(st.sampled_from(["30003", "30007"]), plain_text),
            "ErrorMessage": plain_text,
        }
        required = ("MessageSid", "MessageStatus")
    drop = st.sets(st.sampled_from(required), max_size=1)
    extra = st.dictionaries(plain_text, plain_text, max_size=3)
    return st.builds(
        lambda base, gone, more: {**more, **{k: v for k, v in base.items() if k not in gone}},
        st.fixed_dictionaries(
            {k: v for k, v in fields.items() if k in required},
            optional={k: v for k, v in fields.items() if k not in required},
        ),
        drop,
        extra,
    )


# --- the properties -----------------------------------------------------------------------------------------


def session_requests(w: World) -> None:
    run = w.run

    @settings_for("session")
    @given(data=st.data())
    def post(data: st.DataObject) -> None:
        content, content_type = data.draw(json_body(session_objects(w)))
        auth = data.draw(st.one_of(st.none(), st.none(), st.none(), authorization(w)))
        blocked = data.draw(st.integers(0, 9)) == 0
        headers = {
            "Content-Type": content_type,
            "Authorization": auth,
            "X-Forwarded-For": data.draw(st.one_of(st.none(), st.just("203.0.113.9"), plain_text)),
        }
        # 127.0.0.2 is blocked for wrong access codes: without a token it never gets a session.
        expect = {400, 413, 415, 429} if blocked and auth is None else None
        source = "127.0.0.2" if blocked else w.next_address()
        run.request("POST", "/api/session", headers=headers, content=content, source=source, expect=expect)

    @settings_for("signout")
    @given(data=st.data())
    def delete(data: st.DataObject) -> None:
        fresh = data.draw(st.booleans())
        if fresh:
            s = run.request(
                "POST",
                "/api/session",
                headers={"Content-Type": "application/json"},
                content=json.dumps({"accessCode": w.host.access_code, "staffName": "Maria"}).encode(),
                source=w.next_address(),
                expect={200},
            ).body
            auth: str | None = f"Bearer {s['token']}"
        else:
            # Never the shared desks' live tokens: signing them out would end the run's desks.
            auth = data.draw(
                other_authorization(w).filter(lambda a: a is None or not any(d.token in a for d in w.desks))
            )
        # DELETE ignores any body; drawing one also keeps Hypothesis from treating fresh examples as duplicates.
        content, content_type = data.draw(json_body(st.dictionaries(plain_text, random_json, max_size=2)))
        headers = {"Authorization": auth, "Content-Type": content_type}
        out = run.request(
            "DELETE", "/api/session", headers=headers, content=content, expect={204, 413} if fresh else None
        )
        if fresh and out.status == 204:
            run.request("GET", "/api/conversations", headers={"Authorization": auth}, expect={401})

    post()
    delete()


def send_requests(w: World) -> None:
    run = w.run

    @settings_for("send")
    @given(data=st.data())
    def send(data: st.DataObject) -> None:
        content, content_type = data.draw(json_body(send_objects()))
        key = data.draw(
            st.one_of(st.none(), st.none(), st.none(), plain_text, st.just("repeat-me"), st.just("k" * 300))
        )
        headers = {"Content-Type": content_type, "Authorization": data.draw(authorization(w)), "Idempotency-Key": key}
        run.request("POST", "/api/send_sms", headers=headers, content=content)

    send()


def webhook_requests(w: World) -> None:
    run = w.run

    @settings_for("webhook")
    @given(data=st.data())
    def webhook(data: st.DataObject) -> None:
        route = data.draw(st.sampled_from(["receive_sms", "sms_status"]))
        params = data.draw(webhook_params(w, route))
        signing = data.draw(st.sampled_from(["valid", "valid", "valid", "none", "random", "wrong-token", "wrong-url"]))
        headers: dict[str, str | None] = {
            "Content-Type": data.draw(
                st.sampled_from(
                    [FORM] * 6 + [f"{FORM}; charset=utf-8", "application/json", "multipart/form-data", "text/plain", ""]
                )
            )
        }
        if signing == "valid":
            headers.update(signed_webhook(w.host, route, params))
        elif signing == "random":
            headers["X-Twilio-Signature"] = data.draw(st.one_of(plain_text, st.just("a" * 28 + "=")))
        elif signing == "wrong-token":
            url = f"{w.host.base_url}/api/{route}"
            headers["X-Twilio-Signature"] = RequestValidator("f" * 32).compute_signature(url, params)
        elif signing == "wrong-url":
            other = "sms_status" if route == "receive_sms" else "receive_sms"
            headers.update(signed_webhook(w.host, other, params))
        headers["X-Twilio-Webhooks-Signature-Settings"] = data.draw(
            st.one_of(st.none(), st.none(), st.none(), st.just("algorithm=HMAC_SHA256"), plain_text)
        )
        encoding = data.draw(
            st.sampled_from(["form"] * 6 + ["bytes", "non-ascii", "bad-percent", "many", "huge", "host"])
        )
        content = {
            "form": lambda: urlencode(params).encode(),
            "bytes": lambda: data.draw(st.binary(max_size=200)),
            "non-ascii": lambda: urlencode(params).encode() + "&Body=é".encode(),
            "bad-percent": lambda: urlencode(params).encode() + b"&Body=%ff%fe",
            "many": lambda: "&".join(f"f{i}=1" for i in range(600)).encode(),
            "huge": lambda: urlencode({**params, "Body": "x" * HUGE_JSON}).encode(),
            "host": lambda: b"Body=" + b"x" * HUGE_HOST,
        }[encoding]()
        forged = signing != "valid" or encoding != "form"
        allowed = {400, 403, 413, 415} if forged else None
        run.request("POST", f"/api/{route}", headers=headers, content=content, expect=allowed)

    webhook()


def reading_requests(w: World) -> None:
    run = w.run
    cursor = st.one_of(
        st.none(),
        st.just(""),
        plain_text,
        st.sampled_from(["1e400:x", "nan", "-1:SM", "9" * 100, "1:" + "z" * 200, "\x00", "1:SM\x7f"]),
        st.integers(min_value=0).map(str),
        unicode_digits,
    )
    limit = st.one_of(
        st.none(), st.just(""), st.integers(-5, 150).map(str), unicode_digits, plain_text, st.just("9" * 30)
    )
    after = st.one_of(
        st.none(),
        st.just(""),
        st.integers(min_value=0, max_value=2**70).map(str),
        st.sampled_from(["9223372036854775808", "1" * 64]),
        unicode_digits,
        plain_text,
        st.just("a" * 65),
        st.just("-"),
    )
    index = st.one_of(st.sampled_from(["0", "1", "00", "10"]), unicode_digits, segment_text, st.just("9" * 40))

    @settings_for("read")
    @given(data=st.data())
    def read(data: st.DataObject) -> None:
        auth = {"Authorization": data.draw(authorization(w))}
        operation = data.draw(
            st.sampled_from(
                [
                    "list",
                    "history",
                    "history",
                    "history",
                    "claim",
                    "read",
                    "unrouted",
                    "feed",
                    "feed",
                    "media",
                    "media",
                    "health",
                ]
            )
        )
        if operation == "list":
            run.request("GET", "/api/conversations", headers=auth)
        elif operation == "unrouted":
            run.request("GET", "/api/unrouted", headers=auth)
        elif operation == "health":
            run.request(
                "GET", "/api/health", query=data.draw(st.dictionaries(plain_text, plain_text, max_size=2)), expect={200}
            )
        elif operation == "history":
            query = {}
            before = data.draw(st.one_of(cursor, st.sampled_from(w.cursors or [""])))
            if before is not None:
                query["before"] = before
            if (size := data.draw(limit)) is not None:
                query["limit"] = size
            out = run.request(
                "GET",
                "/api/conversations/{phone}/messages",
                {"phone": data.draw(phone_params(w))},
                query=query,
                headers=auth,
            )
            if out.status == 200 and out.body.get("next"):
                w.cursors.append(out.body["next"])
        elif operation == "claim":
            run.request("POST", "/api/conversations/{phone}/claim", {"phone": data.draw(phone_params(w))}, headers=auth)
        elif operation == "read":
            run.request("POST", "/api/conversations/{phone}/read", {"phone": data.draw(phone_params(w))}, headers=auth)
        elif operation == "feed":
            value = data.draw(st.one_of(after, st.sampled_from(w.event_ids or ["1"])))
            out = run.request("GET", "/api/messages", query={} if value is None else {"after": value}, headers=auth)
            if out.status == 200 and out.body["events"]:
                w.event_ids.append(out.body["events"][0]["id"])
        else:
            if data.draw(st.booleans()):
                # The desk that owns the MMS and the sent messages, asking for them.
                auth = {"Authorization": f"Bearer {w.desks[0].token}"}
                message = data.draw(mostly(st.just(w.media_sid), st.sampled_from(w.message_sids), 0.6))
                number = data.draw(mostly(st.just("0"), index, 0.5))
            else:
                message = data.draw(st.one_of(st.sampled_from(w.message_sids), sids))
                number = data.draw(index)
            run.request("GET", "/api/media/{sid}/{index}", {"sid": message, "index": number}, headers=auth)

    read()


def host_level_requests(w: World) -> None:
    """Methods a path does not serve get 405 with Allow; unknown paths 404; both in the error envelope."""
    run = w.run
    paths = [(template, CONTRACT.methods(template)) for template in CONTRACT.spec["paths"]]

    @settings_for("host")
    @given(data=st.data())
    def others(data: st.DataObject) -> None:
        template, served = data.draw(st.sampled_from(paths))
        method = data.draw(st.sampled_from(sorted({"GET", "POST", "PUT", "PATCH", "DELETE"} - served)))
        names = {"phone": "%2B14155550151", "sid": w.media_sid, "index": "0", "desk": "billing", "session": "s1"}
        url = w.host.base_url + template.format(**names, staff="n1", id="SQ1")
        r = run.send(method, url, headers={"Authorization": f"Bearer {w.desks[0].token}"})
        run.by_status[r.status_code] += 1
        run.by_operation[f"{method} {template} (not served)"] += 1
        example = describe(method, url, {}, None, r)
        if r.status_code != 405 or set(r.headers.get("allow", "").split(", ")) != served:
            run.problem(f"{method} {template} -> {r.status_code}, expected 405 Allow: {sorted(served)}", example)
        for problem in CONTRACT.check_named("MethodNotAllowed", r.headers, r.content):
            run.problem(f"{method} {template} -> 405: {problem}", example)
        run.check_twilio(f"{method} {template}", r, example)

        served_names = {template.split("/")[2] for template in CONTRACT.spec["paths"]}
        name = data.draw(segment_text.filter(lambda p: "/" not in p and p not in served_names))
        unknown = "/api/" + segment(name)
        r = run.send("GET", w.host.base_url + unknown)
        run.by_status[r.status_code] += 1
        run.by_operation["GET /api/{unknown}"] += 1
        if r.status_code != 404:
            run.problem(f"GET {unknown} -> {r.status_code}, expected 404", describe("GET", unknown, {}, None, r))
        for problem in CONTRACT.check_named("NoRoute", r.headers, r.content):
            run.problem(f"GET /api/{{unknown}} -> 404: {problem}", describe("GET", unknown, {}, None, r))

    others()


def test_every_response_is_in_the_contract(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    for phase in (session_requests, send_requests, webhook_requests, reading_requests, host_level_requests):
        phase(world)
    run = world.run
    with capsys.disabled():
        print(f"\n{run.summary()} in {time.monotonic() - started:.0f}s")
    assert sum(run.by_status.values()) >= 2500
    report = "\n".join(f"* {key}\n    " + "\n    ".join(examples) for key, examples in sorted(run.problems.items()))
    outcomes = ", ".join(f"{k}: {n}" for k, n in sorted(run.by_outcome.items()))
    assert not run.problems, f"{len(run.problems)} contract breaks:\n{report}\n(responses: {outcomes})"


def test_the_contract_covers_every_route_the_host_serves(devhost: DevhostProcess) -> None:
    """Each documented path answers something other than the host's 'no function serves this path'."""
    documented = {template for _, template in CONTRACT.operations()}
    for template in documented:
        names = {"phone": "%2B14155550151", "sid": sid(), "index": "0", "desk": "billing", "session": "s1"}
        url = devhost.base_url + template.format(**names, staff="n1", id="SQ1")
        r = httpx.request(sorted(CONTRACT.methods(template))[0], url, timeout=10)
        assert error_code(r) != "not_found", template


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
    assert (again.status_code, error_code(again)) == (429, "rate_limited"), again.text
