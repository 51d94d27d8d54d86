"""The example app through Flask's test client: upload, gallery, serving, delete, errors, CSRF."""

from __future__ import annotations

import io
import re
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from example_app import create_app, store
from example_app.dev_s3 import create_bucket, moto_server, s3_environment
from example_app.settings import load_or_create_secret_key, store_settings_from_env
from flask_store.stores.s3 import S3Store

PNG_ISH = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


@pytest.fixture(params=["local", "memory"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Flask:
    return create_app(
        {
            "SECRET_KEY": "test",
            "STORE_PROVIDER": request.param,
            "STORE_PATH": str(tmp_path / "uploads"),
            "UPLOAD_MAX_BYTES": 1000,
        },
        instance_path=str(tmp_path / "instance"),
    )


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def csrf_token(client: FlaskClient) -> str:
    page = client.get("/").text
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page)
    assert match, "the page has no CSRF token"
    return match.group(1)


def post_file(
    client: FlaskClient, data: bytes, filename: str, *, json: bool = False, token: str | None = ""
) -> Any:
    form: dict[str, Any] = {"file": (io.BytesIO(data), filename)}
    if token is not None:
        form["csrf_token"] = token or csrf_token(client)
    headers = {"Accept": "application/json"} if json else {}
    return client.post("/upload", data=form, headers=headers)


def test_empty_gallery_page_has_form_and_labels(client: FlaskClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert '<label class="dropzone-label" for="file">Choose a file</label>' in page.text
    assert "Nothing here yet" in page.text
    assert 'enctype="multipart/form-data"' in page.text


def test_plain_form_upload_redirects_and_lists_the_file(client: FlaskClient) -> None:
    response = post_file(client, PNG_ISH, "holiday photo.png")
    assert response.status_code == 302
    page = client.get("/").text
    assert "Uploaded “holiday photo.png” (264 bytes)." in page
    assert '<img class="thumb" src="/flaskstore/holiday_photo.png"' in page
    assert "image/png" in page
    served = client.get("/flaskstore/holiday_photo.png")
    assert served.data == PNG_ISH
    assert served.mimetype == "image/png"


def test_script_upload_gets_json_with_the_new_card(client: FlaskClient) -> None:
    response = post_file(client, b"a,b\n1,2\n", "table.csv", json=True)
    assert response.status_code == 201
    body = response.get_json()
    assert body["ok"] is True
    assert body["url"] == "/flaskstore/table.csv"
    assert '<span class="type-badge" aria-hidden="true">CSV</span>' in body["card"]
    assert "text/csv" in body["card"]
    assert client.get(body["url"]).data == b"a,b\n1,2\n"


def test_disallowed_type_is_refused_with_a_clear_message(app: Flask, client: FlaskClient) -> None:
    page = post_file(client, b"<script>", "evil.html")
    assert page.status_code == 400
    assert "“evil.html” is not a type this site accepts. Allowed types: PNG" in page.text
    json = post_file(client, b"MZ", "tool.exe", json=True)
    assert json.status_code == 400
    assert json.get_json()["errors"][0].startswith("“tool.exe” is not a type")
    with app.app_context():
        assert list(store.Provider().keys()) == []


def test_too_large_file_is_refused_by_the_form(client: FlaskClient) -> None:
    response = post_file(client, b"x" * 1001, "big.txt", json=True)
    assert response.status_code == 400
    assert response.get_json()["errors"] == ["“big.txt” is too large: files may be up to 1 KB."]


def test_body_over_max_content_length_gets_413_with_the_limit(client: FlaskClient) -> None:
    response = post_file(client, b"x" * 200_000, "huge.txt", json=True)
    assert response.status_code == 413
    assert response.get_json()["errors"] == ["That file is too large: files may be up to 1 KB."]


def test_missing_file_and_missing_csrf_are_reported(client: FlaskClient) -> None:
    no_file = client.post(
        "/upload", data={"csrf_token": csrf_token(client)}, headers={"Accept": "application/json"}
    )
    assert no_file.get_json()["errors"] == ["Choose a file to upload."]
    no_token = post_file(client, PNG_ISH, "a.png", json=True, token=None)
    assert no_token.status_code == 400
    assert no_token.get_json()["errors"] == ["The CSRF token is missing."]


def test_delete_needs_csrf_and_removes_the_file(app: Flask, client: FlaskClient) -> None:
    post_file(client, PNG_ISH, "a.png")
    refused = client.post("/files/a.png/delete", follow_redirects=True)
    assert "nothing was deleted" in refused.text
    assert client.get("/flaskstore/a.png").status_code == 200

    deleted = client.post(
        "/files/a.png/delete", data={"csrf_token": csrf_token(client)}, follow_redirects=True
    )
    assert "Deleted “a.png”." in deleted.text
    assert client.get("/flaskstore/a.png").status_code == 404
    again = client.post(
        "/files/a.png/delete", data={"csrf_token": csrf_token(client)}, follow_redirects=True
    )
    assert "already been deleted" in again.text


def test_delete_of_a_key_outside_the_store_is_404(client: FlaskClient) -> None:
    response = client.post("/files/../secret/delete", data={"csrf_token": csrf_token(client)})
    assert response.status_code == 404


def test_gallery_lists_newest_first_and_counts(client: FlaskClient) -> None:
    for name in ("one.txt", "two.txt"):
        post_file(client, name.encode(), name)
    page = client.get("/").text
    assert "2 files" in page
    assert page.index("two.txt") < page.index("one.txt")


def test_store_settings_from_env_parse_json_values() -> None:
    env = {"STORE_PROVIDER": "s3", "STORE_SERVE": "false", "STORE_CACHE_MAX_AGE": "60", "HOME": "/"}
    assert store_settings_from_env(env) == {
        "STORE_PROVIDER": "s3",
        "STORE_SERVE": False,
        "STORE_CACHE_MAX_AGE": 60,
    }


def test_dev_secret_key_is_created_once_and_private(tmp_path: Path) -> None:
    first = load_or_create_secret_key(str(tmp_path / "instance"))
    assert load_or_create_secret_key(str(tmp_path / "instance")) == first
    assert len(first) >= 40
    assert (tmp_path / "instance" / "secret_key").stat().st_mode & 0o077 == 0


def test_default_app_stores_in_the_instance_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("STORE_PROVIDER", "STORE_PATH", "FLASK_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    app = create_app(instance_path=str(tmp_path / "instance"))
    response = post_file(app.test_client(), PNG_ISH, "a.png")
    assert response.status_code == 302
    assert (tmp_path / "instance" / "uploads" / "a.png").read_bytes() == PNG_ISH


def test_run_s3_switches_the_app_to_s3_on_a_moto_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What ``make run-s3`` does: moto, its bucket, and the app on it through ``STORE_*``."""
    import boto3

    with moto_server() as endpoint_url:
        create_bucket(endpoint_url)
        settings = s3_environment(endpoint_url)
        for name, value in settings.items():
            monkeypatch.setenv(name, value)
        app = create_app({"SECRET_KEY": "test"}, instance_path=str(tmp_path / "instance"))
        with app.app_context():
            assert isinstance(store.Provider(), S3Store)
        client = app.test_client()
        assert post_file(client, PNG_ISH, "beach.png").status_code == 302
        page = client.get("/").text
        assert '<img class="thumb" src="/flaskstore/beach.png"' in page
        served = client.get("/flaskstore/beach.png")
        assert served.status_code == 302
        with urllib.request.urlopen(served.headers["Location"], timeout=30) as response:
            assert response.read() == PNG_ISH
        s3 = boto3.client(
            "s3",
            endpoint_url=settings["STORE_S3_ENDPOINT_URL"],
            region_name=settings["STORE_S3_REGION"],
            aws_access_key_id=settings["STORE_S3_ACCESS_KEY"],
            aws_secret_access_key=settings["STORE_S3_SECRET_KEY"],
        )
        bucket = settings["STORE_S3_BUCKET"]
        listed = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
        assert [item["Key"] for item in listed] == ["uploads/beach.png"]
        deleted = client.post(
            "/files/beach.png/delete",
            data={"csrf_token": csrf_token(client)},
            follow_redirects=True,
        )
        assert "Deleted “beach.png”." in deleted.text
        assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
