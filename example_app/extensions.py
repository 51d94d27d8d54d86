"""The extension objects the app shares between modules, bound in ``create_app``."""

from __future__ import annotations

from flask_sqlalchemy import SQLAlchemy

from flask_store import Store

#: The app's file store; ``store.Provider()`` is the configured backend of the current app.
store = Store()

#: The app's database (SQLite in the instance folder unless ``SQLALCHEMY_DATABASE_URI`` is
#: set): the photo gallery's rows.
db = SQLAlchemy()
