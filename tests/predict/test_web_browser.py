"""`garasam serve` in a real headless Chromium: a bad upload, a good upload, a degradation, a click, both masks.

Uses Debian's chromium (scripts/install_chromium.sh) through Playwright; Playwright never downloads a
browser here. Leaves a screenshot in test-artifacts/web.png.
"""

import pytest

from tests.browser import CHROMIUM, CHROMIUM_ARGS, ROOT, TIMEOUT_MS, needs_chromium, running_server

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SAMPLE = ROOT / "garasam" / "assets" / "samples" / "astronaut.jpg"


@pytest.fixture
def server(tmp_path):
    with running_server(tmp_path) as url:
        yield url


@needs_chromium
def test_compare_page_in_chromium(server, tmp_path) -> None:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)  # the page waits on a 2-core CPU shared with other tests

    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("this is text, not a picture")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(server)
            expect(page.locator("#notes")).to_contain_text("GaRA")

            # a bad upload shows a message and leaves the server running
            page.locator("#upload input[type=file]").set_input_files(str(not_an_image))
            expect(page.locator("#status")).to_contain_text("notes.png: not an image file")
            page.locator("#upload").get_by_role("button", name="Clear").click()

            page.locator("#upload input[type=file]").set_input_files(str(SAMPLE))
            canvas = page.locator("#canvas img").first
            expect(canvas).to_be_visible()
            expect(page.locator("#status")).to_contain_text("Click on the image")

            clean_image = canvas.get_attribute("src")
            page.locator("#degradation input").click()
            page.get_by_role("option", name="fog", exact=True).click()
            expect(page.locator("#degradation input")).to_have_value("fog")
            # the fogged image must be on the page before the click: a click sent while the server is
            # still degrading is answered first, and the degradation's answer then clears its prompt
            expect(canvas).not_to_have_attribute("src", clean_image or "")

            box = canvas.bounding_box()
            canvas.click(position={"x": box["width"] * 0.45, "y": box["height"] * 0.3})
            expect(page.locator("#sam-mask img")).to_be_visible()
            expect(page.locator("#gara-mask img")).to_be_visible()
            expect(page.locator("#rank-chart img")).to_be_visible()
            expect(page.locator("#sam-score")).to_contain_text("predicted IoU")
            expect(page.locator("#gara-score")).to_contain_text("predicted IoU")
            expect(page.locator("#status")).not_to_contain_text("Error")

            artifacts = ROOT / "test-artifacts"
            artifacts.mkdir(exist_ok=True)
            page.screenshot(path=str(artifacts / "web.png"), full_page=True)
        finally:
            browser.close()
