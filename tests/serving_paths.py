"""Run serving tests twice: answered by the Flask view, and by the fast path.

A test module imports :func:`serving_path` (an autouse fixture): every app its tests build
with ``Store(app)`` then serves with ``STORE_SERVE_FAST = False`` (Flask's routing, request
context and response) and with ``True`` (:mod:`flask_store.fast_path`), unless the test sets
the key itself. The same assertions hold for both: the fast path keeps every guarantee.
"""

from __future__ import annotations

import pytest
from flask import Flask

from flask_store import Store

#: The two ways a file URL is answered, as test ids.
PATHS = {"flask": False, "fast": True}


@pytest.fixture(autouse=True, params=sorted(PATHS))
def serving_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """``"flask"`` or ``"fast"``: how the apps of this test serve their files."""
    init_app = Store.init_app
    fast = PATHS[request.param]

    def init_app_with_path(self: Store, app: Flask) -> None:
        app.config.setdefault("STORE_SERVE_FAST", fast)
        init_app(self, app)

    monkeypatch.setattr(Store, "init_app", init_app_with_path)
    path: str = request.param
    return path
