"""Values kept as files: JSON documents and Unicode text, encoded and checked here.

The ``backends`` interface (``store.dump(key, value)``, ``store.load(key)``) stores values,
not uploads. Each value is an ordinary file in the store, with a content type saying what it
is, so it lists, serves, transfers and syncs like any other file. This leaf module turns
values into bytes and back, refusing what would not come back as it went in; the stores'
methods (:meth:`~flask_store.stores.base.BaseStore.dump` and friends) write and read them.

Two pairs of methods instead of one ``format=`` argument: each pair has one return type
(``load_text`` always gives ``str``), so a type checker and a reader know what they hold.

.. versionadded:: 0.2
"""

from __future__ import annotations

import json
import math
from typing import Any, BinaryIO

from .exceptions import InvalidArgumentError, InvalidValueError
from .files import read_up_to

__all__ = [
    "JSON_CONTENT_TYPE",
    "MAX_VALUE_SIZE",
    "TEXT_CONTENT_TYPE",
    "decode_json",
    "decode_text",
    "encode_json",
    "encode_text",
    "read_value",
    "value_too_large",
]

#: The content type a JSON value is stored with.
JSON_CONTENT_TYPE = "application/json"
#: The content type a text value is stored with.
TEXT_CONTENT_TYPE = "text/plain; charset=utf-8"
#: The largest file ``load`` / ``load_text`` read into memory (16 MiB): a value is a small
#: document; a key that holds an upload of gigabytes must not take the process down.
MAX_VALUE_SIZE = 16 * 1024 * 1024


def read_value(key: str, stream: BinaryIO, limit: int | None = None) -> bytes:
    """The bytes of the value ``key`` from ``stream``, at most ``limit`` of them
    (:data:`MAX_VALUE_SIZE` by default): never more than that and one byte is read.

    :raises InvalidValueError: naming the key when the file is larger.
    """
    limit = MAX_VALUE_SIZE if limit is None else limit
    data = read_up_to(stream, limit + 1)
    if len(data) > limit:
        raise value_too_large(key, limit)
    return data


def value_too_large(key: str, limit: int | None = None) -> InvalidValueError:
    """The error for a file under ``key`` too large to load as a value (more than ``limit``
    bytes, :data:`MAX_VALUE_SIZE` by default)."""
    limit = MAX_VALUE_SIZE if limit is None else limit
    return InvalidValueError(
        f"{key!r} holds more than {limit} bytes: too large to load as a value (use open() "
        "to stream it)."
    )


def encode_json(value: Any) -> bytes:
    """``value`` as compact UTF-8 JSON.

    Follows :func:`json.dumps`: tuples become lists and dict keys that are numbers, ``True``
    or ``None`` become strings. Refused: what JSON cannot hold (sets, bytes, objects), NaN
    and infinities (not JSON: most parsers reject them), cycles, strings with lone
    surrogates (not UTF-8), and a dict whose keys would become one JSON key (``{1: "a",
    "1": "b"}``: written twice, it would load back with one value lost); and a document
    larger than :data:`MAX_VALUE_SIZE`, which ``load()`` would refuse.

    >>> encode_json({"name": "Zoë", "sizes": (1, 2.5)}).decode()
    '{"name":"Zoë","sizes":[1,2.5]}'

    :raises InvalidArgumentError: for a value that cannot be stored as JSON.
    """
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        data = text.encode("utf-8")
    except (TypeError, ValueError, RecursionError) as exc:
        # UnicodeEncodeError (lone surrogates) is a ValueError; cycles and NaN are too.
        raise InvalidArgumentError(f"The value cannot be stored as JSON: {_reason(exc)}") from None
    clash = _clashing_key(value)
    if clash is not None:
        raise InvalidArgumentError(
            f"The value cannot be stored as JSON: a dict has two keys that become the same "
            f"JSON key {clash!r}."
        )
    return _loadable(data)


def decode_json(key: str, data: bytes) -> Any:
    """The JSON value stored as ``key`` (``data`` being its bytes).

    NaN and infinities are refused as :func:`encode_json` refuses them, whether spelled
    ``Infinity`` or as a number too large for a float (``1e999``).

    :raises InvalidValueError: naming ``key`` when ``data`` is not UTF-8 JSON.
    """
    text = decode_text(key, data)
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except (ValueError, RecursionError) as exc:
        raise InvalidValueError(f"The file stored as {key!r} is not JSON: {_reason(exc)}") from None


def encode_text(value: str) -> bytes:
    """``value`` as UTF-8.

    :raises InvalidArgumentError: for a value that is not a ``str``, holds lone surrogates,
        or is larger than :data:`MAX_VALUE_SIZE` in UTF-8.
    """
    if not isinstance(value, str):
        raise InvalidArgumentError(
            f"A text value must be a str, not {type(value).__name__}; use dump() for JSON."
        )
    try:
        data = value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidArgumentError(f"The text cannot be stored as UTF-8: {exc.reason}") from None
    return _loadable(data)


def _loadable(data: bytes) -> bytes:
    """``data``, an encoded value, if :func:`read_value` would read it back.

    :raises InvalidArgumentError: when it is larger than :data:`MAX_VALUE_SIZE`: written,
        it could never be loaded.
    """
    if len(data) > MAX_VALUE_SIZE:
        raise InvalidArgumentError(
            f"The value is too large to store: {len(data):,} bytes encoded, at most "
            f"{MAX_VALUE_SIZE:,} (load() reads no more); put() it as a file instead."
        )
    return data


def decode_text(key: str, data: bytes) -> str:
    """The text stored as ``key`` (``data`` being its bytes).

    :raises InvalidValueError: naming ``key`` when ``data`` is not UTF-8.
    """
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidValueError(
            f"The file stored as {key!r} is not UTF-8 text (byte {exc.start})."
        ) from None


def _clashing_key(value: Any) -> str | None:
    """The first JSON key two keys of one dict in ``value`` would both become, if any.

    Walked without recursion, after :func:`json.dumps` took ``value`` (so it has no cycle,
    and every key is a string, a number, a bool or ``None``). Only a dict with keys that
    are not strings can clash, so the others cost one look at their keys.
    """
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            if not all(isinstance(key, str) for key in item):
                seen: set[str] = set()
                for key in item:
                    name = _json_key(key)
                    if name in seen:
                        return name
                    seen.add(name)
            pending.extend(item.values())
        elif isinstance(item, (list, tuple)):
            pending.extend(item)
    return None


def _json_key(key: object) -> str:
    """The JSON key :func:`json.dumps` writes for the dict key ``key``."""
    if isinstance(key, str):
        return key
    if key is True or key is False or key is None:
        return json.dumps(key)
    if isinstance(key, float):
        return float.__repr__(key)
    if isinstance(key, int):
        return int.__repr__(key)
    return str(key)  # never reached: json.dumps refused any other key


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    """The JSON number ``text`` as a float, refusing one that overflows to an infinity."""
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text[:20]} is too large for a float")
    return number


def _reason(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "it is nested too deeply"
    return str(exc)
