"""The example app's "large file" page in headless Chromium: tus-js-client, a dropped
PATCH, and the upload resuming from the server's offset.

The network drop is Playwright's: the route aborts one PATCH before it reaches the server
(as a cut connection looks to the page), so tus-js-client must ask the offset (HEAD) and go
on from there. tus-js-client comes from npm into ``.venv/node`` (``make test``); without
it, or without Chromium, the test skips with the reason (a failure on CI).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, Route, expect, sync_playwright

from example_app import create_app
from example_app.views import TUS_CLIENT_SCRIPT
from tests.test_browser import CHROMIUM, CHROMIUM_ARGS
from tests.test_first_hour import served_on_loopback

if not os.path.isfile(TUS_CLIENT_SCRIPT):
    pytest.skip(
        "tus-js-client is missing from .venv/node: `make test` installs it with npm "
        "(TUS_JS_VERSION in the Makefile).",
        allow_module_level=True,
    )

CHUNK = 256 * 1024


@pytest.fixture
def page() -> Iterator[Page]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            context = browser.new_context()
            yield context.new_page()
            context.close()
        finally:
            browser.close()


def test_large_file_page_resumes_after_a_network_drop(tmp_path: Path, page: Page) -> None:
    app = create_app(
        {
            "SECRET_KEY": "tus-browser-test",
            "STORE_PATH": str(tmp_path / "uploads"),
            "LARGE_UPLOAD_CHUNK_BYTES": CHUNK,
        },
        instance_path=str(tmp_path / "instance"),
    )
    data = os.urandom(6 * CHUNK + 1234)
    seen: list[str] = []
    dropped: list[str] = []

    def network(route: Route) -> None:
        method = route.request.method
        seen.append(method)
        if method == "PATCH" and seen.count("PATCH") == 3 and not dropped:
            dropped.append(route.request.url)
            route.abort("connectionreset")
            return
        route.continue_()

    with served_on_loopback(app) as url:
        page.route("**/resumable/**", network)
        page.goto(f"{url}/large")
        page.set_input_files(
            "#large-file",
            files=[{"name": "movie.bin", "mimeType": "application/octet-stream", "buffer": data}],
        )
        page.click("#large-button")
        expect(page.locator("#large-status")).to_have_text("Uploaded movie.bin.", timeout=30_000)
        expect(page.locator("#large-link")).to_have_attribute("href", "/flaskstore/movie.bin")
        served = page.request.get(f"{url}/flaskstore/movie.bin")
        assert served.ok
        assert hashlib.sha256(served.body()).hexdigest() == hashlib.sha256(data).hexdigest()

    assert len(dropped) == 1
    after_drop = seen[seen.index("PATCH") :]
    # The dropped PATCH is the third; tus-js-client then asks the offset and carries on.
    assert seen[0] == "POST"
    assert "HEAD" in after_drop
    assert (tmp_path / "uploads" / "movie.bin").read_bytes() == data


def test_large_file_page_needs_its_session(tmp_path: Path) -> None:
    """The example's authorisation hook: no upload without having visited the page."""
    app = create_app(
        {"SECRET_KEY": "x", "STORE_PATH": str(tmp_path / "uploads")},
        instance_path=str(tmp_path / "instance"),
    )
    client = app.test_client()
    headers = {"Tus-Resumable": "1.0.0", "Upload-Length": "3"}
    assert client.post("/resumable/", headers=headers).status_code == 403
    assert client.get("/large").status_code == 200
    assert client.post("/resumable/", headers=headers).status_code == 201
    assert client.get("/vendor/tus.min.js").status_code == 200
