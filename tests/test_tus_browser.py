"""The example app's "large file" page in headless Chromium: Uppy with its tus plugin and
status bar, a dropped PATCH, and the upload resuming from the server's offset.

The network drop is Playwright's: the route aborts one PATCH before it reaches the server
(as a cut connection looks to the page), so Uppy's tus plugin must ask the offset (HEAD) and
go on from there. Uppy's prebuilt bundle comes from npm into ``.venv/node`` (``make test`` /
``make run``, UPPY_VERSION in the Makefile); without it, or without Chromium, the browser test
skips with the reason (a failure on CI).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from playwright.sync_api import Page, Route, expect, sync_playwright

from example_app import create_app
from example_app.views import UPPY_FILES, UPPY_FOLDER
from tests.test_browser import CHROMIUM, CHROMIUM_ARGS
from tests.test_first_hour import served_on_loopback

CHUNK = 256 * 1024
UPPY_INSTALLED = all(
    os.path.isfile(os.path.join(UPPY_FOLDER, name)) for name in UPPY_FILES.values()
)
needs_uppy = pytest.mark.skipif(
    not UPPY_INSTALLED,
    reason="Uppy is missing from .venv/node: `make test` or `make run` installs it with npm "
    "(UPPY_VERSION in the Makefile).",
)


def large_page_app(tmp_path: Path, **config: object) -> Flask:
    return create_app(
        {
            "SECRET_KEY": "tus-browser-test",
            "STORE_PATH": str(tmp_path / "uploads"),
            "LARGE_UPLOAD_CHUNK_BYTES": CHUNK,
            **config,
        },
        instance_path=str(tmp_path / "instance"),
    )


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


@needs_uppy
def test_large_file_page_resumes_after_a_network_drop(tmp_path: Path, page: Page) -> None:
    app = large_page_app(tmp_path)
    data = os.urandom(12 * CHUNK + 1234)  # 3 MiB and a bit: 13 PATCHes of 256 KiB at most
    seen: list[str] = []
    offsets: list[int] = []
    dropped: list[int] = []

    def network(route: Route) -> None:
        method = route.request.method
        seen.append(method)
        if method == "PATCH":
            offset = int(route.request.headers["upload-offset"])
            offsets.append(offset)
            if len(offsets) == 3 and not dropped:
                dropped.append(offset)
                route.abort("connectionreset")
                return
        route.continue_()

    with served_on_loopback(app) as url:
        page.route("**/resumable/**", network)
        page.goto(f"{url}/large")
        bar = page.locator("#large-progress [role=progressbar]")
        page.set_input_files(
            "#large-file",
            files=[{"name": "movie.bin", "mimeType": "application/octet-stream", "buffer": data}],
        )
        page.click("#large-button")
        expect(page.locator("#large-status")).to_have_text("Uploaded movie.bin.", timeout=30_000)
        expect(page.locator("#large-link")).to_have_attribute("href", "/flaskstore/movie.bin")
        # Uppy's status bar, the page's progress bar, reached 100% and says so.
        expect(bar).to_have_attribute("aria-valuenow", "100")
        expect(page.locator("#large-progress .uppy-StatusBar")).to_have_class(
            "uppy-StatusBar is-complete"
        )
        served = page.request.get(f"{url}/flaskstore/movie.bin")
        assert served.ok
        assert served.body() == data

    assert dropped == [2 * CHUNK]
    # One upload, created once; after the drop the client asked the offset (HEAD) and sent
    # the dropped chunk again from there, not the file from the start.
    assert seen.count("POST") == 1
    assert "HEAD" in seen[seen.index("PATCH") :]
    chunks = list(range(0, len(data), CHUNK))
    assert offsets == chunks[:3] + chunks[2:]
    assert (tmp_path / "uploads" / "movie.bin").read_bytes() == data


@needs_uppy
def test_large_file_page_refuses_a_file_over_the_limit_before_sending(
    tmp_path: Path, page: Page
) -> None:
    """Uppy checks ``STORE_TUS_MAX_SIZE`` from the page: nothing is sent, the page says why."""
    app = large_page_app(tmp_path, STORE_TUS_MAX_SIZE=4096)
    seen: list[str] = []
    with served_on_loopback(app) as url:
        page.route("**/resumable/**", lambda route: seen.append(route.request.method))
        page.goto(f"{url}/large")
        page.set_input_files(
            "#large-file",
            files=[
                {"name": "big.bin", "mimeType": "application/octet-stream", "buffer": b"x" * 5000}
            ],
        )
        page.click("#large-button")
        expect(page.locator("#large-status")).to_contain_text("big.bin exceeds maximum")
        expect(page.locator("#large-button")).to_be_enabled()
    assert seen == []
    assert [entry.name for entry in (tmp_path / "uploads").glob("[!.]*")] == []


@needs_uppy
def test_large_file_page_serves_uppy_from_the_virtualenv(tmp_path: Path) -> None:
    client = large_page_app(tmp_path).test_client()
    page = client.get("/large").get_data(as_text=True)
    scripts = re.findall(r'<script[^>]* src="([^"]+)"', page)
    styles = re.findall(r'<link rel="stylesheet" href="([^"]+)"', page)
    assert "/vendor/uppy.min.js" in scripts and "/vendor/uppy.min.css" in styles
    # No CDN: every script and style sheet comes from the app itself.
    assert all(url.startswith("/") and not url.startswith("//") for url in scripts + styles)
    for name, kind in (("uppy.min.js", "text/javascript"), ("uppy.min.css", "text/css")):
        response = client.get(f"/vendor/{name}")
        assert response.status_code == 200
        assert response.mimetype == kind
        with open(os.path.join(UPPY_FOLDER, name), "rb") as installed:
            assert response.get_data() == installed.read()
    # Only those two files: no other name, no path from the request reaches the folder.
    for path in ("/vendor/package.json", "/vendor/uppy.min.js.map", "/vendor/../views.py"):
        assert client.get(path).status_code == 404


def test_large_file_page_says_what_to_do_without_uppy(tmp_path: Path) -> None:
    """npm missing: the page tells how to install Uppy, and the vendor routes answer 404."""
    client = large_page_app(tmp_path, UPPY_FOLDER=str(tmp_path / "no-uppy")).test_client()
    page = client.get("/large").get_data(as_text=True)
    assert "Uppy is missing" in page
    assert "make run" in page
    assert str(tmp_path) not in page
    assert client.get("/vendor/uppy.min.js").status_code == 404
    assert client.get("/vendor/uppy.min.css").status_code == 404


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
