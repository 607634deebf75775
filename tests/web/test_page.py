"""The web page at / in a real browser (Debian's chromium), against the live service over corpus/."""

from __future__ import annotations

import httpx
import pytest

from tests.web.conftest import LIVE_ADMIN_KEY, LIVE_READ_KEY, WEB_COLLECTION, Page

pytestmark = pytest.mark.slow

PARENTAL = "How many weeks of fully paid parental leave do eligible parents get?"
BIKES = """# Zephyr cargo bikes

Employees may borrow a Zephyr cargo bike for up to 3 days per month from the Tacoma office.
Bikes are booked in PeopleHub under Facilities and must be returned with a charged battery.
"""
BIKES_QUESTION = "For how many days per month may employees borrow a Zephyr cargo bike?"
PARKING = """# Kiosk parking passes

Visitors get a kiosk parking pass at the front desk for the day of their visit.
"""
SCRIPT = "<script>window.__pwned=1</script>"
IMG = '<img src=x onerror="window.__pwned=1">'
MARKUP = f"""# Kiosk banner markup

The kiosk banner test string is {SCRIPT} and the kiosk image test string is {IMG} in the banner file.
Kiosk banners must show markup as plain text and never run it.
"""
MARKUP_QUESTION = "What is the kiosk banner test string?"


def _query(live_url: str, question: str, collection: str = "default") -> dict:
    response = httpx.post(
        f"{live_url}/v1/query",
        json={"question": question, "collection": collection, "generator": "extractive"},
        headers={"Authorization": f"Bearer {LIVE_ADMIN_KEY}"},
        timeout=60,
    )
    response.raise_for_status()
    return response.json()


def test_admin_key_then_a_streamed_cited_answer(web: Page) -> None:
    page = web.page
    web.open(None)
    # No key yet: the page asks for one, in a labelled password field, and keeps it per tab.
    key_input = page.get_by_label("API key", exact=True)
    assert key_input.get_attribute("type") == "password"
    web.screenshot("01-key-prompt")
    web.open(LIVE_ADMIN_KEY)
    assert page.evaluate("sessionStorage.getItem('ragfirst.apiKey')") == LIVE_ADMIN_KEY
    assert page.evaluate("localStorage.length") == 0
    assert page.get_attribute("#role", "data-role") == "admin"

    web.ask(PARENTAL)
    answer = page.locator("#answer")
    assert answer.get_attribute("data-state") == "done"
    assert int(answer.get_attribute("data-deltas") or 0) >= 1, "no delta events were shown"
    assert "16 weeks" in page.inner_text("#answer-text")
    assert page.locator("#answer-text button.cite").count() >= 1
    badges = page.inner_text("#answer .badges")
    assert "Generator: extractive" in badges
    assert "Extractive fallback: no" in badges
    sources = page.locator("#sources-list li.source")
    assert sources.count() >= 1
    assert "Parental Leave Policy" in sources.first.inner_text()
    web.screenshot("01-answer")

    # Every field has a label; focus is visible when moving with the keyboard.
    unlabelled = page.evaluate(
        "[...document.querySelectorAll('input, select, textarea')]"
        ".filter((el) => !el.labels || el.labels.length === 0).map((el) => el.outerHTML)"
    )
    assert unlabelled == []
    page.get_by_label("Question").focus()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "ask-button"
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") == "solid"


def test_citation_opens_the_passage_with_the_quote_marked(web: Page, live_url: str) -> None:
    expected = _query(live_url, PARENTAL)["citations"][0]
    page = web.page
    web.open(LIVE_ADMIN_KEY)
    web.ask(PARENTAL)
    cite = page.locator("#answer-text button.cite").first
    assert cite.inner_text() == f"[{expected['n']}]"
    cite.focus()
    page.keyboard.press("Enter")  # a real button: the keyboard opens it
    mark = page.locator("#passage-text mark")
    mark.wait_for()
    assert mark.inner_text() == expected["quote"]
    assert mark.is_visible()
    assert page.evaluate("document.activeElement.id") == "passage-title"
    assert "Verified" in page.inner_text("#passage")
    web.screenshot("02-citation-passage")
    page.get_by_role("button", name="Back to the answer").click()
    assert page.locator("#passage").is_hidden()
    assert page.evaluate("document.activeElement.classList.contains('cite')")


def test_upload_then_ask_about_it(web: Page) -> None:
    page = web.page
    web.open(LIVE_ADMIN_KEY)
    web.upload({"web-bikes.md": BIKES, "web-parking.md": PARKING, "empty.md": ""})
    outcomes = {
        li.locator("code").inner_text(): li.get_attribute("data-outcome")
        for li in page.locator("#upload-outcomes li.outcome").all()
    }
    assert outcomes["web-bikes.md"] in {"added", "unchanged", "updated"}
    assert outcomes["web-parking.md"] in {"added", "unchanged", "updated"}
    assert outcomes["empty.md"] in {"skipped", "failed"}
    empty = page.locator("#upload-outcomes li[data-outcome]", has_text="empty.md")
    assert ":" in empty.inner_text(), "a skipped or failed file shows its reason"
    assert page.get_attribute("#upload-progress", "value") == "100"
    page.locator("#doc-list code", has_text="web-bikes.md").wait_for()
    web.screenshot("03-upload")

    web.ask(BIKES_QUESTION, collection=WEB_COLLECTION)
    assert "3 days" in page.inner_text("#answer-text")
    bikes = page.locator("#sources-list li.source", has_text="web-bikes.md")
    n = bikes.first.get_attribute("data-n")
    cite = page.locator(f"#answer-text button.cite[data-n='{n}']")
    assert cite.count() >= 1, "the uploaded document is cited"
    cite.first.click()
    assert "Zephyr cargo bikes" in page.inner_text("#passage-title")
    assert "3 days" in page.inner_text("#passage-text mark")
    web.screenshot("03-upload-answer")


def test_delete_asks_for_confirmation(web: Page) -> None:
    page = web.page
    web.open(LIVE_ADMIN_KEY)
    web.upload({"web-delete-me.md": "# Delete me\n\nThis note exists to be deleted by the page test.\n"})
    row = page.locator("#doc-list tr", has_text="web-delete-me.md")
    row.wait_for()
    row.get_by_role("button", name="Delete web-delete-me.md").click()
    assert "Delete web-delete-me.md" in row.inner_text()
    row.get_by_role("button", name="Cancel").click()
    assert row.count() == 1
    row.get_by_role("button", name="Delete web-delete-me.md").click()
    web.screenshot("04-delete-confirm")
    row.get_by_role("button", name="Yes, delete").click()
    page.locator("#documents .msg-ok", has_text="Deleted web-delete-me.md").wait_for()
    assert page.locator("#doc-list tr", has_text="web-delete-me.md").count() == 0


def test_read_key_gets_no_admin_controls(web: Page) -> None:
    page = web.page
    web.open(None)
    page.get_by_label("API key", exact=True).fill("not-a-key")
    page.get_by_label("API key", exact=True).press("Enter")
    page.locator(".key-panel .msg-error", has_text="not accepted").wait_for()
    assert page.evaluate("sessionStorage.getItem('ragfirst.apiKey')") is None
    web.open(LIVE_READ_KEY)
    assert page.get_attribute("#role", "data-role") == "read"
    for selector in ("#documents", "#evaluation", "input[type=file]", "button.delete", "#upload-form"):
        assert page.locator(selector).count() == 0, f"{selector} is in a read key's page"
    web.ask(PARENTAL)
    assert page.locator("#answer-text button.cite").count() >= 1
    assert page.locator("button.delete, input[type=file], #evaluation").count() == 0
    web.screenshot("05-read-key")


def test_document_markup_shows_as_text(web: Page) -> None:
    page = web.page
    web.open(LIVE_ADMIN_KEY)
    web.upload({"web-markup.md": MARKUP})
    web.ask(MARKUP_QUESTION, collection=WEB_COLLECTION)
    source = page.locator("#sources-list li.source", has_text="web-markup.md").first
    source.get_by_role("button").click()
    passage = page.inner_text("#passage-text")
    assert SCRIPT in passage
    assert IMG in passage
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.locator("img[src=x], #main script").count() == 0
    assert page.get_by_text(SCRIPT).first.is_visible()
    web.screenshot("06-markup-as-text")


def test_narrow_viewport_has_no_horizontal_scroll(web: Page) -> None:
    page = web.page
    page.set_viewport_size({"width": 375, "height": 800})
    web.open(LIVE_ADMIN_KEY)
    web.ask(PARENTAL)
    page.locator("#answer-text button.cite").first.click()
    page.locator("#passage-text mark").wait_for()
    page.locator("#doc-list tbody tr").first.wait_for()
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    answer = page.locator("#answer").bounding_box()
    sources = page.locator("#sources").bounding_box()
    assert answer and sources
    assert sources["y"] >= answer["y"] + answer["height"], "the sources go under the answer"
    web.screenshot("07-narrow-375")
