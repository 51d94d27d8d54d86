"""Optional dependencies: which extra of the distribution installs each one.

The base install needs only Flask. A store or executor that needs more (boto3 for S3, gevent,
rq) says which extra brings it, ``pip install "Flask-Store-NG[s3]"``, rather than letting
``No module named 'botocore'`` reach the user.

The distribution is called ``Flask-Store-NG`` (the import package stays ``flask_store``):
the name ``Flask-Store`` on the package index belongs to an unrelated, older release, and a
hint must never send anyone to it. See ``docs/installation.rst``.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["DISTRIBUTION", "EXTRA_OF_MODULE", "explained", "missing_dependency"]

#: The name this package is installed under (``pip install "Flask-Store-NG[s3]"``).
DISTRIBUTION = "Flask-Store-NG"

#: Top-level module -> the extra (``[options.extras_require]`` in setup.cfg) that installs it.
#: A new extra is one line here; ``tests/test_packaging.py`` checks that each one exists.
EXTRA_OF_MODULE: Mapping[str, str] = {
    "boto3": "s3",
    "botocore": "s3",
    "s3transfer": "s3",
    "gevent": "gevent",
    "greenlet": "gevent",
    "rq": "rq",
    "redis": "rq",
    "PIL": "images",
    "sqlalchemy": "sqla",
    "puremagic": "checks",
    "celery": "celery",
    "kombu": "celery",
}


def install_command(extra: str) -> str:
    """The command that installs ``extra``: ``pip install "Flask-Store-NG[s3]"``."""
    return f'pip install "{DISTRIBUTION}[{extra}]"'


def missing_dependency(exc: BaseException) -> str | None:
    """What to tell a user whom ``exc`` stopped, when it is a missing optional module.

    A sentence that ends with the command, so it can be copied as it is (no full stop after
    it), or ``None`` when ``exc`` is not a missing module of a known extra (a broken install,
    a name that cannot be imported from a module that is there, the app's own modules).

    >>> print(missing_dependency(ModuleNotFoundError("No module named 'rq'", name="rq")))
    the package 'rq' is not installed. Install it with: pip install "Flask-Store-NG[rq]"
    >>> missing_dependency(ModuleNotFoundError("No module named 'myapp'", name="myapp")) is None
    True
    """
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return None
    module = exc.name.partition(".")[0]
    extra = EXTRA_OF_MODULE.get(module)
    if extra is None:
        return None
    return f"the package {module!r} is not installed. Install it with: {install_command(extra)}"


def explained(exc: ModuleNotFoundError, feature: str) -> ModuleNotFoundError:
    """A new error for ``exc`` that names ``feature`` and, for a module of a known extra,
    the command that installs it: what a lazily imported optional package raises.

    >>> print(explained(ModuleNotFoundError("No module named 'PIL'", name="PIL"), "Images"))
    Images: the package 'PIL' is not installed. Install it with: pip install "Flask-Store-NG...
    """
    hint = missing_dependency(exc) or str(exc)
    return ModuleNotFoundError(f"{feature}: {hint}", name=exc.name)
