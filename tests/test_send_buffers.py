"""Large answers to a peer on loopback get a capped socket send buffer (send_buffers.py).

Served through both paths (the Flask view and the fast path), with gunicorn's
``environ["gunicorn.socket"]`` being a real TCP connection over 127.0.0.1.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_store import Store
from flask_store.send_buffers import (
    LOOPBACK_SEND_BUFFER,
    cap_for_loopback_peer,
    is_loopback_address,
)
from flask_store.serving import SEQUENTIAL_FROM, SMALL_BODY


@pytest.fixture
def connection() -> Iterator[socket.socket]:
    """The server side of a real TCP connection from 127.0.0.1, as gunicorn holds it."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    with client, server:
        yield server


def send_buffer(sock: socket.socket) -> int:
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)


def make_app(folder: Path, fast: bool) -> Flask:
    app = Flask(__name__, instance_path=str(folder.parent / "instance"))
    app.config.update(STORE_PATH=str(folder), STORE_SERVE_FAST=fast)
    store = Store(app)
    with app.app_context():
        backend = store.registry(app).resolve(None)
        backend.put("large.bin", bytes(SEQUENTIAL_FROM))
        backend.put("small.bin", bytes(SMALL_BODY))
    return app


@pytest.mark.parametrize("fast", [False, True], ids=["flask", "fast"])
def test_a_large_answer_to_a_loopback_peer_caps_the_send_buffer(
    tmp_path: Path, connection: socket.socket, fast: bool
) -> None:
    client = make_app(tmp_path / "store", fast).test_client()
    environ = {"gunicorn.socket": connection}
    before = send_buffer(connection)
    assert client.get("/flaskstore/small.bin", environ_base=environ).status_code == 200
    assert send_buffer(connection) == before  # a small answer is no sendfile: left alone
    response = client.get("/flaskstore/large.bin", environ_base=environ)
    assert len(response.data) == SEQUENTIAL_FROM
    assert send_buffer(connection) == 2 * LOOPBACK_SEND_BUFFER  # Linux doubles the value


@pytest.mark.parametrize("fast", [False, True], ids=["flask", "fast"])
def test_a_large_range_caps_it_too(tmp_path: Path, connection: socket.socket, fast: bool) -> None:
    client = make_app(tmp_path / "store", fast).test_client()
    environ = {"gunicorn.socket": connection}
    last = SEQUENTIAL_FROM - 1
    response = client.get(
        "/flaskstore/large.bin", headers={"Range": f"bytes=0-{last}"}, environ_base=environ
    )
    assert response.status_code == 206
    assert send_buffer(connection) == 2 * LOOPBACK_SEND_BUFFER


class RemotePeer(socket.socket):
    """A real connected socket that reports a peer on another host, as a client reaching
    gunicorn directly over the network would be."""

    def getpeername(self) -> Any:
        return ("192.0.2.7", 50000)


def test_a_peer_on_another_host_keeps_the_growing_buffer(connection: socket.socket) -> None:
    remote = RemotePeer(connection.family, connection.type, fileno=connection.detach())
    with remote:
        before = send_buffer(remote)
        assert not cap_for_loopback_peer({"gunicorn.socket": remote})
        assert send_buffer(remote) == before


def test_unix_sockets_closed_sockets_and_other_servers_are_left_alone() -> None:
    first, second = socket.socketpair()
    with first, second:
        assert not cap_for_loopback_peer({"gunicorn.socket": first})  # AF_UNIX
    assert not cap_for_loopback_peer({"gunicorn.socket": first})  # closed: no error
    assert not cap_for_loopback_peer({})  # not gunicorn
    assert not cap_for_loopback_peer({"gunicorn.socket": "not a socket"})


def test_a_peer_gone_before_the_answer_is_no_error() -> None:
    sock = socket.socket()  # never connected: getpeername fails
    with sock:
        assert not cap_for_loopback_peer({"gunicorn.socket": sock})


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.255.0.9", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("fe80::1%lo", False),
        ("::ffff:10.0.0.1", False),
        ("10.0.0.1", False),
        ("192.0.2.7", False),
        ("0.0.0.0", False),
        ("localhost", False),  # peers are addresses, never names
        ("", False),
        ("127.0.0.1\x00", False),
        ("1" * 10_000, False),
    ],
)
def test_which_peer_addresses_are_loopback(host: str, loopback: bool) -> None:
    assert is_loopback_address(host) is loopback
