"""Before: filedepot, outside any web framework."""

from __future__ import annotations

from depot.manager import DepotManager


def save_and_read(folder: str) -> tuple[str, str, bytes]:
    DepotManager.configure("default", {"depot.storage_path": folder})
    depot = DepotManager.get()
    fileid = depot.create(b"HELLO WORLD", "file.txt", "text/plain")

    stored = depot.get(fileid)
    return stored.filename, stored.content_type, stored.read()
