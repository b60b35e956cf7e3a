"""End-to-end tests of the web client (webclient/) in real headless Chromium.

Two browser contexts play two front desks against the local devhost; patients
reply through the Twilio sandbox. Every wait is bounded (expect timeouts).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.tools import require_tool

playwright_sync = pytest.importorskip("playwright.sync_api")
from playwright.sync_api import Browser, Page, ViewportSize, expect, sync_playwright  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.timeout(90)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
NARROW: ViewportSize = {"width": 375, "height": 740}
IMG_DIR = Path(__file__).resolve().parents[1] / "docs" / "img"
XSS = "<img src=x onerror=alert(1)>"

expect.set_options(timeout=10_000)


@dataclass
class Desk:
    page: Page
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def conv(self, phone: str):
        return self.page.locator(f'#conv-list li[data-phone="{phone}"]')

    def unrouted(self, phone: str):
        return self.page.locator(f'#unrouted-list li[data-phone="{phone}"]')

    def bubble(self, text: str, exact: bool = True):
        """The message whose body is `text` (or starts with it when exact=False)."""
        pattern = re.compile("^" + re.escape(text) + ("$" if exact else ""))
        return self.page.locator("#message-list li.msg").filter(has=self.page.locator(".body").filter(has_text=pattern))

    def expect_connected(self, timeout: int = 10_000) -> None:
        expect(self.page.locator("#conn-state")).to_have_attribute("data-state", "connected", timeout=timeout)

    def open(self, phone: str) -> None:
        self.conv(phone).locator("button").click()
        expect(self.page.locator("#conversation")).to_have_attribute("data-phone", phone)

    def send_new(self, number_as_typed: str, e164: str, text: str) -> None:
        """Text a patient through the New message dialog."""
        page = self.page
        page.click("#new-message-btn")
        expect(page.locator("#new-dialog")).to_be_visible()
        page.fill("#new-phone", number_as_typed)
        expect(page.locator("#new-phone-status")).to_contain_text("Will text")
        page.fill("#new-text", text)
        page.click("#new-send")
        expect(page.locator("#new-dialog")).to_be_hidden()
        expect(page.locator("#conversation")).to_have_attribute("data-phone", e164)
        expect(self.bubble(text)).to_be_visible()

    def send_compose(self, text: str) -> None:
        self.page.fill("#compose-text", text)
        self.page.press("#compose-text", "Enter")
        expect(self.bubble(text)).to_be_visible()
        expect(self.page.locator("#compose-text")).to_have_value("")


def patient_replies(devhost: Any, phone: str, body: str, image: bool = False) -> None:
    payload: dict[str, Any] = {"body": body}
    if image:
        payload["image"] = True
    r = httpx.post(f"{devhost.sandbox_url}/phones/{phone}/reply", json=payload, timeout=10)
    assert r.status_code < 300, r.text


def phone_received(devhost: Any, phone: str, text: str, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = httpx.get(f"{devhost.sandbox_url}/phones/{phone}/messages", timeout=5)
        if r.status_code == 200 and text in json.dumps(r.json(), ensure_ascii=False):
            return True
        time.sleep(0.2)
    return False


# ---- fixtures --------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    require_tool(os.path.exists(CHROMIUM), f"{CHROMIUM} is needed for the web client tests")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


def open_desk(browser: Browser, devhost: Any) -> Desk:
    context = browser.new_context(viewport=VIEWPORT, locale="en-US", timezone_id="America/Los_Angeles")
    context.set_default_timeout(10_000)
    page = context.new_page()
    desk = Desk(page)

    def on_dialog(d: Any) -> None:
        desk.dialogs.append(d.message)
        d.dismiss()

    page.on("dialog", on_dialog)
    page.on("pageerror", lambda e: desk.errors.append(str(e)))

    def on_console(msg: Any) -> None:
        if msg.type == "error" and "Content Security Policy" in msg.text:
            desk.errors.append(msg.text)

    page.on("console", on_console)
    response = page.goto(f"{devhost.base_url}/?code={devhost.access_code}")
    assert response is not None and "script-src 'self'" in (response.headers.get("content-security-policy") or "")
    desk.expect_connected()
    assert "code=" not in page.url, "the access code must be stripped from the address bar"
    expect(page.locator("#desk-alias")).not_to_be_empty()
    expect(page.locator("#desk-hint")).to_contain_text("patients can start a reply with #")
    return desk


@pytest.fixture(scope="module")
def desk_a(browser: Browser, devhost: Any) -> Iterator[Desk]:
    desk = open_desk(browser, devhost)
    yield desk
    assert not desk.errors, desk.errors
    desk.page.context.close()


@pytest.fixture(scope="module")
def desk_b(browser: Browser, devhost: Any) -> Iterator[Desk]:
    desk = open_desk(browser, devhost)
    yield desk
    assert not desk.errors, desk.errors
    desk.page.context.close()


# ---- tests -----------------------------------------------------------------


def test_sign_in_errors_and_sign_out(browser: Browser, devhost: Any) -> None:
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(10_000)
    try:
        page = context.new_page()
        page.goto(f"{devhost.base_url}/")
        expect(page.locator("#signin")).to_be_visible()
        expect(page.get_by_label("Access code")).to_be_focused()
        page.get_by_label("Access code").fill("not-the-code")
        page.keyboard.press("Enter")
        expect(page.locator("#signin-error")).to_contain_text("not valid")
        page.get_by_label("Access code").fill(devhost.access_code)
        page.get_by_role("button", name="Sign in").click()
        expect(page.locator("#conn-state")).to_have_attribute("data-state", "connected")
        assert page.evaluate("localStorage.getItem('smsrelay.session')") is not None
        page.get_by_role("button", name="Sign out").click()
        expect(page.locator("#signin")).to_be_visible()
        expect(page.locator("#app")).to_be_hidden()
        assert page.evaluate("localStorage.getItem('smsrelay.session')") is None
        assert page.evaluate("localStorage.getItem('smsrelay.accessCode')") is None
    finally:
        context.close()


def test_two_desks_each_see_only_their_own_conversation(desk_a: Desk, desk_b: Desk, devhost: Any) -> None:
    assert desk_a.page.locator("#desk-alias").inner_text() != desk_b.page.locator("#desk-alias").inner_text()

    desk_a.send_new("(415) 555-0101", "+14155550101", "Hello from desk A")
    desk_b.send_new("+1 415 555 0102", "+14155550102", "Hello from desk B")

    for desk, text in ((desk_a, "Hello from desk A"), (desk_b, "Hello from desk B")):
        expect(desk.bubble(text).locator(".status")).to_have_text(re.compile("delivered"))
    assert phone_received(devhost, "+14155550101", "Hello from desk A")
    assert phone_received(devhost, "+14155550102", "Hello from desk B")

    patient_replies(devhost, "+14155550101", "Reply from patient one")
    patient_replies(devhost, "+14155550102", "Reply from patient two")

    expect(desk_a.bubble("Reply from patient one")).to_be_visible()
    expect(desk_b.bubble("Reply from patient two")).to_be_visible()
    expect(desk_a.bubble("Reply from patient one")).to_have_class(re.compile(r"\binbound\b"))
    expect(desk_a.bubble("Hello from desk A")).to_have_class(re.compile(r"\boutbound\b"))
    expect(desk_a.conv("+14155550101")).to_contain_text("Reply from patient one")

    # Each desk sees only its own conversation.
    expect(desk_a.conv("+14155550102")).to_have_count(0)
    expect(desk_b.conv("+14155550101")).to_have_count(0)
    expect(desk_a.page.locator("body")).not_to_contain_text("Reply from patient two")
    expect(desk_b.page.locator("body")).not_to_contain_text("Reply from patient one")


def test_stranger_goes_to_new_conversations_and_can_be_claimed(desk_a: Desk, desk_b: Desk, devhost: Any) -> None:
    patient_replies(devhost, "+14155550103", "Hi, is this the clinic?")
    for desk in (desk_a, desk_b):
        expect(desk.unrouted("+14155550103")).to_be_visible()
        expect(desk.unrouted("+14155550103")).to_contain_text("Hi, is this the clinic?")
        expect(desk.conv("+14155550103")).to_have_count(0)

    desk_a.unrouted("+14155550103").get_by_role("button", name=re.compile("Claim")).click()

    expect(desk_b.unrouted("+14155550103")).to_have_count(0)
    expect(desk_a.unrouted("+14155550103")).to_have_count(0)
    expect(desk_a.conv("+14155550103")).to_be_visible()
    expect(desk_a.page.locator("#conversation")).to_have_attribute("data-phone", "+14155550103")
    expect(desk_a.bubble("Hi, is this the clinic?")).to_be_visible()
    expect(desk_b.conv("+14155550103")).to_have_count(0)

    # The claimed patient's next message reaches desk A only.
    patient_replies(devhost, "+14155550103", "Thanks for answering")
    expect(desk_a.bubble("Thanks for answering")).to_be_visible()
    expect(desk_b.page.locator("body")).not_to_contain_text("Thanks for answering")


def test_unread_badges_and_hidden_tab_title(desk_b: Desk, devhost: Any) -> None:
    page = desk_b.page
    desk_b.open("+14155550102")
    expect(page).to_have_title("SMS Relay")
    # Pretend the tab went to the background.
    page.evaluate(
        """() => {
          Object.defineProperty(document, 'hidden', {configurable: true, get: () => true});
          Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => 'hidden'});
          document.dispatchEvent(new Event('visibilitychange'));
        }"""
    )
    patient_replies(devhost, "+14155550102", "Are you still there?")
    expect(desk_b.bubble("Are you still there?")).to_be_visible()
    expect(page).to_have_title("(1) SMS Relay")
    expect(desk_b.conv("+14155550102").locator(".badge")).to_have_text("1")
    page.evaluate(
        """() => {
          delete document.hidden;
          delete document.visibilityState;
          document.dispatchEvent(new Event('visibilitychange'));
        }"""
    )
    expect(page).to_have_title("SMS Relay")
    expect(desk_b.conv("+14155550102").locator(".badge")).to_have_count(0)


def test_two_tabs_of_one_desk_share_the_conversation(desk_a: Desk, devhost: Any) -> None:
    second = desk_a.page.context.new_page()  # same localStorage: the same desk, its own MQTT clientId
    try:
        tab = Desk(second)
        second.on("pageerror", lambda e: tab.errors.append(str(e)))
        second.goto(f"{devhost.base_url}/")
        tab.expect_connected()
        expect(second.locator("#desk-alias")).to_have_text(desk_a.page.locator("#desk-alias").inner_text())
        desk_a.open("+14155550101")
        tab.open("+14155550101")

        patient_replies(devhost, "+14155550101", "Seen by both tabs")
        expect(desk_a.bubble("Seen by both tabs")).to_be_visible()
        expect(tab.bubble("Seen by both tabs")).to_be_visible()

        tab.send_compose("Sent from the second tab")
        expect(desk_a.bubble("Sent from the second tab")).to_be_visible()  # the outbound echo
        expect(desk_a.bubble("Sent from the second tab").locator(".status")).to_have_text(re.compile("delivered"))
        second.wait_for_timeout(500)
        # Two clients of one desk must not knock each other off the broker.
        desk_a.expect_connected(timeout=1000)
        tab.expect_connected(timeout=1000)
        expect(tab.bubble("Sent from the second tab")).to_have_count(1)
        assert not tab.errors, tab.errors
    finally:
        second.close()


def test_reload_restores_and_broker_outage_catches_up_exactly_once(desk_a: Desk, desk_b: Desk, devhost: Any) -> None:
    page = desk_a.page
    desk_a.send_new("415-555-0104", "+14155550104", "Before the reload")
    patient_replies(devhost, "+14155550104", "Reply before the reload")
    expect(desk_a.bubble("Reply before the reload")).to_be_visible()

    alias = page.locator("#desk-alias").inner_text()
    page.reload()
    desk_a.expect_connected()
    expect(page.locator("#desk-alias")).to_have_text(alias)  # same desk identity after a reload
    for phone in ("+14155550104", "+14155550101"):
        expect(desk_a.conv(phone)).to_be_visible()
    # Messages that arrived while their conversation was open were marked read on the server.
    expect(desk_a.conv("+14155550103")).to_be_visible()
    expect(desk_a.conv("+14155550103").locator(".badge")).to_have_count(0)
    desk_a.open("+14155550104")
    expect(desk_a.bubble("Before the reload")).to_be_visible()
    expect(desk_a.bubble("Reply before the reload")).to_be_visible()
    expect(desk_a.bubble("Before the reload").locator(".status")).to_have_text(re.compile("delivered"))

    devhost.broker.stop()
    try:
        expect(page.locator("#conn-state")).to_have_attribute("data-state", re.compile("reconnecting|offline"))
        expect(page.locator("#conn-state")).to_contain_text(re.compile("reconnecting", re.I))
        patient_replies(devhost, "+14155550104", "Sent while the broker was down 1")
        patient_replies(devhost, "+14155550104", "Sent while the broker was down 2")
    finally:
        devhost.broker.start()

    desk_a.expect_connected(timeout=20_000)
    for n in (1, 2):
        expect(desk_a.bubble(f"Sent while the broker was down {n}")).to_be_visible(timeout=15_000)
    # A message for another conversation shows as an unread badge, cleared when opened.
    patient_replies(devhost, "+14155550101", "One more question")
    expect(desk_a.conv("+14155550101").locator(".badge")).to_have_text("1")
    expect(desk_a.conv("+14155550101")).to_contain_text("One more question")
    page.wait_for_timeout(1000)  # give a duplicate (catch-up + QoS 1 redelivery) time to show up
    for n in (1, 2):
        expect(desk_a.bubble(f"Sent while the broker was down {n}")).to_have_count(1)
    expect(desk_a.bubble("Reply before the reload")).to_have_count(1)
    desk_b.expect_connected(timeout=20_000)


def test_message_bodies_render_as_text_and_mms_inline(desk_a: Desk, devhost: Any) -> None:
    page = desk_a.page
    desk_a.send_new("4155550105", "+14155550105", "Please send a photo of the rash")
    patient_replies(devhost, "+14155550105", XSS)
    bubble = desk_a.bubble(XSS)
    expect(bubble).to_be_visible()
    expect(bubble.locator(".body")).to_have_text(XSS)
    expect(desk_a.conv("+14155550105")).to_contain_text(XSS)

    patient_replies(devhost, "+14155550105", "Here is the photo", image=True)
    photo = desk_a.bubble("Here is the photo").locator("img")
    expect(photo).to_have_attribute("src", re.compile(r"^blob:"))
    expect(photo).to_have_js_property("complete", True)

    page.wait_for_timeout(300)
    assert page.locator('img[src="x"]').count() == 0
    assert page.evaluate("document.querySelectorAll('[onerror]').length") == 0
    assert desk_a.dialogs == []


def test_delivery_failures_and_api_errors_in_words(desk_a: Desk, devhost: Any) -> None:
    page = desk_a.page
    # The sandbox fails these reserved numbers after sending: 0199 -> failed 30003, 0198 -> undelivered 30005.
    desk_a.send_new("(415) 555-0199", "+14155550199", "This one will fail")
    failed = desk_a.bubble("This one will fail")
    expect(failed.locator(".status")).to_have_text("failed")
    expect(failed.locator(".msg-error")).to_contain_text("Unreachable destination handset")
    expect(failed.locator(".msg-error")).to_contain_text("30003")

    desk_a.send_new("(415) 555-0198", "+14155550198", "This one is undeliverable")
    lost = desk_a.bubble("This one is undeliverable")
    expect(lost.locator(".status")).to_have_text("not delivered")
    expect(lost.locator(".msg-error")).to_contain_text("Unknown destination handset")

    # An opted-out patient: the API refuses, the error is shown in words and the typed text stays.
    desk_a.send_new("(415) 555-0109", "+14155550109", "Your results are ready")
    patient_replies(devhost, "+14155550109", "STOP")
    expect(desk_a.bubble("STOP")).to_be_visible()
    page.fill("#compose-text", "Are you sure you want to stop?")
    page.press("#compose-text", "Enter")
    expect(page.locator("#compose-error")).to_contain_text("opted out")
    expect(page.locator("#compose-text")).to_have_value("Are you sure you want to stop?")
    expect(desk_a.bubble("Are you sure you want to stop?")).to_have_count(0)
    page.fill("#compose-text", "")
    expect(page.locator("#compose-error")).to_be_empty()


def test_older_history_loads_when_scrolling_up(desk_a: Desk, devhost: Any) -> None:
    page = desk_a.page
    desk_a.send_new("(415) 555-0108", "+14155550108", "History test start")
    for n in range(1, 41):
        patient_replies(devhost, "+14155550108", f"History line {n}")
    expect(desk_a.bubble("History line 40")).to_be_visible()

    page.reload()
    desk_a.expect_connected()
    desk_a.open("+14155550108")
    expect(desk_a.bubble("History line 40")).to_be_visible()
    items = page.locator("#message-list li.msg")
    first_page = items.count()
    assert 1 <= first_page < 41, f"the first page should not hold the whole history ({first_page})"
    expect(desk_a.bubble("History test start")).to_have_count(0)

    scroller = page.locator("#message-scroller")
    for _ in range(10):
        if desk_a.bubble("History test start").count():
            break
        scroller.evaluate("el => { el.scrollTop = 0; el.dispatchEvent(new Event('scroll')); }")
        page.wait_for_timeout(300)
    expect(desk_a.bubble("History test start")).to_have_count(1)
    expect(items).to_have_count(41)
    expect(items.first).to_contain_text("History test start")
    expect(page.locator("#history-status")).to_contain_text("Beginning of the conversation")


def test_segment_counter_and_length_limit(desk_a: Desk) -> None:
    page = desk_a.page
    desk_a.open("+14155550101")
    counter = page.locator("#compose-counter")
    send = page.locator("#compose-send")

    cases = [
        ("a" * 160, "160 chars · 1 SMS (GSM-7)"),
        ("a" * 161, "161 chars · 2 SMS (GSM-7)"),
        ("[" * 80, "80 chars · 1 SMS (GSM-7)"),  # extension chars count 2
        ("[" * 81, "81 chars · 2 SMS (GSM-7)"),
        ("a" * 70, "70 chars · 1 SMS (GSM-7)"),
        ("é" * 70, "70 chars · 1 SMS (GSM-7)"),  # é is in the GSM-7 basic set
        ("a" * 69 + "😀", "70 chars · 2 SMS (UCS-2)"),  # 71 UTF-16 code units
        ("a" * 68 + "😀", "69 chars · 1 SMS (UCS-2)"),  # 70 code units
        ("ü" * 1600, "1600 chars · 11 SMS (GSM-7)"),
    ]
    for text, expected in cases:
        page.fill("#compose-text", text)
        expect(counter).to_have_text(expected)
        expect(send).to_be_enabled()

    page.fill("#compose-text", "a" * 1601)
    expect(counter).to_have_text("1601 chars · 11 SMS (GSM-7)")
    expect(send).to_be_disabled()
    expect(page.locator("#compose-error")).to_contain_text("Too long")
    page.press("#compose-text", "End")
    page.press("#compose-text", "Enter")  # refused: nothing is sent, the text stays
    expect(page.locator("#compose-text")).to_have_value("a" * 1601)

    # Shift+Enter makes a new line; Enter sends.
    page.fill("#compose-text", "")
    page.type("#compose-text", "line one")
    page.keyboard.press("Shift+Enter")
    page.type("#compose-text", "line two")
    expect(page.locator("#compose-text")).to_have_value("line one\nline two")
    page.fill("#compose-text", "")
    expect(send).to_be_disabled()
    expect(page.locator("#compose-error")).to_be_empty()


def test_phone_validation_and_reminder_template(desk_a: Desk) -> None:
    page = desk_a.page
    results = page.evaluate(
        """async () => {
          const m = await import('/phone.js');
          const cases = [['(415) 555-0101','US'], ['415.555.0101','US'], ['1 415 555 0101','US'],
                         ['+14155550101','US'], ['+44 20 7946 0958','US'], ['020 7946 0958','GB'],
                         ['555-0101','US'], ['(015) 555-0101','US'], ['+1 415 555','US'], ['abc','US'], ['','US']];
          return cases.map(([n, c]) => m.normalizePhone(n, c).e164 ?? null);
        }"""
    )
    assert results == [
        "+14155550101",
        "+14155550101",
        "+14155550101",
        "+14155550101",
        "+442079460958",
        "+442079460958",
        None,
        None,
        None,
        None,
        None,
    ]

    page.click("#new-message-btn")
    page.fill("#new-phone", "555-01")
    page.locator("#new-phone").blur()
    expect(page.locator("#new-phone-status")).to_contain_text("10 digits")
    expect(page.locator("#new-phone")).to_have_attribute("aria-invalid", "true")
    page.fill("#new-phone", "(415) 555-0101")
    expect(page.locator("#new-phone-status")).to_contain_text("+1 (415) 555-0101")
    page.fill("#new-date", "2026-12-03")
    page.fill("#new-time", "14:30")
    page.click("#new-template")
    expect(page.locator("#new-text")).to_have_value(
        "Your appointment is on Thursday, December 3 at 2:30 PM. Reply C to confirm."
    )
    expect(page.locator("#new-send")).to_be_enabled()
    page.keyboard.press("Escape")
    expect(page.locator("#new-dialog")).to_be_hidden()


def test_narrow_screen_is_one_column_with_back_button(desk_a: Desk) -> None:
    page = desk_a.page
    page.set_viewport_size(NARROW)
    try:
        if page.locator("#back-btn").is_visible():
            page.click("#back-btn")
        expect(page.locator("#sidebar")).to_be_visible()
        expect(page.locator("#pane")).to_be_hidden()
        desk_a.open("+14155550101")
        expect(page.locator("#sidebar")).to_be_hidden()
        expect(page.locator("#back-btn")).to_be_visible()
        page.click("#back-btn")
        expect(page.locator("#sidebar")).to_be_visible()
        expect(page.locator("#pane")).to_be_hidden()
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, f"horizontal scrolling at 375 px ({width} px wide)"
    finally:
        page.set_viewport_size(VIEWPORT)


def test_screenshots(browser: Browser, desk_a: Desk, desk_b: Desk, devhost: Any) -> None:
    IMG_DIR.mkdir(parents=True, exist_ok=True)

    # conversation.png: a reminder that was confirmed, a delivered text, an MMS reply.
    page = desk_a.page
    page.click("#new-message-btn")
    page.fill("#new-phone", "(415) 555-0107")
    page.fill("#new-date", "2026-12-03")
    page.fill("#new-time", "09:15")
    page.click("#new-template")
    page.check("#new-confirm")
    page.click("#new-send")
    expect(page.locator("#conversation")).to_have_attribute("data-phone", "+14155550107")
    reminder = desk_a.bubble("Your appointment is on", exact=False)
    expect(reminder.locator(".reminder-badge")).to_be_visible()
    expect(reminder.locator(".status")).to_have_text(re.compile("delivered"))
    patient_replies(devhost, "+14155550107", "C")
    expect(desk_a.bubble("C")).to_be_visible()
    desk_a.send_compose("Thank you! See you then. Please bring your insurance card.")
    patient_replies(devhost, "+14155550107", "Here is my card", image=True)
    expect(desk_a.bubble("Here is my card").locator("img")).to_have_attribute("src", re.compile("^blob:"))
    thanks = desk_a.bubble("Thank you! See you then", exact=False)
    expect(thanks.locator(".status")).to_have_text(re.compile("delivered"))
    page.screenshot(path=str(IMG_DIR / "conversation.png"))

    # inbox.png: desk B freshly loaded, with a new (unrouted) conversation waiting.
    patient_replies(devhost, "+14155550106", "Hello, I need to reschedule my cleaning next week")
    desk_b.page.reload()
    desk_b.expect_connected()
    expect(desk_b.unrouted("+14155550106")).to_be_visible()
    expect(desk_b.conv("+14155550102")).to_be_visible()
    desk_b.page.screenshot(path=str(IMG_DIR / "inbox.png"))

    # phone.png: the sandbox phone simulator.
    context = browser.new_context(viewport=VIEWPORT)
    try:
        phone = context.new_page()
        response = phone.goto(f"{devhost.sandbox_url}/phone")
        assert response is not None and response.ok
        phone.wait_for_timeout(1000)  # let the simulator draw its first state
        phone.screenshot(path=str(IMG_DIR / "phone.png"))
    finally:
        context.close()

    for name in ("inbox.png", "conversation.png", "phone.png"):
        data = (IMG_DIR / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5_000, name
