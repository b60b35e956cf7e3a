"""What the web client's browser tests share: real headless Chromium, a desk in a browser (staff signed in
through an invite link), and a patient's phone in the Twilio sandbox."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Browser, FilePayload, Page, ViewportSize, expect, sync_playwright

from tests.support.tools import require_tool

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
IMG_DIR = Path(__file__).resolve().parents[2] / "docs" / "img"
XSS = "<img src=x onerror=alert(1)>"
DESK_NAMES = {"reception": "Reception", "billing": "Billing"}


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

    def event_line(self, text: str):
        """The centred line of a change of owner ("Now with Billing (Maria)")."""
        return self.page.locator("#message-list li.msg.event").filter(
            has=self.page.locator(".event-text").filter(has_text=re.compile("^" + re.escape(text) + "$"))
        )

    def switch_desk(self, desk: str) -> None:
        """Move this browser to another desk with the picker in the header."""
        page = self.page
        self.open_desk_menu()
        self.desk_item(desk).click()
        expect(page.locator("#desk-name")).to_have_text(DESK_NAMES[desk])
        expect(page.locator("#desk-menu")).to_be_hidden()
        expect(page.get_by_role("button", name="Switch desk")).to_be_focused()
        self.expect_connected()

    def open_desk_menu(self) -> None:
        self.page.get_by_role("button", name="Switch desk").click()
        expect(self.page.locator("#desk-menu")).to_be_visible()

    def desk_item(self, desk: str):
        """A desk in the open "Switch desk" menu."""
        return self.page.locator(f'#desk-list button[data-desk="{desk}"]')


def attach_picture(page: Page, name: str, content: bytes, kind: str = "image/png") -> None:
    """Through the compose box's real button: it opens the file chooser, where staff pick the file."""
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name="Attach picture").click()
    assert chooser.value.element.get_attribute("accept") == "image/jpeg,image/png,image/gif"
    chooser.value.set_files(FilePayload(name=name, mimeType=kind, buffer=content))


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


def session_id(page: Page) -> str:
    """The staff session (the token's `sid`) this browser keeps in localStorage."""
    sid: str = page.evaluate(
        "() => JSON.parse(atob(JSON.parse(localStorage.getItem('smsrelay.session')).token.split('.')[1]"
        ".replace(/-/g, '+').replace(/_/g, '/'))).sid"
    )
    return sid


def open_desk(browser: Browser, devhost: Any, name: str, desk_id: str = "reception") -> Desk:
    """A fresh browser that follows an invite link, gives its name, and works at desk `desk_id`."""
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
    assert "code=" not in page.url, "the access code must be stripped from the address bar"
    # The code came with the link; the page asks only for the name.
    expect(page.get_by_label("Your name")).to_be_focused()
    page.get_by_label("Your name").fill(name)
    page.keyboard.press("Enter")
    desk.expect_connected()
    expect(page.locator("#desk-name")).to_have_text("Reception")  # the default desk
    expect(page.locator("#desk-alias")).to_have_text("#R")
    expect(page.locator("#desk-hint")).to_have_text("patients start a reply with #R to reach you")
    expect(page.locator("#staff-name")).to_have_text(name)
    if desk_id != "reception":
        desk.switch_desk(desk_id)
    return desk


@contextmanager
def signed_in(browser: Browser, devhost: Any, name: str, desk_id: str = "reception") -> Iterator[Desk]:
    """A signed-in browser for a module's tests; the page must end with no script errors."""
    desk = open_desk(browser, devhost, name, desk_id)
    yield desk
    assert not desk.errors, desk.errors
    desk.page.context.close()


@contextmanager
def chromium() -> Iterator[Browser]:
    require_tool(os.path.exists(CHROMIUM), f"{CHROMIUM} is needed for the web client tests")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()
