"""The video tab of `garasam serve` in a real headless Chromium: a bad upload, the sample clip, a
degradation, a click on the first frame, Track, and both overlay videos playable by the browser.
Leaves a screenshot in test-artifacts/web-video.png."""

import pytest

from tests.browser import CHROMIUM, CHROMIUM_ARGS, ROOT, TIMEOUT_MS, needs_chromium, running_server

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def server(tmp_path):
    with running_server(tmp_path) as url:
        yield url


@needs_chromium
def test_video_tab_in_chromium(server, tmp_path) -> None:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)
    not_a_video = tmp_path / "holiday.mp4"
    not_a_video.write_text("this is text, not a video")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1200})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(server)
            page.get_by_role("tab", name="Video").click()
            expect(page.locator("#video-notes")).to_contain_text("Video backbone")

            # a bad upload shows a message naming the file and leaves the server running
            page.locator("#video-upload input[type=file]").set_input_files(str(not_a_video))
            expect(page.locator("#video-status")).to_contain_text(
                "holiday.mp4: PyAV cannot decode this video"
            )

            page.locator("#video-sample").click()
            canvas = page.locator("#video-canvas img").first
            expect(canvas).to_be_visible()
            expect(page.locator("#video-status")).to_contain_text("Click the object on the first frame")

            clean_frame = canvas.get_attribute("src")
            page.locator("#video-degradation input").click()
            page.get_by_role("option", name="fog", exact=True).click()
            expect(page.locator("#video-degradation input")).to_have_value("fog")
            expect(canvas).not_to_have_attribute("src", clean_frame or "")

            box = canvas.bounding_box()
            canvas.click(position={"x": box["width"] * 0.5, "y": box["height"] * 0.5})
            expect(page.locator("#video-status")).to_contain_text("Press Track")
            page.locator("#video-track").click()
            expect(page.locator("#video-status")).to_contain_text("frames/s")
            for panel in ("#video-sam video", "#video-gara video"):
                expect(page.locator(panel)).to_be_visible()
                # the browser decodes the file: its metadata (duration) is read
                page.wait_for_function(
                    f"() => document.querySelector('{panel}')?.readyState >= 1", timeout=TIMEOUT_MS
                )
            expect(page.locator("#video-ranks img")).to_be_visible()
            expect(page.locator("#video-status")).not_to_contain_text("Error")

            artifacts = ROOT / "test-artifacts"
            artifacts.mkdir(exist_ok=True)
            page.screenshot(path=str(artifacts / "web-video.png"), full_page=True)
        finally:
            browser.close()
