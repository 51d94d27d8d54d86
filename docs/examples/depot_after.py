"""After: Flask-Store; a store works without Flask too, built from keyword settings."""

from __future__ import annotations

from flask_store.stores.local import LocalStore


def save_and_read(folder: str) -> tuple[str, str, bytes]:
    store = LocalStore(path=folder)
    name = store.save(b"HELLO WORLD", name="file.txt", content_type="text/plain").name

    stored = store.file(name)  # keep `name` in your database, as you kept the file id
    return stored.filename, stored.content_type, stored.read()
