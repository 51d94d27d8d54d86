"""QueuedStore in a hostile environment: damaged records folders, clock steps, races."""

from __future__ import annotations

from pathlib import Path

from tests.test_queued import JOIN, make_store

#: JSON nested deeper than Python's parser recurses: valid JSON, yet no record.
DEEPLY_NESTED = b"[" * 200_000 + b"]" * 200_000


def test_a_deeply_nested_record_is_skipped_by_reconcile(tmp_path: Path) -> None:
    store = make_store(tmp_path, transfer_delayed=True)
    store.save(b"a", name="a.txt")
    records = tmp_path / "local" / ".transfers"
    (records / "open" / f"{'0' * 64}.json").write_bytes(DEEPLY_NESTED)
    assert store.reconcile(include_delayed=True) == ["a.txt"]
    assert store.join(timeout=JOIN)
    assert store.state("a.txt") == "done"


def test_a_deeply_nested_intent_is_skipped_by_reconcile(tmp_path: Path) -> None:
    store = make_store(tmp_path, transfer_delayed=True)
    store.save(b"a", name="a.txt")
    records = tmp_path / "local" / ".transfers"
    (records / "intents" / "nested.intent").write_bytes(DEEPLY_NESTED + b"\n")
    (records / "intents" / "nested-key.intent").write_bytes(
        b'{"overwrite": false, "queued": true}\n' + DEEPLY_NESTED + b"\n"
    )
    assert store.reconcile(include_delayed=True) == ["a.txt"]
    assert store.join(timeout=JOIN)
    assert store.state("a.txt") == "done"
