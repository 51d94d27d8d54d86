"""Absolute URLs for files served by the app.

The only module that reads Flask's request state for URLs: stores give a path
(:meth:`~flask_store.stores.base.BaseStore.url_path`), this turns it into a full URL from
``STORE_DOMAIN``, the current request, or ``SERVER_NAME``, in that order.
"""

from __future__ import annotations

from flask import current_app, has_app_context, has_request_context, request

__all__ = ["absolute_url", "relative_url"]


def script_root() -> str:
    """The path the app is mounted at (``""`` at the site root or outside a request)."""
    return request.script_root if has_request_context() else ""


def relative_url(path: str) -> str:
    """``path`` below the app's mount point: what a page on the same site links to."""
    return script_root() + path


def absolute_url(path: str, domain: str | None) -> str:
    """A full URL for ``path`` (a route path such as ``/flaskstore/a.jpg``).

    ``domain`` may carry a path of its own (``https://cdn.example.com/static``), which is
    kept; without a scheme the app's preferred scheme is used.
    """
    if domain:
        if "://" not in domain and not domain.startswith("//"):
            domain = f"{_preferred_scheme()}://{domain}"
        return domain.rstrip("/") + path
    if has_request_context():
        return request.root_url.rstrip("/") + path
    if has_app_context() and current_app.config.get("SERVER_NAME"):
        root = (current_app.config.get("APPLICATION_ROOT") or "/").rstrip("/")
        return f"{_preferred_scheme()}://{current_app.config['SERVER_NAME']}{root}{path}"
    return path


def _preferred_scheme() -> str:
    if has_app_context():
        return str(current_app.config.get("PREFERRED_URL_SCHEME") or "http")
    return "http"
