"""Testing an app that saves files: run it on MemoryStore, so nothing touches the disk."""

from __future__ import annotations

import io

import pytest
from flask import Flask
from flask.testing import FlaskClient
from quickstart import create_app, store


@pytest.fixture
def app() -> Flask:
    # Every app gets its own MemoryStore: tests cannot see each other's files.
    return create_app({"TESTING": True, "STORE_PROVIDER": "memory"})


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def upload(client: FlaskClient, data: bytes, filename: str) -> str:
    response = client.post("/upload", data={"afile": (io.BytesIO(data), filename)})
    assert response.status_code == 200
    return response.text


def test_upload_answers_with_the_file_url(client: FlaskClient) -> None:
    url = upload(client, b"fake jpeg", "localfile.jpg")
    assert url == "http://127.0.0.1:5000/flaskstore/localfile.jpg"


def test_the_file_is_stored_and_served(app: Flask, client: FlaskClient) -> None:
    upload(client, b"fake jpeg", "localfile.jpg")
    with app.app_context():
        provider = store.Provider()
        assert list(provider) == ["localfile.jpg"]
        assert provider.file("localfile.jpg").read() == b"fake jpeg"
    assert client.get("/flaskstore/localfile.jpg").data == b"fake jpeg"


def test_a_second_upload_with_the_same_name_is_renamed(client: FlaskClient) -> None:
    first = upload(client, b"one", "a.jpg")
    second = upload(client, b"two", "a.jpg")
    assert first.endswith("/a.jpg")
    assert second != first
    assert second.rsplit("/", 1)[1].startswith("a_")
