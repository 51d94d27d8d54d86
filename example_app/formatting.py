"""Small display helpers shared by the templates and the form messages."""

from __future__ import annotations

_UNITS = ("KB", "MB", "GB", "TB")


def human_size(size: int) -> str:
    """A byte count as people read it: ``512 bytes``, ``1.5 MB`` (decimal units, like browsers).

    >>> human_size(1), human_size(2_500), human_size(3_000), human_size(16 * 1024 * 1024)
    ('1 byte', '2.5 KB', '3 KB', '16.8 MB')
    """
    if size < 1000:
        return "1 byte" if size == 1 else f"{size} bytes"
    value = size / 1000
    for unit in _UNITS[:-1]:
        if value < 1000:
            return _one_decimal(value, unit)
        value /= 1000
    return _one_decimal(value, _UNITS[-1])


def _one_decimal(value: float, unit: str) -> str:
    return f"{value:.1f}".removesuffix(".0") + f" {unit}"


def is_thumbnailable(content_type: str) -> bool:
    """Whether the gallery shows the file as an ``<img>``: raster images only.

    SVG is left out on purpose: the store serves it as a download (it can carry scripts).
    """
    return content_type.startswith("image/") and not content_type.startswith("image/svg")


def type_label(filename: str, content_type: str) -> str:
    """A short badge for a file without a thumbnail: its extension, else its type."""
    _, dot, ext = filename.rpartition(".")
    if dot and 0 < len(ext) <= 5:
        return ext.upper()
    return content_type.split("/")[-1][:5].upper() or "FILE"
