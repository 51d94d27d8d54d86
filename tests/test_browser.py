"""The example app in a real browser: headless Chromium driven by Playwright.

The app runs in a real WSGI server on a free loopback port; the browser is the system
Chromium (never one downloaded at run time). Without ``/usr/bin/chromium`` these tests skip
with the reason, which ``conftest.py`` turns into a failure on CI.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

from example_app import create_app
from example_app.formatting import human_size
from tests.test_first_hour import served_on_loopback

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

if not os.path.exists(CHROMIUM):
    pytest.skip(
        f"{CHROMIUM} is missing: install the 'chromium' system package to run the browser "
        "tests (.ci/run does).",
        allow_module_level=True,
    )


def make_png(width: int, height: int) -> bytes:
    """A valid RGB PNG with a colour gradient, written by hand (no imaging library needed)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(
        b"\x00" + b"".join(bytes((x * 255 // width, y * 255 // height, 160)) for x in range(width))
        for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def attribute(locator: Locator, name: str) -> str:
    """An attribute the element must have."""
    value = locator.get_attribute(name)
    assert value is not None, f"the element has no {name} attribute"
    return value


@pytest.fixture
def live_app(tmp_path: Path) -> Iterator[str]:
    """The example app on the local store, served on a free port; yields its base URL."""
    app = create_app(
        {"SECRET_KEY": "browser-test", "STORE_PATH": str(tmp_path / "uploads")},
        instance_path=str(tmp_path / "instance"),
    )
    with served_on_loopback(app) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    try:
        yield context.new_page()
    finally:
        context.close()


def test_upload_view_delete_with_progress_bar(page: Page, live_app: str, tmp_path: Path) -> None:
    png = make_png(48, 32)
    image = tmp_path / "sunset.png"
    image.write_bytes(png)

    page.goto(live_app + "/")
    expect(page.get_by_text("Nothing here yet")).to_be_visible()
    page.get_by_label("Choose a file").set_input_files(str(image))
    page.get_by_role("button", name="Upload").click()

    progress = page.locator("#upload-progress")
    expect(progress).to_have_attribute("value", "100")
    expect(page.locator("#progress-text")).to_have_text("Upload complete")
    thumbnail = page.locator('img.thumb[alt="sunset.png"]')
    expect(thumbnail).to_be_visible()
    page.wait_for_function(
        "img => img.complete && img.naturalWidth === 48", arg=thumbnail.element_handle()
    )
    expect(page.get_by_role("status")).to_have_text(
        f"Uploaded “sunset.png” ({human_size(len(png))})."
    )
    expect(page.locator("#file-count")).to_have_text("1 file")

    served = page.request.get(live_app + attribute(thumbnail, "src"))
    assert served.status == 200
    assert served.headers["content-type"] == "image/png"
    assert served.body() == png

    page.get_by_label("Choose a file").set_input_files(
        {"name": "setup.exe", "mimeType": "application/octet-stream", "buffer": b"MZ\x90\x00"}
    )
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#upload-errors")).to_contain_text(
        "“setup.exe” is not a type this site accepts."
    )
    expect(page.locator(".card")).to_have_count(1)

    screenshot = tmp_path / "gallery.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.read_bytes().startswith(b"\x89PNG")

    page.get_by_role("button", name="Delete sunset.png").click()
    expect(page.get_by_role("status")).to_have_text("Deleted “sunset.png”.")
    expect(page.locator(".card")).to_have_count(0)
    expect(page.get_by_text("Nothing here yet")).to_be_visible()
    assert page.request.get(served.url).status == 404


def test_drag_and_drop_uploads(page: Page, live_app: str) -> None:
    page.goto(live_app + "/")
    page.evaluate(
        """() => {
            const data = new DataTransfer();
            data.items.add(new File(["id,name\\n1,Ada\\n"], "people.csv", {type: "text/csv"}));
            const zone = document.getElementById("dropzone");
            zone.dispatchEvent(new DragEvent("dragover", {dataTransfer: data, bubbles: true}));
            zone.dispatchEvent(new DragEvent("drop", {dataTransfer: data, bubbles: true}));
        }"""
    )
    expect(page.locator("#progress-text")).to_have_text("Upload complete")
    card = page.locator(".card", has_text="people.csv")
    expect(card.locator(".type-badge")).to_have_text("CSV")
    expect(card.locator(".card-meta")).to_contain_text("text/csv")
    link = card.get_by_role("link", name="people.csv")
    assert page.request.get(live_app + attribute(link, "href")).body() == b"id,name\n1,Ada\n"


def test_upload_works_without_javascript(browser: Browser, live_app: str, tmp_path: Path) -> None:
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(live_app + "/")
        page.get_by_label("Choose a file").set_input_files(
            {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"plain form post"}
        )
        page.get_by_role("button", name="Upload").click()
        expect(page.get_by_role("status")).to_have_text("Uploaded “notes.txt” (15 bytes).")
        expect(page.locator(".card", has_text="notes.txt")).to_be_visible()
        expect(page.locator("#progress-row")).to_be_hidden()
    finally:
        context.close()


def test_photo_gallery_on_database_rows(page: Page, live_app: str, tmp_path: Path) -> None:
    """/photos: an image on a StoredImage row gets a thumbnail the browser can draw; a text
    file named .png is refused; deleting the photo deletes its files."""
    photos_folder = tmp_path / "instance" / "photos"
    page.goto(live_app + "/photos/")
    expect(page.get_by_text("No photos yet.")).to_be_visible()

    page.get_by_label("Choose an image").set_input_files(
        {"name": "lake.png", "mimeType": "image/png", "buffer": make_png(120, 80)}
    )
    page.get_by_role("button", name="Add photo").click()
    expect(page.get_by_role("status")).to_have_text("Added “lake.png”.")
    thumbnail = page.locator('#photo-cards img.thumb[alt="lake.png"]')
    expect(thumbnail).to_be_visible()
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=thumbnail.element_handle()
    )
    natural = thumbnail.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert natural[0] > 0 and natural[0] <= 320 and natural[0] * 2 == natural[1] * 3  # 3:2 kept
    assert sorted(p.name for p in photos_folder.iterdir()) == ["lake.png", "lake.small.png"]
    thumbnail_url = live_app + attribute(thumbnail, "src")
    assert page.request.get(thumbnail_url).status == 200

    page.get_by_label("Choose an image").set_input_files(
        {"name": "fake.png", "mimeType": "image/png", "buffer": b"not an image at all"}
    )
    page.get_by_role("button", name="Add photo").click()
    expect(page.locator("#photo-errors")).to_contain_text("'fake.png' is not a valid image")
    expect(page.locator("#photo-cards .card")).to_have_count(1)
    assert sorted(p.name for p in photos_folder.iterdir()) == ["lake.png", "lake.small.png"]

    page.get_by_role("button", name="Delete lake.png").click()
    expect(page.get_by_role("status")).to_have_text("Deleted “lake.png”.")
    expect(page.locator("#photo-cards .card")).to_have_count(0)
    assert list(photos_folder.iterdir()) == []
    assert page.request.get(thumbnail_url).status == 404
