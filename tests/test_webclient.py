"""End-to-end tests of the web client (webclient/) in real headless Chromium.

Browser contexts play staff at the clinic's two desks against the local devhost: Maria and Ken at
Reception, Priya at Billing; patients reply through the Twilio sandbox. Every wait is bounded
(expect timeouts).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.devhost import DevhostProcess
from tests.support.ports import free_port

playwright_sync = pytest.importorskip("playwright.sync_api")
from playwright.sync_api import Browser, expect  # noqa: E402

from tests.support.webclient import (  # noqa: E402
    IMG_DIR,
    NARROW,
    VIEWPORT,
    XSS,
    Desk,
    open_desk,
    patient_replies,
    phone_received,
    session_id,
    signed_in,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(90)]

ADMIN_CODE = secrets.token_urlsafe(18)
# An operator code for the admin page, and reminders that C confirms.
DEVHOST_ENV = {"RELAY_ADMIN_CODE": ADMIN_CODE, "KEYWORD_HANDLERS": "confirm"}

expect.set_options(timeout=10_000)


# ---- fixtures --------------------------------------------------------------


@pytest.fixture(scope="module")
def desk_a(browser: Browser, devhost: Any) -> Iterator[Desk]:
    """Maria at Reception."""
    with signed_in(browser, devhost, "Maria") as desk:
        yield desk


@pytest.fixture(scope="module")
def desk_b(browser: Browser, devhost: Any) -> Iterator[Desk]:
    """Priya at Billing."""
    with signed_in(browser, devhost, "Priya", "billing") as desk:
        yield desk


@pytest.fixture(scope="module")
def colleague(browser: Browser, devhost: Any) -> Iterator[Desk]:
    """Ken, also at Reception, on another computer."""
    with signed_in(browser, devhost, "Ken") as desk:
        yield desk


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
        page.get_by_label("Your name").fill("Maria")
        page.keyboard.press("Enter")
        expect(page.locator("#signin-error")).to_contain_text("not valid")
        expect(page.get_by_label("Access code")).to_be_focused()
        page.get_by_label("Access code").fill(devhost.access_code)
        # The name is needed, and 40 characters at most (counted as people see them).
        page.get_by_label("Your name").fill("")
        page.get_by_role("button", name="Sign in").click()
        expect(page.locator("#signin-error")).to_contain_text("Enter your name")
        expect(page.get_by_label("Your name")).to_be_focused()
        expect(page.get_by_label("Your name")).to_have_attribute("aria-invalid", "true")
        page.get_by_label("Your name").fill("é" * 41)
        page.get_by_role("button", name="Sign in").click()
        expect(page.locator("#signin-error")).to_contain_text("40 at most")
        # Refused by the server (a bidi override), explained in its words.
        page.get_by_label("Your name").fill("Maria\u202e")
        page.get_by_role("button", name="Sign in").click()
        expect(page.locator("#signin-error")).to_contain_text("name")
        expect(page.locator("#app")).to_be_hidden()
        page.get_by_label("Your name").fill("Maria")
        page.get_by_role("button", name="Sign in").click()
        expect(page.locator("#conn-state")).to_have_attribute("data-state", "connected")
        expect(page.locator("#staff-name")).to_have_text("Maria")
        assert page.evaluate("localStorage.getItem('smsrelay.session')") is not None
        assert page.evaluate("localStorage.getItem('smsrelay.staffName')") == "Maria"
        # A reload carries on with the same session: no second sign-in.
        before = session_id(page)
        page.reload()
        expect(page.locator("#conn-state")).to_have_attribute("data-state", "connected")
        expect(page.locator("#staff-name")).to_have_text("Maria")
        assert session_id(page) == before
        page.get_by_role("button", name="Sign out").click()
        expect(page.locator("#signin")).to_be_visible()
        expect(page.locator("#app")).to_be_hidden()
        assert page.evaluate("localStorage.getItem('smsrelay.session')") is None
        assert page.evaluate("localStorage.getItem('smsrelay.accessCode')") is None
        expect(page.get_by_label("Your name")).to_have_value("Maria")  # remembered for next time
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


def test_two_people_at_one_desk_share_it_and_billing_sees_none_of_it(
    desk_a: Desk, colleague: Desk, desk_b: Desk, devhost: Any
) -> None:
    # Maria and Ken, in two fresh browsers, are both at Reception.
    expect(colleague.page.locator("#desk-name")).to_have_text("Reception")
    desk_a.send_new("(415) 555-0110", "+14155550110", "Hello from Maria")
    expect(colleague.conv("+14155550110")).to_be_visible()  # live, in the other browser
    colleague.open("+14155550110")
    expect(colleague.bubble("Hello from Maria")).to_be_visible()
    expect(colleague.bubble("Hello from Maria").locator(".sender")).to_have_text("Maria")

    patient_replies(devhost, "+14155550110", "Reply seen at both computers")
    for desk in (desk_a, colleague):
        expect(desk.bubble("Reply seen at both computers")).to_be_visible()

    # Ken answers; Maria sees it live, with his name on it.
    colleague.send_compose("Ken here, happy to help")
    expect(colleague.bubble("Ken here, happy to help").locator(".sender")).to_have_text("Ken")
    expect(desk_a.bubble("Ken here, happy to help")).to_be_visible()
    expect(desk_a.bubble("Ken here, happy to help").locator(".sender")).to_have_text("Ken")
    expect(desk_a.bubble("Ken here, happy to help").locator(".meta")).to_have_text(
        re.compile(r"^Sent by Ken · \d{1,2}:\d{2}\s?[AP]M · (sent|delivered ✓)$")
    )
    expect(desk_a.conv("+14155550110")).to_contain_text("Ken: Ken here, happy to help")

    # Billing sees none of it.
    expect(desk_b.conv("+14155550110")).to_have_count(0)
    expect(desk_b.page.locator("body")).not_to_contain_text("Reply seen at both computers")
    expect(desk_b.page.locator("body")).not_to_contain_text("Ken here")


def test_staff_names_on_outbound_messages_after_a_reload(desk_a: Desk, colleague: Desk) -> None:
    page = desk_a.page
    desk_a.open("+14155550110")
    desk_a.send_compose("Maria again: see you tomorrow")
    expect(desk_a.bubble("Maria again: see you tomorrow").locator(".status")).to_have_text(re.compile("delivered"))
    page.reload()
    desk_a.expect_connected()
    desk_a.open("+14155550110")
    for text, name in (
        ("Hello from Maria", "Maria"),
        ("Ken here, happy to help", "Ken"),
        ("Maria again: see you tomorrow", "Maria"),
    ):
        expect(desk_a.bubble(text).locator(".meta")).to_have_text(
            re.compile(rf"^Sent by {name} · \d{{1,2}}:\d{{2}}\s?[AP]M · delivered ✓$")
        )
    expect(desk_a.bubble("Reply seen at both computers").locator(".sender")).to_have_count(0)
    colleague.page.reload()
    colleague.expect_connected()
    colleague.open("+14155550110")
    expect(colleague.bubble("Maria again: see you tomorrow").locator(".sender")).to_have_text("Maria")
    expect(colleague.bubble("Ken here, happy to help").locator(".sender")).to_have_text("Ken")


def test_transfer_to_billing_with_a_note(desk_a: Desk, colleague: Desk, desk_b: Desk, devhost: Any) -> None:
    page = desk_a.page
    desk_a.send_new("(415) 555-0111", "+14155550111", "Your invoice is attached")
    patient_replies(devhost, "+14155550111", "I was charged twice")
    expect(desk_a.bubble("I was charged twice")).to_be_visible()
    expect(desk_b.conv("+14155550111")).to_have_count(0)

    page.get_by_role("button", name="Transfer").click()
    dialog = page.locator("#transfer-dialog")
    expect(dialog).to_be_visible()
    expect(page.get_by_label("To desk")).to_be_focused()
    expect(page.get_by_label("To desk").locator("option")).to_have_text([re.compile(r"^Billing · \d+ online$")])
    page.get_by_label("Note for the other desk (optional)").fill("x" * 501)
    expect(page.locator("#transfer-count")).to_have_text("501 / 500")
    expect(page.locator("#transfer-submit")).to_be_disabled()
    page.get_by_label("Note for the other desk (optional)").fill("Charged twice in March; please refund one.")
    expect(page.locator("#transfer-submit")).to_be_enabled()
    page.screenshot(path=str(IMG_DIR / "transfer.png"))
    page.locator("#transfer-submit").click()
    expect(dialog).to_be_hidden()

    # Billing, live: the conversation in its list, its history, the line and the note.
    line = "Now with Billing (Maria)"
    expect(desk_b.conv("+14155550111")).to_be_visible()
    expect(desk_b.conv("+14155550111")).to_contain_text(line)
    expect(desk_b.page.locator("#list-notice")).to_contain_text("is now with this desk (Maria)")
    desk_b.open("+14155550111")
    expect(desk_b.bubble("Your invoice is attached")).to_be_visible()
    expect(desk_b.bubble("Your invoice is attached").locator(".sender")).to_have_text("Maria")
    expect(desk_b.bubble("I was charged twice")).to_be_visible()
    expect(desk_b.event_line(line)).to_be_visible()
    expect(desk_b.event_line(line).locator(".event-note")).to_have_text(
        "Note from Maria: Charged twice in March; please refund one."
    )
    expect(desk_b.page.get_by_role("button", name="Transfer")).to_be_visible()
    expect(desk_b.page.locator("#conv-owner")).to_be_hidden()

    # Reception keeps its thread, with the line, and says whose it is now.
    for desk in (desk_a, colleague):
        expect(desk.conv("+14155550111")).to_contain_text(line)
    expect(desk_a.event_line(line)).to_be_visible()
    expect(page.locator("#conv-owner")).to_have_text("With Billing")
    expect(page.get_by_role("button", name="Transfer")).to_be_hidden()
    expect(page.locator("#conv-title")).to_be_focused()

    # The patient's next reply reaches Billing only.
    patient_replies(devhost, "+14155550111", "Thanks, who do I talk to now?")
    expect(desk_b.bubble("Thanks, who do I talk to now?")).to_be_visible()
    page.wait_for_timeout(500)
    for desk in (desk_a, colleague):
        expect(desk.page.locator("body")).not_to_contain_text("who do I talk to now")

    # Escape closes the dialog and gives the focus back to its button.
    desk_a.open("+14155550110")
    page.get_by_role("button", name="Transfer").click()
    expect(dialog).to_be_visible()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(page.get_by_role("button", name="Transfer")).to_be_focused()


def test_transfer_refused_in_words_when_a_colleague_was_quicker(desk_a: Desk, colleague: Desk) -> None:
    page = desk_a.page
    desk_a.send_new("(415) 555-0113", "+14155550113", "Who should I ask about parking?")
    page.get_by_role("button", name="Transfer").click()
    page.get_by_label("Note for the other desk (optional)").fill("Parking question")
    # Meanwhile Ken, at the same desk, hands it over first.
    expect(colleague.conv("+14155550113")).to_be_visible()
    colleague.open("+14155550113")
    colleague.page.get_by_role("button", name="Transfer").click()
    colleague.page.locator("#transfer-submit").click()
    expect(colleague.event_line("Now with Billing (Ken)")).to_be_visible()
    expect(desk_a.event_line("Now with Billing (Ken)")).to_be_visible()  # behind Maria's open dialog, live

    page.locator("#transfer-submit").click()
    expect(page.locator("#transfer-error")).to_have_text(
        "This conversation is no longer with your desk, so you cannot transfer it."
    )
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("#transfer-dialog")).to_be_hidden()
    expect(page.locator("#conv-owner")).to_have_text("With Billing")


def test_take_over_by_sending_asks_first(desk_a: Desk, desk_b: Desk, devhost: Any) -> None:
    desk_a.send_new("(415) 555-0112", "+14155550112", "Reception: your test results are in")
    page = desk_b.page
    page.click("#new-message-btn")
    page.fill("#new-phone", "(415) 555-0112")
    page.fill("#new-text", "Billing: about your bill")
    page.click("#new-send")
    prompt = page.locator("#new-takeover")
    expect(prompt).to_be_visible()
    expect(prompt).to_contain_text("This patient's conversation is with Reception.")
    expect(prompt).to_contain_text("Take over the conversation?")
    expect(prompt.get_by_role("button", name="Take over and send")).to_be_focused()
    assert desk_b.dialogs == [], "the question is asked in the page, not with window.confirm"

    # "Cancel" sends nothing; the text stays.
    prompt.get_by_role("button", name="Cancel").click()
    expect(prompt).to_be_hidden()
    expect(page.locator("#new-error")).to_contain_text("Not sent")
    expect(page.locator("#new-text")).to_have_value("Billing: about your bill")
    assert not phone_received(devhost, "+14155550112", "Billing: about your bill", timeout=0.5)

    page.click("#new-send")
    expect(prompt).to_be_visible()
    prompt.get_by_role("button", name="Take over and send").click()
    expect(page.locator("#new-dialog")).to_be_hidden()
    expect(page.locator("#conversation")).to_have_attribute("data-phone", "+14155550112")
    assert phone_received(devhost, "+14155550112", "Billing: about your bill")

    line = "Now with Billing (Priya)"
    # Billing now has the history from before, and both threads show the line.
    expect(desk_b.bubble("Reception: your test results are in")).to_be_visible()
    expect(desk_b.bubble("Billing: about your bill")).to_be_visible()
    expect(desk_b.event_line(line)).to_be_visible()
    expect(desk_a.event_line(line)).to_be_visible()
    expect(desk_a.page.locator("#conv-owner")).to_have_text("With Billing")
    expect(desk_a.bubble("Billing: about your bill")).to_have_count(0)  # not Reception's any more
    expect(desk_a.conv("+14155550112")).to_contain_text(line)

    # And back, from Reception's compose box: asked there, then Reception reads what Billing wrote meanwhile.
    page = desk_a.page
    desk_a.open("+14155550112")
    page.fill("#compose-text", "Reception again: please call us")
    page.press("#compose-text", "Enter")
    prompt = page.locator("#compose-takeover")
    expect(prompt).to_contain_text("This patient's conversation is with Billing. Take over the conversation?")
    prompt.get_by_role("button", name="Take over and send").click()
    expect(prompt).to_be_hidden()
    expect(desk_a.bubble("Reception again: please call us")).to_be_visible()
    expect(page.locator("#compose-text")).to_have_value("")
    expect(desk_a.event_line("Now with Reception (Maria)")).to_be_visible()
    expect(desk_a.bubble("Billing: about your bill")).to_be_visible()
    expect(page.locator("#conv-owner")).to_be_hidden()
    expect(page.get_by_role("button", name="Transfer")).to_be_visible()
    expect(desk_b.event_line("Now with Reception (Maria)")).to_be_visible()
    expect(desk_b.page.locator("#conv-owner")).to_have_text("With Reception")


def test_switching_desks_with_the_picker(colleague: Desk, desk_a: Desk, devhost: Any) -> None:
    page = colleague.page
    # The menu works from the keyboard: it opens on the first other desk, Escape closes it.
    toggle = page.get_by_role("button", name="Switch desk")
    expect(toggle).to_have_attribute("aria-expanded", "false")
    toggle.focus()
    page.keyboard.press("Enter")
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(colleague.desk_item("billing")).to_be_focused()
    # The list is fetched again when the menu is used: who is online where, and which desk this is.
    expect(page.locator("#desk-list .desk-item")).to_have_text(
        [re.compile(r"^Reception · #R[2-9] online · this desk$"), re.compile(r"^Billing · #B[1-9] online$")]
    )
    expect(colleague.desk_item("reception")).to_be_disabled()
    expect(colleague.desk_item("reception")).to_have_attribute("aria-current", "true")
    page.keyboard.press("Escape")
    expect(page.locator("#desk-menu")).to_be_hidden()
    expect(toggle).to_be_focused()

    # A second tab of the same browser shares its session, and follows it to the other desk.
    second = page.context.new_page()
    try:
        tab = Desk(second)
        second.on("pageerror", lambda e: tab.errors.append(str(e)))
        second.goto(f"{devhost.base_url}/")
        tab.expect_connected()
        expect(second.locator("#desk-name")).to_have_text("Reception")
        assert session_id(second) == session_id(page)

        reception_sid = session_id(page)
        page.bring_to_front()  # Ken works in the first tab; a background tab's frames are throttled
        colleague.switch_desk("billing")
        expect(page.locator("#desk-alias")).to_have_text("#B")
        expect(page.locator("#staff-name")).to_have_text("Ken")
        assert session_id(page) != reception_sid
        # Billing's list, not Reception's.
        expect(colleague.conv("+14155550111")).to_be_visible()
        expect(colleague.conv("+14155550110")).to_have_count(0)
        expect(second.locator("#desk-name")).to_have_text("Billing")
        tab.expect_connected()
        expect(second.locator('#conv-list li[data-phone="+14155550110"]')).to_have_count(0)

        # Live at Billing, in both tabs, with Billing's own catch-up.
        colleague.open("+14155550111")
        patient_replies(devhost, "+14155550111", "Any news on the refund?")
        expect(colleague.bubble("Any news on the refund?")).to_be_visible()
        expect(second.locator('#conv-list li[data-phone="+14155550111"]')).to_contain_text("Any news on the refund?")
        expect(desk_a.page.locator("body")).not_to_contain_text("Any news on the refund?")

        colleague.switch_desk("reception")
        expect(colleague.conv("+14155550110")).to_be_visible()
        expect(colleague.conv("+14155550111")).to_contain_text("Now with Billing (Maria)")
        expect(second.locator("#desk-name")).to_have_text("Reception")
        assert not tab.errors, tab.errors
    finally:
        second.close()


def test_a_refused_token_signs_in_again_as_the_same_person_at_the_same_desk(desk_b: Desk) -> None:
    page = desk_b.page
    before = session_id(page)
    # The stored token no longer passes (as after the signing key changed): the page signs in again with the
    # code and the name it remembers, at the desk it was at.
    page.evaluate(
        """() => {
          const s = JSON.parse(localStorage.getItem('smsrelay.session'));
          s.token = s.token.slice(0, -6) + (s.token.endsWith('AAAAAA') ? 'BBBBBB' : 'AAAAAA');
          localStorage.setItem('smsrelay.session', JSON.stringify(s));
        }"""
    )
    page.reload()
    desk_b.expect_connected()
    expect(page.locator("#desk-name")).to_have_text("Billing")
    expect(page.locator("#staff-name")).to_have_text("Priya")
    expect(page.locator("#signin")).to_be_hidden()
    assert session_id(page) != before
    expect(desk_b.conv("+14155550111")).to_be_visible()


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

    # An opted-out patient: the composer closes with the reason, keeping what was typed; the New message
    # dialog, which does not know, gets the API's refusal in words.
    desk_a.send_new("(415) 555-0109", "+14155550109", "Your results are ready")
    page.fill("#compose-text", "Are you sure you want to stop?")
    patient_replies(devhost, "+14155550109", "STOP")
    expect(desk_a.bubble("STOP")).to_be_visible()
    expect(page.locator("#compose-text")).to_be_disabled()
    expect(page.locator("#compose-text")).to_have_value("Are you sure you want to stop?")
    page.click("#new-message-btn")
    page.fill("#new-phone", "(415) 555-0109")
    page.fill("#new-text", "Are you sure you want to stop?")
    page.click("#new-send")
    expect(page.locator("#new-error")).to_contain_text("opted out")
    page.click("#new-cancel")
    expect(desk_a.bubble("Are you sure you want to stop?")).to_have_count(0)


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


def test_a_list_of_broker_urls_moves_past_one_that_is_down(
    browser: Browser, broker: Any, signing_key: str, tmp_path: Path
) -> None:
    """MQTT_BROWSER_URL as a cluster's nodes: the first is down, so the page moves on to the next and is live."""
    dead = f"ws://127.0.0.1:{free_port()}/mqtt"
    urls = f"{dead},ws://127.0.0.1:{broker.ws_port}/mqtt"
    with DevhostProcess(
        broker,
        tmp_path,
        access_code=secrets.token_urlsafe(12),
        signing_key=signing_key,
        extra_env={"MQTT_BROWSER_URL": urls},
    ) as host:
        desk = open_desk(browser, host, "Ann")
        try:
            patient_replies(host, "+14155550171", "over the second URL")
            expect(desk.unrouted("+14155550171")).to_contain_text("over the second URL")  # live, over MQTT
        finally:
            desk.page.context.close()


def test_operator_page(browser: Browser, desk_a: Desk, devhost: Any) -> None:
    context = browser.new_context(viewport=VIEWPORT, locale="en-US", timezone_id="America/Los_Angeles")
    context.set_default_timeout(10_000)
    victim: Desk | None = None
    errors: list[str] = []
    try:
        page = context.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        response = page.goto(f"{devhost.base_url}/admin.html")
        assert response is not None and "script-src 'self'" in (response.headers.get("content-security-policy") or "")
        code = page.get_by_label("Operator code")
        expect(code).to_be_focused()
        code.fill(devhost.access_code)  # the staff access code opens nothing here
        page.keyboard.press("Enter")
        expect(page.locator("#admin-signin-error")).to_contain_text("wrong")
        expect(page.locator("#admin")).to_be_hidden()
        code.fill(ADMIN_CODE)
        page.keyboard.press("Enter")
        expect(page.locator("#admin")).to_be_visible()
        assert page.evaluate("sessionStorage.getItem('smsrelay.adminCode')") == ADMIN_CODE
        assert page.evaluate("localStorage.getItem('smsrelay.adminCode')") is None

        desk_row = lambda desk_id: page.locator(f'#desk-rows tr[data-desk="{desk_id}"]')  # noqa: E731
        expect(desk_row("reception").locator("th, td")).to_have_text(
            ["Reception", "#R", "reception", re.compile(r"^[1-9]\d*$"), "Live", "EditArchive…"]
        )
        expect(desk_row("billing")).to_contain_text("#B")

        # Add a desk; a patient code already taken is refused in the API's words.
        page.get_by_label("Name", exact=True).fill("Nurse line")
        page.get_by_label("Patient code (optional)").fill("N")
        page.get_by_role("button", name="Add desk").click()
        expect(desk_row("nurse_line").locator("th, td").first).to_have_text("Nurse line")
        expect(desk_row("nurse_line")).to_contain_text("#N")
        expect(page.locator("#admin-notice")).to_contain_text("Added Nurse line")
        page.get_by_label("Name", exact=True).fill("Pharmacy")
        page.get_by_label("Patient code (optional)").fill("B")
        page.get_by_role("button", name="Add desk").click()
        expect(page.locator("#add-error")).not_to_be_empty()
        expect(page.locator("#desk-rows tr")).to_have_count(3)

        # Rename and change the code inline (Enter saves); staff see it in their picker.
        page.get_by_role("button", name="Edit Nurse line").click()
        expect(page.get_by_label("Name of Nurse line")).to_be_focused()
        page.get_by_label("Name of Nurse line").fill("Nurses")
        page.get_by_label("Patient code of Nurse line").fill("NU")
        page.keyboard.press("Enter")
        expect(desk_row("nurse_line").locator("th")).to_have_text("Nurses")
        expect(desk_row("nurse_line")).to_contain_text("#NU")
        expect(page.get_by_role("button", name="Edit Nurses")).to_be_focused()
        desk_a.open_desk_menu()
        expect(desk_a.desk_item("nurse_line")).to_have_text("Nurses · #NU0 online")
        desk_a.page.keyboard.press("Escape")

        # End one browser's session: that browser goes back to the sign-in screen and stays there.
        victim = open_desk(browser, devhost, "Temp Worker")
        page.get_by_role("button", name="Refresh").click()
        page.get_by_role("button", name="End session of Temp Worker at Reception").click()
        expect(page.locator("#admin-notice")).to_have_text("Ended Temp Worker's session at Reception.")
        expect(page.locator("#session-rows")).not_to_contain_text("Temp Worker")
        expect(victim.page.locator("#signin")).to_be_visible(timeout=20_000)
        expect(victim.page.locator("#signin-error")).to_have_text("Your session was ended. Sign in again to continue.")
        victim.page.reload()
        expect(victim.page.locator("#signin")).to_be_visible()
        expect(victim.page.locator("#signin-error")).to_contain_text("Your session was ended")

        # End every session of one person (two computers).
        devhost.session(staff="Temp Two")
        devhost.session("billing", staff="Temp Two")
        page.get_by_role("button", name="Refresh").click()
        expect(page.locator("#session-rows tr").filter(has_text="Temp Two")).to_have_count(2)
        page.get_by_role("button", name="End all sessions of this person: Temp Two").first.click()
        expect(page.locator("#admin-notice")).to_have_text("Ended 2 sessions of Temp Two.")
        expect(page.locator("#session-rows tr").filter(has_text="Temp Two")).to_have_count(0)
        expect(page.locator("#session-rows tr").filter(has_text="Maria")).not_to_have_count(0)

        # Archive, with a confirm step that can be declined.
        page.get_by_role("button", name="Archive Nurses").click()
        expect(desk_row("nurse_line")).to_contain_text("Archive Nurses?")
        expect(page.get_by_role("button", name="Keep it")).to_be_focused()
        page.get_by_role("button", name="Keep it").click()
        expect(page.get_by_role("button", name="Archive Nurses")).to_be_focused()
        page.get_by_role("button", name="Archive Nurses").click()
        page.get_by_role("button", name="Archive desk").click()
        expect(desk_row("nurse_line")).to_contain_text("Archived")
        expect(page.locator("#admin-notice")).to_contain_text("Nurses is archived: 0 sessions ended")
        expect(page.get_by_role("button", name="Edit Nurses")).to_have_count(0)
        desk_a.open_desk_menu()
        expect(desk_a.page.locator("#desk-list .desk-item")).to_have_count(2)
        desk_a.page.keyboard.press("Escape")
        desk_a.expect_connected()
        assert not errors, errors
    finally:
        if victim is not None:
            victim.page.context.close()
        context.close()


def test_screenshots(browser: Browser, desk_a: Desk, colleague: Desk, desk_b: Desk, devhost: Any) -> None:
    IMG_DIR.mkdir(parents=True, exist_ok=True)

    # conversation.png: a confirmed reminder, texts from two colleagues (their names on the bubbles), an MMS reply.
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
    expect(reminder.locator(".reminder-badge")).to_have_text("Reminder confirmed ✓")
    desk_a.send_compose("Thank you! See you then. Please bring your insurance card.")
    patient_replies(devhost, "+14155550107", "Here is my card. Is parking free?", image=True)
    expect(desk_a.bubble("Here is my card", exact=False).locator("img")).to_have_attribute("src", re.compile("^blob:"))
    expect(colleague.conv("+14155550107")).to_be_visible()
    colleague.open("+14155550107")
    colleague.send_compose("Yes, parking is free for patients. Ken, front desk")
    for text in ("Thank you! See you then", "Yes, parking is free"):
        bubble = desk_a.bubble(text, exact=False)
        expect(bubble.locator(".status")).to_have_text(re.compile("delivered"))
    expect(desk_a.bubble("Yes, parking is free", exact=False).locator(".sender")).to_have_text("Ken")
    expect(reminder.locator(".sender")).to_have_text("Maria")
    expect(desk_a.bubble("Here is my card", exact=False).locator("img")).to_have_js_property("complete", True)
    page.screenshot(path=str(IMG_DIR / "conversation.png"))

    # desk-picker.png: Ken opens the "Switch desk" menu (with who is online where).
    cpage = colleague.page
    cpage.get_by_role("button", name="Switch desk").focus()
    cpage.keyboard.press("Enter")
    expect(cpage.locator("#desk-list .desk-item")).to_have_text(
        [re.compile(r"^Reception · #R\d+ online · this desk$"), re.compile(r"^Billing · #B\d+ online$")]
    )
    expect(colleague.desk_item("billing")).to_be_focused()
    cpage.screenshot(path=str(IMG_DIR / "desk-picker.png"), clip={"x": 0, "y": 0, "width": 1280, "height": 320})
    cpage.keyboard.press("Escape")
    expect(cpage.locator("#desk-menu")).to_be_hidden()

    # inbox.png: Billing freshly loaded, a new (unrouted) conversation waiting, and one Reception transferred
    # open: its history, the line and the note, then the patient's replies to Billing.
    patient_replies(devhost, "+14155550106", "Hello, I need to reschedule my cleaning next week")
    desk_b.page.reload()
    desk_b.expect_connected()
    expect(desk_b.unrouted("+14155550106")).to_be_visible()
    desk_b.open("+14155550111")
    expect(desk_b.event_line("Now with Billing (Maria)").locator(".event-note")).to_be_visible()
    expect(desk_b.bubble("Any news on the refund?")).to_be_visible()
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

    for name in ("inbox.png", "conversation.png", "phone.png", "desk-picker.png", "transfer.png"):
        data = (IMG_DIR / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5_000, name
