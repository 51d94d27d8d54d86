"""Content types and ``Content-Disposition``: what a file is served as, decided once.

Nothing a client declares is stored or sent back as it came. A content type is parsed
strictly (RFC 9110 §8.3.1) into exactly one ``type/subtype`` and the parameters this library
knows (``charset``); anything else (a comma-separated list, which a browser reads by its
*last* type, control characters, CR/LF, an empty value) is refused at save time and replaced
by ``application/octet-stream`` when it is read back from somewhere that was not checked.

Whether a file may be rendered inline is an **allow-list** of passive types: a type not known
to be inert (images, audio, video, plain text, PDF...) is served as an attachment. Script
and style types are served as ``text/plain`` (unless ``STORE_SERVE_SCRIPTS_AS_TEXT`` is off):
``Content-Disposition`` does not stop ``<script src=...>``, and ``nosniff`` then makes
browsers refuse to run the file. Text types are sent with ``charset=utf-8`` unless they name
another charset.

The serving route and the S3 store (whose objects are served by S3 itself after a redirect)
both derive their headers from here, so the two never disagree.

This is a leaf module: it imports nothing from the rest of the package but exceptions.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from urllib.parse import quote

from .exceptions import InvalidArgumentError

__all__ = [
    "ACTIVE_CONTENT_TYPES",
    "FALLBACK_CONTENT_TYPE",
    "INLINE_SAFE_TYPES",
    "SCRIPT_TYPES",
    "ascii_fallback",
    "content_disposition",
    "file_disposition",
    "is_active_content",
    "is_inline_safe",
    "media_type",
    "normalise_content_type",
    "parse_content_type",
    "served_content_type",
]

#: What a file whose type is unknown or unusable is stored and served as.
FALLBACK_CONTENT_TYPE = "application/octet-stream"

#: Types a browser renders without running anything in the serving origin: the only ones
#: served ``inline`` (unless ``STORE_INLINE_ACTIVE_CONTENT`` is set). Everything else,
#: including types this list does not know, is served as an attachment.
INLINE_SAFE_TYPES = frozenset(
    {
        "text/plain",
        "text/csv",
        "text/tab-separated-values",
        "text/markdown",
        "application/json",
        "application/pdf",
        "application/octet-stream",
        "image/apng",
        "image/avif",
        "image/bmp",
        "image/gif",
        "image/heic",
        "image/heif",
        "image/jpeg",
        "image/png",
        "image/tiff",
        "image/vnd.microsoft.icon",
        "image/webp",
        "image/x-icon",
        "audio/aac",
        "audio/flac",
        "audio/mp4",
        "audio/mpeg",
        "audio/ogg",
        "audio/opus",
        "audio/wav",
        "audio/webm",
        "audio/x-wav",
        "video/mp4",
        "video/mpeg",
        "video/ogg",
        "video/quicktime",
        "video/webm",
    }
)

#: Types a browser executes or applies when another page includes them (``<script src>``,
#: workers, ``<link rel=stylesheet>``, XSLT): sent as ``text/plain`` by default, so that an
#: uploaded file cannot be used as script or style under a CSP of ``'self'``.
SCRIPT_TYPES = frozenset(
    {
        "text/javascript",
        "application/javascript",
        "application/x-javascript",
        "application/ecmascript",
        "text/ecmascript",
        "text/jscript",
        "text/livescript",
        "text/x-javascript",
        "text/x-ecmascript",
        "application/x-ecmascript",
        "text/babel",
        "text/jsx",
        "module",
        "text/css",
        "text/xsl",
        "application/xslt+xml",
        "application/wasm",
    }
)

#: Types known to run script when a browser opens them in the serving origin (pages, SVG,
#: XML with stylesheets, scripts). Informational, kept for code that imported it from
#: :mod:`flask_store.serving`: what is served inline is decided by :data:`INLINE_SAFE_TYPES`
#: alone, so a type missing here is still an attachment unless it is on that list.
ACTIVE_CONTENT_TYPES = SCRIPT_TYPES | frozenset(
    {
        "text/html",
        "application/xhtml+xml",
        "image/svg+xml",
        "text/xml",
        "application/xml",
        "application/rss+xml",
        "application/atom+xml",
        "application/mathml+xml",
        "multipart/x-mixed-replace",
    }
)

# RFC 9110 §5.6.2: token = 1*tchar.
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_MEDIA_TYPE = re.compile(rf"({_TOKEN})/({_TOKEN})")
_PARAMETER = re.compile(rf'[ \t]*;[ \t]*(?:({_TOKEN})=({_TOKEN}|"(?:[^"\\\x00-\x1f\x7f]|\\.)*"))?')
_CHARSET = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$%&'+\-^_`{}~]{0,39}")


#: How much of a refused value an error message repeats.
_SHOWN = 80


def parse_content_type(value: str) -> str:
    """``value`` as exactly one media type with its known parameters, normalised.

    The type and subtype are lower-cased; of the parameters only ``charset`` is kept
    (lower-cased, a plain token); others are dropped, as is whitespace around them.

    >>> parse_content_type("Text/Plain; Charset=UTF-8; format=flowed")
    'text/plain; charset=utf-8'

    :raises InvalidArgumentError: for anything that is not one well-formed media type: a
        list (``text/plain, text/html``), control characters, CR or LF, a missing subtype,
        a wildcard (``*/*``), an empty value, a malformed parameter, or a value that is not
        a string at all.
    """
    if not isinstance(value, str):
        raise InvalidArgumentError(
            f"A content type must be a string such as 'image/png', not {_shown(value)}."
        )
    return _parse(value)


@lru_cache(maxsize=512)
def _parse(value: str) -> str:
    """:func:`parse_content_type` of a string; cached, as the same few types come back."""
    text = value.strip(" \t")
    match = _MEDIA_TYPE.match(text)
    if match is None or "*" in match.group(0):
        raise InvalidArgumentError(
            f"{_shown(value)} is not a content type: expected one 'type/subtype', such as "
            "'image/png'."
        )
    base = match.group(0).lower()
    charset = None
    position = match.end()
    while position < len(text):
        parameter = _PARAMETER.match(text, position)
        if parameter is None or parameter.end() == position:
            raise InvalidArgumentError(
                f"{_shown(value)} is not one content type: only ';'-separated parameters "
                "may follow 'type/subtype' (no lists, commas or control characters)."
            )
        name, raw = parameter.group(1), parameter.group(2)
        if name is not None and name.lower() == "charset":
            charset = raw.strip('"').lower()
            if not _CHARSET.fullmatch(charset):
                raise InvalidArgumentError(
                    f"{_shown(value)} is not a usable content type: its charset {_shown(raw)} "
                    "is not a charset name."
                )
        position = parameter.end()
    return f"{base}; charset={charset}" if charset else base


def _shown(value: object) -> str:
    """``value`` for an error message: its ``repr`` (control characters escaped), cut short."""
    shown = repr(value)
    return shown if len(shown) <= _SHOWN else f"{shown[:_SHOWN]}...(cut)"


def normalise_content_type(value: object) -> str:
    """``value`` parsed by :func:`parse_content_type`, or :data:`FALLBACK_CONTENT_TYPE`.

    For values read back from somewhere that may not have been checked (S3 metadata written
    by another program, a transfer record, an older version's metadata): they are served
    safely instead of failing every request.
    """
    if not isinstance(value, str):
        return FALLBACK_CONTENT_TYPE
    try:
        return parse_content_type(value)
    except InvalidArgumentError:
        return FALLBACK_CONTENT_TYPE


def media_type(content_type: str) -> str:
    """The media type of a Content-Type value, lower-case and without parameters."""
    return content_type.split(";", 1)[0].strip().lower()


def is_inline_safe(content_type: str) -> bool:
    """Whether a browser may render a file of this type in the serving origin.

    Decided on the parsed type (:func:`normalise_content_type`), so no spelling of a type
    and no list of types is mistaken for a passive one.
    """
    return media_type(normalise_content_type(content_type)) in INLINE_SAFE_TYPES


def is_active_content(content_type: str) -> bool:
    """Whether a file of this type is served as an attachment: any type not inline-safe."""
    return not is_inline_safe(content_type)


def served_content_type(content_type: str, *, scripts_as_text: bool = True) -> str:
    """The ``Content-Type`` header for a file stored with ``content_type``.

    The stored value is normalised again (it may come from a store this library did not
    write); script and style types become ``text/plain`` (keeping a declared charset) unless
    ``scripts_as_text`` is false, and text types without a charset are sent as UTF-8, as
    Flask's ``send_file`` does.
    """
    return _served(normalise_content_type(content_type), scripts_as_text)


@lru_cache(maxsize=512)
def _served(parsed: str, scripts_as_text: bool) -> str:
    base, _, charset = parsed.partition("; charset=")
    if scripts_as_text and base in SCRIPT_TYPES:
        return f"text/plain; charset={charset or 'utf-8'}"
    if base.startswith("text/") and not charset:
        return f"{base}; charset=utf-8"
    return parsed


# What a quoted filename cannot hold as it is: control characters (a CR or LF would end the
# header and start another one), the quote, the backslash, and the percent sign (Chromium
# decodes ``%41`` in a plain ``filename``).
_UNQUOTABLE = re.compile(r'[\x00-\x1f\x7f"\\%]')


def ascii_fallback(filename: str) -> str:
    """An ASCII stand-in for ``filename``: letters keep their base (``é`` -> ``e``)."""
    decomposed = unicodedata.normalize("NFKD", filename)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    ascii_name = stripped.encode("ascii", "replace").decode("ascii").replace("?", "_")
    return _UNQUOTABLE.sub("_", ascii_name)


def content_disposition(disposition: str, filename: str) -> str:
    """A ``Content-Disposition`` value with an ASCII fallback and an RFC 5987 UTF-8 name.

    ``filename*`` is added whenever the plain ``filename`` had to change (non-ASCII letters,
    quotes, control characters or ``%``), so every browser gets the name exactly.
    """
    ascii_name = ascii_fallback(filename)
    value = f'{disposition}; filename="{ascii_name}"'
    if ascii_name != filename:
        # errors="replace": a name read back from metadata may hold a lone surrogate.
        value += f"; filename*=UTF-8''{quote(filename, safe='', errors='replace')}"
    return value


@lru_cache(maxsize=512)
def file_disposition(content_type: str, filename: str, *, inline_active_content: bool) -> str:
    """The ``Content-Disposition`` a stored file is served with: ``inline`` for a type on
    the allow-list (:func:`is_inline_safe`), ``attachment`` for every other type unless
    ``inline_active_content`` (``STORE_INLINE_ACTIVE_CONTENT``) says to trust uploaders.

    Cached like the content type: every request for a file asks again, and the ASCII
    fallback (Unicode decomposition, a regex) is the same each time."""
    inline = inline_active_content or is_inline_safe(content_type)
    return content_disposition("inline" if inline else "attachment", filename)
