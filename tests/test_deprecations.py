"""Names that moved keep working from their old homes, with a DeprecationWarning."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize(
    ("old_module", "name", "new_module"),
    [
        ("flask_store.cli", "copy_between", "flask_store.sync"),
        ("flask_store.cli", "needs_copy", "flask_store.sync"),
        ("flask_store.cli", "sync_file", "flask_store.sync"),
        ("flask_store.transfer.queued", "QueuedStore", "flask_store.stores.queued"),
        ("flask_store.transfer.queued", "retry_delay", "flask_store.stores.queued"),
        ("flask_store.transfer", "QueuedStore", "flask_store.stores.queued"),
    ],
)
def test_moved_name_warns_and_is_the_same_object(
    old_module: str, name: str, new_module: str
) -> None:
    old = importlib.import_module(old_module)
    with pytest.warns(DeprecationWarning, match=new_module):
        moved = getattr(old, name)
    assert moved is getattr(importlib.import_module(new_module), name)


def test_unknown_name_is_still_an_attribute_error() -> None:
    cli = importlib.import_module("flask_store.cli")
    with pytest.raises(AttributeError):
        cli.no_such_thing  # noqa: B018


def test_the_original_gevent_provider_path_still_resolves() -> None:
    s3 = importlib.import_module("flask_store.stores.s3")
    s3_gevent = importlib.import_module("flask_store.stores.s3_gevent")
    assert s3.S3GeventStore is s3_gevent.S3GeventStore
