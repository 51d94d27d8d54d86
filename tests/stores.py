"""The kinds of store the contract suite runs against, and how to build a fresh one.

Each backend module registers a :class:`StoreKind`; the ``store`` fixture in ``conftest.py``
parametrises over all of them.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from flask_store.stores.base import BaseStore
from flask_store.stores.local import LocalStore
from flask_store.stores.memory import MemoryStore
from tests import external_s3

if TYPE_CHECKING:
    from flask_store.stores.s3 import S3Store


@dataclass(frozen=True)
class StoreKind:
    """How to make an empty store of one kind, and how to see what it holds below the API."""

    name: str
    factory: Callable[[pytest.FixtureRequest, dict[str, Any]], AbstractContextManager[BaseStore]]
    #: How many threads x saves the concurrency test runs (remote stores get fewer).
    concurrency: tuple[int, int] = (16, 100)

    def make(
        self, request: pytest.FixtureRequest, **settings: Any
    ) -> AbstractContextManager[BaseStore]:
        return self.factory(request, settings)


def everything_stored(store: BaseStore) -> list[str]:
    """Every object the store holds, hidden or temporary ones included (to prove none leak)."""
    if isinstance(store, LocalStore):
        return sorted(
            os.path.relpath(os.path.join(folder, name), store.root)
            for folder, _, names in os.walk(store.root)
            for name in names
        )
    from flask_store.stores.s3 import S3Store
    from tests.moto_server import bucket_contents

    if isinstance(store, S3Store):
        if store.settings.prefix.startswith(external_s3.ROOT + "/"):
            return external_s3.contents(store)
        if store.settings.endpoint_url in _S3RVER_URLS:
            return _objects(store)  # s3rver cannot list unfinished multipart uploads
        return bucket_contents(store.client, store.bucket, store.settings.prefix)
    lister = getattr(store, "all_objects", None)
    return sorted(lister()) if lister else list(store.keys())


@contextmanager
def _local(request: pytest.FixtureRequest, settings: dict[str, Any]) -> Iterator[BaseStore]:
    tmp_path = request.getfixturevalue("tmp_path")
    store = LocalStore(path=str(tmp_path / "store"), **settings)
    assert store.unnamed_writes, "this machine's file system should support O_TMPFILE"
    yield store


@contextmanager
def _local_named_temp(
    request: pytest.FixtureRequest, settings: dict[str, Any]
) -> Iterator[BaseStore]:
    """A LocalStore writing named hidden temporary files, as where O_TMPFILE is missing."""
    tmp_path = request.getfixturevalue("tmp_path")
    store = LocalStore(path=str(tmp_path / "store"), **settings)
    store.unnamed_writes = False
    yield store


@contextmanager
def _memory(request: pytest.FixtureRequest, settings: dict[str, Any]) -> Iterator[BaseStore]:
    yield MemoryStore(**settings)


@contextmanager
def _queued(request: pytest.FixtureRequest, settings: dict[str, Any]) -> Iterator[BaseStore]:
    from flask_store.stores.queued import QueuedStore

    tmp_path = request.getfixturevalue("tmp_path")
    store = QueuedStore(
        queued_local={"PROVIDER": "local", "PATH": str(tmp_path / "queued-local")},
        queued_remote={"PROVIDER": "memory"},
        **settings,
    )
    yield store
    assert store.join(timeout=60), "transfers still running after the test"


@contextmanager
def _queued_memory_local(
    request: pytest.FixtureRequest, settings: dict[str, Any]
) -> Iterator[BaseStore]:
    """A queued store whose local side is a MemoryStore: any store can be the local side."""
    from flask_store.stores.queued import QueuedStore

    tmp_path = request.getfixturevalue("tmp_path")
    store = QueuedStore(
        queued_local={"PROVIDER": "memory"},
        queued_remote={"PROVIDER": "memory"},
        transfer_records_path=str(tmp_path / "records"),
        **settings,
    )
    yield store
    assert store.join(timeout=60), "transfers still running after the test"


def _s3_store(endpoint_url: str | None, settings: dict[str, Any]) -> BaseStore:
    """An S3Store on a fresh bucket, keeping files under a STORE_PATH prefix."""
    from flask_store.stores.s3 import S3Store
    from tests.moto_server import ACCESS_KEY, REGION, SECRET_KEY, create_bucket

    return S3Store(
        s3_bucket=create_bucket(endpoint_url),
        s3_region=REGION,
        s3_endpoint_url=endpoint_url,
        s3_access_key=ACCESS_KEY,
        s3_secret_key=SECRET_KEY,
        path="store/files",
        **settings,
    )


@contextmanager
def _s3_mock(request: pytest.FixtureRequest, settings: dict[str, Any]) -> Iterator[BaseStore]:
    """S3 through moto in this process (``mock_aws``)."""
    from moto import mock_aws

    with mock_aws():
        yield _s3_store(None, settings)


@contextmanager
def _s3_server(request: pytest.FixtureRequest, settings: dict[str, Any]) -> Iterator[BaseStore]:
    """S3 over HTTP, against a real moto server process on 127.0.0.1."""
    from tests.moto_server import shared_moto_server

    yield _s3_store(shared_moto_server(request.config), settings)


@contextmanager
def _s3rver(request: pytest.FixtureRequest, settings: dict[str, Any]) -> Iterator[BaseStore]:
    """S3 over HTTP against s3rver, a real S3-compatible server that lacks conditional
    writes: the store runs as its users must run it, ``STORE_S3_CONDITIONAL_WRITES="off"``
    (``tests/test_s3_compat.py`` shows the default refusing to save there)."""
    from flask_store.stores.s3 import S3Store
    from tests.s3rver_server import ACCESS_KEY, REGION, SECRET_KEY, shared_s3rver

    server = shared_s3rver(request.config)
    _S3RVER_URLS.add(server.url)
    yield S3Store(
        s3_bucket=server.create_bucket(),
        s3_region=REGION,
        s3_endpoint_url=server.url,
        s3_access_key=ACCESS_KEY,
        s3_secret_key=SECRET_KEY,
        path="store/files",
        **{"s3_conditional_writes": "off", **settings},
    )


#: Endpoints of the s3rver servers started by :func:`_s3rver`.
_S3RVER_URLS: set[str] = set()


def _objects(store: S3Store) -> list[str]:
    """Every object of the store's bucket, as :func:`tests.moto_server.bucket_contents`
    shows them, without unfinished multipart uploads."""
    root = f"{store.settings.prefix}/" if store.settings.prefix else ""
    pages = store.client.get_paginator("list_objects_v2").paginate(Bucket=store.bucket)
    keys = [item["Key"] for page in pages for item in page.get("Contents", [])]
    return sorted(key[len(root) :] if key.startswith(root) else f"/{key}" for key in keys)


def external_kind() -> StoreKind | None:
    """The ``s3-external`` kind: S3 on the server named by ``FLASK_STORE_TEST_S3_*``
    (:mod:`tests.external_s3`), or ``None`` when none is."""
    if not external_s3.configured():
        return None
    return StoreKind("s3-external", external_s3.external_store, concurrency=(4, 5))


STORE_KINDS: dict[str, StoreKind] = {
    "local": StoreKind("local", _local),
    "local-named-temp": StoreKind("local-named-temp", _local_named_temp),
    "memory": StoreKind("memory", _memory),
    "queued": StoreKind("queued", _queued),
    "queued-memory-local": StoreKind("queued-memory-local", _queued_memory_local),
    "s3-mock": StoreKind("s3-mock", _s3_mock, concurrency=(8, 10)),
    "s3-server": StoreKind("s3-server", _s3_server, concurrency=(8, 10)),
    # Without conditional writes two threads saving one name at once can overwrite each
    # other (the documented race of "off"): one thread, names taken one after another.
    "s3rver": StoreKind("s3rver", _s3rver, concurrency=(1, 10)),
}
_external = external_kind()
if _external is not None:
    STORE_KINDS[_external.name] = _external


def run_python(
    script: str, *args: str | Path, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the Python code ``script`` in a child process (``sys.argv[1:]`` = ``args``).

    For the faults only a real process meets: a lowered resource limit, a SIGKILL mid-save.
    Its output is text; it may run a minute at most.
    """
    return subprocess.run(
        [sys.executable, "-c", script, *map(str, args)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class SeeksWithoutSeekable:
    """A stream that can seek but has no ``seekable()``, as Python 3.10's
    ``SpooledTemporaryFile``, the stream of every Werkzeug 3 upload (3.11 added the method).
    """

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def read(self, size: int = -1) -> bytes:
        return self._data.read(size)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._data.seek(offset, whence)

    def tell(self) -> int:
        return self._data.tell()

    def close(self) -> None:
        self._data.close()
