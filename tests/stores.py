"""The kinds of store the contract suite runs against, and how to build a fresh one.

Each backend module registers a :class:`StoreKind`; the ``store`` fixture in ``conftest.py``
parametrises over all of them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from flask_store.stores.base import BaseStore
from flask_store.stores.local import LocalStore
from flask_store.stores.memory import MemoryStore


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


STORE_KINDS: dict[str, StoreKind] = {
    "local": StoreKind("local", _local),
    "local-named-temp": StoreKind("local-named-temp", _local_named_temp),
    "memory": StoreKind("memory", _memory),
    "queued": StoreKind("queued", _queued),
    "s3-mock": StoreKind("s3-mock", _s3_mock, concurrency=(8, 10)),
    "s3-server": StoreKind("s3-server", _s3_server, concurrency=(8, 10)),
}
