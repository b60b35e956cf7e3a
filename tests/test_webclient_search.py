"""The search box in the web client, in real headless Chromium against the local devhost: "/" focuses it, results
replace the lists with the matched words in <mark> (text, never markup), a result opens its conversation or
claims an unrouted one, Escape brings the lists back; and axe finds nothing serious in the results."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.devhost import DevhostProcess

playwright_sync = pytest.importorskip("playwright.sync_api")
from playwright.sync_api import Browser, expect  # noqa: E402

from tests.support.accessibility import assert_accessible  # noqa: E402
from tests.support.webclient import XSS, Desk, patient_replies, signed_in  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.timeout(90)]

expect.set_options(timeout=10_000)

ANA, BEN, STRANGER = "+14155550401", "+14155550402", "+14155550409"


@pytest.fixture(scope="module")
def maria(browser: Browser, devhost: DevhostProcess) -> Iterator[Desk]:
    token = devhost.session(staff="Ken")["token"]
    r = httpx.put(
        f"{devhost.base_url}/api/contacts/{ANA.replace('+', '%2B')}",
        json={"name": "Ana Núñez"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert r.status_code in (200, 201), r.text
    with signed_in(browser, devhost, "Maria") as desk:
        desk.send_new("(415) 555-0401", ANA, "Your appointment is on Friday")
        patient_replies(devhost, ANA, "#R Can I bring my daughter? 😊 She needs a refill")
        expect(desk.bubble("Can I bring my daughter? 😊 She needs a refill")).to_be_visible()
        desk.send_new("(415) 555-0402", BEN, f"Parking map {XSS}")
        patient_replies(devhost, STRANGER, "Hello, I need a refill")
        expect(desk.unrouted(STRANGER)).to_be_visible()
        yield desk
        assert not desk.dialogs, desk.dialogs


def results(desk: Desk):
    return desk.page.locator("#search-list li")


def test_slash_focuses_the_search_and_a_word_finds_the_message_marked(maria: Desk) -> None:
    page = maria.page
    page.locator("#conv-heading").click()  # focus on nothing in particular
    page.keyboard.press("/")
    expect(page.get_by_role("searchbox", name="Search conversations")).to_be_focused()
    page.keyboard.type("daught")
    expect(results(maria)).to_have_count(1)
    row = results(maria).first
    expect(row).to_have_attribute("data-phone", ANA)
    expect(row.locator(".conv-name")).to_have_text("Ana Núñez")
    expect(row.locator(".search-match mark")).to_have_text(["daughter"])
    expect(row.locator(".search-match")).to_contain_text("Can I bring my daughter? 😊 She needs a refill")
    expect(page.locator("#search-status")).to_have_text("1 conversation found.")
    expect(page.locator("#conv-list")).to_be_hidden()  # the lists make way for the results
    assert_accessible(page, "search results")

    row.get_by_role("button").click()
    expect(page.locator("#conversation")).to_have_attribute("data-phone", ANA)
    page.locator("#compose-text").focus()  # "/" while typing a message is a slash
    page.keyboard.press("/")
    expect(page.locator("#compose-text")).to_have_value("/")
    page.locator("#compose-text").fill("")

    # Typing "/" in the search box is just a character; Escape brings the lists back.
    page.get_by_role("searchbox").focus()
    page.keyboard.press("/")
    expect(page.get_by_role("searchbox")).to_have_value("daught/")
    page.keyboard.press("Escape")
    expect(page.get_by_role("searchbox")).to_have_value("")
    expect(page.locator("#search-section")).to_be_hidden()
    expect(page.locator("#conv-list")).to_be_visible()


def test_a_name_a_number_and_hostile_text(maria: Desk) -> None:
    page = maria.page
    box = page.get_by_role("searchbox", name="Search conversations")
    box.fill("nunez")
    expect(results(maria)).to_have_count(1)
    expect(results(maria).first.locator(".conv-name mark")).to_have_text(["Núñez"])

    box.fill("(415) 555-0402")
    expect(results(maria).first).to_have_attribute("data-phone", BEN)
    expect(results(maria).first.locator(".search-match mark")).to_have_text(["14155550402"])

    box.fill("parking")
    expect(results(maria)).to_have_count(1)
    expect(results(maria).first.locator(".search-match")).to_contain_text(f"Parking map {XSS}")
    expect(page.locator("#search-list img")).to_have_count(0)

    box.fill("zebra")
    expect(page.locator("#search-status")).to_have_text("Nothing matches “zebra”.")
    expect(results(maria)).to_have_count(0)


def test_an_unrouted_result_is_claimed_from_the_results(maria: Desk) -> None:
    page = maria.page
    box = page.get_by_role("searchbox", name="Search conversations")
    box.fill("refill")
    expect(results(maria)).to_have_count(2)
    stranger = page.locator(f'#search-list li[data-phone="{STRANGER}"]')
    stranger.get_by_role("button", name="Claim conversation with +1 (415) 555-0409").click()
    expect(page.locator("#conversation")).to_have_attribute("data-phone", STRANGER)
    box.fill("")
    expect(page.locator("#search-section")).to_be_hidden()
    expect(maria.conv(STRANGER)).to_be_visible()


def test_results_stay_true_as_messages_arrive(maria: Desk, devhost: DevhostProcess) -> None:
    page = maria.page
    box = page.get_by_role("searchbox", name="Search conversations")
    box.fill("pharmacy")
    expect(page.locator("#search-status")).to_have_text("Nothing matches “pharmacy”.")
    patient_replies(devhost, ANA, "Which pharmacy did you send it to?")
    expect(results(maria)).to_have_count(1)  # nobody typed again
    expect(results(maria).first.locator(".search-match mark")).to_have_text(["pharmacy"])
    expect(box).to_have_value("pharmacy")
    box.fill("")
