"""Images: check that a file is a real image, save it with its thumbnails, delete them all.

An image is judged by its bytes, never by its name or the type a client declares:
:func:`check_image` opens it with Pillow, refuses a decompression bomb from its header (before
anything is decoded), runs Pillow's ``verify()``, decodes it whole (at 1/8 scale for a JPEG,
so memory stays small) to catch a truncated file, and refuses a polyglot: a file that is an
image *and* something else, markup (HTML, SVG, script, PHP) or an archive (ZIP, RAR, 7z, PDF)
that another program would open.

:func:`save_image` stores the checked original (with its EXIF, GPS, XMP and IPTC metadata
removed when asked, losslessly: no pixel is re-encoded) and its thumbnails, all or nothing.
Thumbnails are made once, at save time, from one decode of the original: aspect ratio kept,
EXIF orientation applied, no metadata kept. A big JPEG is decoded at a reduced scale
(Pillow's ``draft()``), so saving a 50-megapixel photo with its thumbnails raises the
process's peak memory by about 11 MiB, where decoding it whole takes 195 MiB (see
``benchmarks/images_bench.py``).

**Keys.** The original is saved like any upload (``save()``: its name made safe, renamed on a
collision), under a name whose extension matches its real format (``cat.png`` holding a
JPEG is saved as ``cat.jpg``). Each thumbnail is a sibling: the original's key with the
thumbnail's name before the extension, ``photos/cat.jpg`` -> ``photos/cat.small.jpg``
(a GIF's thumbnails are PNGs: ``anim.gif`` -> ``anim.small.png``). Should such a key be
taken, the thumbnail gets a unique suffix as any renamed upload does, so always keep the
keys :func:`save_image` returns rather than rebuilding them.

Pillow is imported when a function here is first called: ``pip install
Flask-Store-NG[images]``.

.. versionadded:: 0.2
"""

from __future__ import annotations

import io
import logging
import re
import struct
import tempfile
import zlib
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from .content_checks import limited
from .exceptions import (
    ImageTooLargeError,
    InvalidArgumentError,
    InvalidImageError,
    StoreError,
)
from .file_wrapper import FileWrapper
from .meta import FileMeta
from .naming import candidate_keys, recorded_filename, split_extension
from .optional import explained
from .sources import CHUNK_SIZE, open_upload, read_checked

if TYPE_CHECKING:
    from PIL import Image

    from .stores.base import BaseStore

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_FORMATS",
    "MAX_THUMBNAIL_SIDE",
    "ImageFacts",
    "SavedImage",
    "check_image",
    "checked_thumbnail_sizes",
    "delete_image",
    "encode_thumbnail",
    "make_thumbnails",
    "save_image",
    "strip_image_metadata",
    "thumbnail_key",
]

log = logging.getLogger(__name__)

#: The formats accepted, by Pillow's name, with the content type each is stored with: the
#: formats every browser shows. Others (TIFF, BMP, PSD, ICO...) are refused.
IMAGE_FORMATS: Mapping[str, str] = MappingProxyType(
    {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp"}
)
#: The extension a saved original is given, by format.
_EXTENSIONS: Mapping[str, str] = MappingProxyType(
    {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "WEBP": ".webp"}
)
#: Extensions a client may have used for each format, kept as given.
_KNOWN_EXTENSIONS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "JPEG": frozenset({".jpg", ".jpeg", ".jpe", ".jfif"}),
        "PNG": frozenset({".png"}),
        "GIF": frozenset({".gif"}),
        "WEBP": frozenset({".webp"}),
    }
)
#: The format a thumbnail of each format is written in (a GIF's first frame becomes a PNG).
_THUMBNAIL_FORMATS: Mapping[str, str] = MappingProxyType(
    {"JPEG": "JPEG", "PNG": "PNG", "GIF": "PNG", "WEBP": "WEBP"}
)
#: Encoder options of each thumbnail format.
_SAVE_OPTIONS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        "JPEG": {"quality": 85, "optimize": True},
        "PNG": {"optimize": True},
        "WEBP": {"quality": 80, "method": 4},
    }
)

#: The default of ``STORE_IMAGE_MAX_PIXELS``: 50 megapixels, a large phone or camera photo.
#: Decoded as RGBA that is 200 MB; an image declaring more is refused before decoding.
DEFAULT_MAX_PIXELS = 50_000_000
#: Largest thumbnail side accepted.
MAX_THUMBNAIL_SIDE = 10_000
#: A thumbnail's name: it becomes part of a key.
_THUMBNAIL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,39}")
#: The EXIF tag holding the orientation (1 to 8).
_ORIENTATION = 0x0112

# -- polyglots: what an image must not also be -------------------------------------------------

#: Markup that runs wherever it appears (a server including an upload as PHP, a page that
#: loads it as a script): searched in the whole file, pixel data included, where payloads
#: hide too (a PNG's uncompressed deflate block survives being copied). Long enough that
#: random compressed bytes match about once in 100,000 photos of 50 MB.
_PAYLOAD = re.compile(rb"<(?:(?i:script|iframe|object)[\s/>]|\?(?i:php)[\s=])")
#: Any markup: searched where an image holds no pixels (metadata, comments, text chunks),
#: where a tag has no business being. Every branch starts with the literal ``<``, which the
#: regex engine finds at C speed.
_MARKUP = re.compile(
    rb"<(?:(?i:script|html|svg|iframe|object|embed|body|img|style|link|form)[\s/>]"
    rb"|!(?i:doctype)\s|\?(?i:php)[\s=])"
)
#: Archive signatures that their readers find anywhere in a file (RAR and 7z scan for them).
_ARCHIVES = (b"Rar!\x1a\x07", b"7z\xbc\xaf\x27\x1c")
#: ZIP readers look for the end-of-central-directory record in the last 64 KiB + 22 bytes.
_ZIP_END = b"PK\x05\x06"
_ZIP_TAIL = 65_536 + 22
#: PDF readers find the ``%PDF-`` header within the first 1024 bytes.
_PDF_HEAD = 1024
#: Bytes kept between scanned chunks, so a match across two chunks is still found.
_OVERLAP = 32
#: How each format ends; bytes after that end are something else.
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"


@dataclass(frozen=True)
class ImageFacts:
    """What :func:`check_image` learnt from an image's bytes.

    :param width: width in pixels as displayed (after the EXIF orientation).
    :param height: height in pixels as displayed.
    :param format: Pillow's name of the format: ``"JPEG"``, ``"PNG"``, ``"GIF"``, ``"WEBP"``.
    :param content_type: the type the format is stored with: ``"image/jpeg"``...
    :param orientation: the EXIF orientation (1 to 8; 1 when there is none).
    """

    width: int
    height: int
    format: str
    content_type: str
    orientation: int = 1


@dataclass(frozen=True)
class SavedImage:
    """What :func:`save_image` stored.

    :param original: the image as saved (without its metadata if it was stripped).
    :param thumbnails: each thumbnail by the name it was asked for.
    :param facts: what the check learnt about the original.
    """

    original: FileWrapper
    thumbnails: Mapping[str, FileWrapper] = field(default_factory=dict)
    facts: ImageFacts | None = None

    @property
    def files(self) -> list[FileWrapper]:
        """The original then every thumbnail: every file the image is made of."""
        return [self.original, *self.thumbnails.values()]


# -- checking ------------------------------------------------------------------------------


def check_image(stream: BinaryIO, *, filename: str, max_pixels: int) -> ImageFacts:
    """Check that ``stream`` holds one real image of a format in :data:`IMAGE_FORMATS`.

    Decided from the bytes alone. The stream must be seekable (a file, ``BytesIO``, a
    Werkzeug upload's stream); its whole content is the image (Pillow reads from the
    start), and it is left at the position it had.

    :param filename: the client's name of the file, for messages only.
    :param max_pixels: the most pixels (width times height) an image may declare.
    :raises ImageTooLargeError: when the header declares more than ``max_pixels`` pixels;
        nothing has been decoded.
    :raises InvalidImageError: naming the file, when it is not an image (text, SVG, a PDF),
        a format not accepted, truncated or corrupt, or also holds markup or an archive.
    """
    return _check(stream, filename, max_pixels, decode=True)


def _check(stream: BinaryIO, filename: str, max_pixels: int, *, decode: bool) -> ImageFacts:
    """:func:`check_image`; without ``decode`` for a caller that decodes the image next
    (:func:`save_image` making thumbnails), whose decode fails for the same files."""
    _check_max_pixels(max_pixels)
    position = stream.tell()
    try:
        facts = _checked_facts(stream, filename, max_pixels, decode=decode)
        _check_single_content(stream, facts.format, filename)
        return facts
    finally:
        stream.seek(position)


def _check_max_pixels(max_pixels: int) -> None:
    if not isinstance(max_pixels, int) or isinstance(max_pixels, bool) or max_pixels < 1:
        raise InvalidArgumentError(f"max_pixels must be a positive integer, not {max_pixels!r}.")


def _checked_facts(stream: BinaryIO, filename: str, max_pixels: int, *, decode: bool) -> ImageFacts:
    """Open, size-check, ``verify()`` and decode the image; what it is."""
    with _opened(stream, filename, max_pixels) as image:
        try:
            image.verify()  # structure and checksums; the image is unusable afterwards
        except Exception as exc:
            raise _not_an_image(filename, "it is truncated or corrupt") from exc
    with _opened(stream, filename, max_pixels) as image:
        image_format = str(image.format)
        orientation = _orientation_of(image)
        width, height = image.size
        if decode and image_format == "JPEG":
            # Decode every scan at 1/8 scale: a truncated JPEG still fails, in 1/64 the memory.
            image.draft(image.mode, (max(1, width // 8), max(1, height // 8)))
        if decode:
            _decode(image, filename)
    if image_format == "PNG":
        _check_png_data(stream, filename)
    if orientation in (5, 6, 7, 8):  # turned a quarter: displayed the other way round
        width, height = height, width
    return ImageFacts(width, height, image_format, IMAGE_FORMATS[image_format], orientation)


@contextmanager
def _opened(stream: BinaryIO, filename: str, max_pixels: int) -> Iterator[Image.Image]:
    """The image in ``stream``, opened (header read, nothing decoded) and size-checked.

    Every error Pillow raises for bytes that are no image becomes :class:`InvalidImageError`.
    """
    try:
        from PIL import Image  # lazily: Pillow is the optional ``images`` extra
    except ModuleNotFoundError as exc:
        raise explained(exc, "Checking images needs Pillow") from exc

    stream.seek(0)
    try:
        # Past PIL.Image.MAX_IMAGE_PIXELS Pillow warns, past twice that it refuses: below
        # the default max_pixels neither happens, and the check below decides.
        image = Image.open(stream, formats=list(IMAGE_FORMATS))
    except Image.DecompressionBombError:
        raise ImageTooLargeError(
            f"{filename!r} is not accepted: it declares more pixels than Pillow decodes "
            f"(twice PIL.Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS}). Nothing was "
            "decoded."
        ) from None
    except Exception as exc:
        raise _not_an_image(filename, "it is not a JPEG, PNG, GIF or WebP image") from exc
    with image:
        width, height = image.size
        if width * height > max_pixels:
            raise ImageTooLargeError(
                f"{filename!r} is not accepted: it declares {width}x{height} pixels, more than "
                f"the {max_pixels} allowed (STORE_IMAGE_MAX_PIXELS). Nothing was decoded."
            )
        if width < 1 or height < 1:
            raise _not_an_image(filename, "it has no pixels")
        yield image


def _decode(image: Image.Image, filename: str) -> None:
    """Decode ``image`` whole; a truncated or corrupt file fails here."""
    try:
        image.load()
    except (Exception, zlib.error) as exc:
        raise _not_an_image(filename, "it is truncated or corrupt") from exc


#: Samples per pixel of each PNG colour type.
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
#: Adam7 passes: first column, first row, column step, row step.
_ADAM7 = (
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
)


def _check_png_data(stream: BinaryIO, filename: str) -> None:
    """Inflate a PNG's image data and count it: exactly the bytes its header promises.

    Pillow's decoder quietly stops at corrupt compressed data (leaving black rows), and
    ``verify()`` checks only each chunk's CRC, which a crafted file fixes up. The data is
    inflated in pieces and dropped, so memory stays small.

    :raises InvalidImageError: when the data is corrupt, short, or longer than promised.
    """
    stream.seek(8)
    header = stream.read(25)
    width, height, depth, colour, _, _, interlaced = struct.unpack(">IIBBBBB", header[8:21])
    expected = _png_data_size(width, height, depth * _PNG_CHANNELS.get(colour, 4), interlaced)
    inflater = zlib.decompressobj()
    produced = 0
    stream.seek(8)
    try:
        while True:
            length, kind = struct.unpack(">I4s", stream.read(8))
            if kind == b"IEND":
                break
            if kind != b"IDAT":
                stream.seek(length + 4, io.SEEK_CUR)
                continue
            data = stream.read(length)
            stream.seek(4, io.SEEK_CUR)
            while data and not inflater.eof:
                produced += len(inflater.decompress(data, CHUNK_SIZE))
                data = inflater.unconsumed_tail
                if produced > expected:
                    break
    except (struct.error, zlib.error) as exc:
        raise _not_an_image(filename, "its image data is corrupt") from exc
    if not inflater.eof or produced != expected or inflater.unused_data:
        raise _not_an_image(filename, "its image data is truncated or corrupt")


def _png_data_size(width: int, height: int, bits_per_pixel: int, interlaced: int) -> int:
    """How many bytes a PNG's image data inflates to: each row's filter byte and pixels."""
    passes = _ADAM7 if interlaced else ((0, 0, 1, 1),)
    size = 0
    for x0, y0, dx, dy in passes:
        columns = (width - x0 + dx - 1) // dx
        rows = (height - y0 + dy - 1) // dy
        if columns > 0 and rows > 0:
            size += rows * (1 + (columns * bits_per_pixel + 7) // 8)
    return size


def _orientation_of(image: Image.Image) -> int:
    """The image's EXIF orientation, 1 when it has none or a nonsense one."""
    try:
        value = image.getexif().get(_ORIENTATION, 1)
    except Exception:  # unreadable EXIF: the pixels are what they are
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _not_an_image(filename: str, why: str) -> InvalidImageError:
    return InvalidImageError(f"{filename!r} is not a valid image: {why}.")


def _check_single_content(stream: BinaryIO, image_format: str, filename: str) -> None:
    """Refuse a polyglot: bytes after the image's end, markup anywhere, an archive inside.

    :raises InvalidImageError: naming what was found.
    """
    size = stream.seek(0, io.SEEK_END)
    stream.seek(max(0, size - _ZIP_TAIL))
    tail = stream.read()
    if not _ends_as(image_format, tail, size, stream):
        raise _not_an_image(filename, "other data follows the end of the image")
    if _holds_zip_end(tail, size):
        raise _not_an_image(filename, "it also holds a ZIP archive")
    stream.seek(0)
    if b"%PDF-" in stream.read(_PDF_HEAD):
        raise _not_an_image(filename, "it also holds a PDF document")
    try:
        markup = _found(stream, [(0, size)], _PAYLOAD) or _found(
            stream, _metadata_parts(stream, image_format, size), _MARKUP
        )
    except (InvalidImageError, struct.error) as exc:  # its parts do not add up
        raise _not_an_image(filename, "it is truncated or corrupt") from exc
    if markup:
        raise _not_an_image(filename, "it also holds HTML, SVG, script or PHP markup")
    if _found(stream, [(0, size)], None, _ARCHIVES):
        raise _not_an_image(filename, "it also holds an archive (RAR or 7z)")


def _holds_zip_end(tail: bytes, size: int) -> bool:
    """Whether ``tail`` (the file's last bytes) holds a ZIP end-of-central-directory record
    a ZIP reader would take: on disk 0, listing as many entries as the archive has, with
    its directory before it. Four random bytes alone match in one photo in 65,000; the
    record's fields make a false alarm vanishingly rare."""
    at = tail.find(_ZIP_END)
    while at != -1:
        record = tail[at : at + 22]
        if len(record) == 22:
            _, disk, cd_disk, here, total, cd_size, cd_offset, _ = struct.unpack(
                "<4sHHHHIIH", record
            )
            record_offset = size - len(tail) + at
            if disk == cd_disk == 0 and here == total and cd_offset + cd_size <= record_offset:
                return True
        at = tail.find(_ZIP_END, at + 1)
    return False


def _ends_as(image_format: str, tail: bytes, size: int, stream: BinaryIO) -> bool:
    """Whether the file ends where an image of ``image_format`` ends (``tail``: its end)."""
    if image_format == "JPEG":
        # Some cameras pad a JPEG with zeros; a phone's MPF images follow the first one and
        # end with their own EOI, so the file still ends with one.
        return tail.rstrip(b"\x00").endswith(b"\xff\xd9")
    if image_format == "PNG":
        return tail.endswith(_PNG_END)
    if image_format == "GIF":
        return tail.endswith(b"\x3b")
    stream.seek(4)  # WEBP: a RIFF file says its own length
    (riff_size,) = struct.unpack("<I", stream.read(4))
    return bool(riff_size + 8 + (riff_size & 1) == size)


def _found(
    stream: BinaryIO,
    parts: Iterable[tuple[int, int]],
    pattern: re.Pattern[bytes] | None,
    signatures: tuple[bytes, ...] = (),
) -> bool:
    """Whether ``pattern`` (if any) matches, or one of ``signatures`` is, in one of
    ``parts`` (``(offset, length)`` of the file), each read in chunks (each window starts
    with the end of the one before)."""
    for offset, length in parts:
        stream.seek(offset)
        left, carry = length, b""
        while left > 0 and (chunk := stream.read(min(CHUNK_SIZE, left))):
            left -= len(chunk)
            window = carry + chunk
            if pattern is not None and pattern.search(window):
                return True
            if any(signature in window for signature in signatures):
                return True
            carry = window[-_OVERLAP:]
    return False


def _metadata_parts(stream: BinaryIO, image_format: str, size: int) -> Iterator[tuple[int, int]]:
    """``(offset, length)`` of each part of the file that holds no pixel data: every JPEG
    segment (not the entropy-coded data), every PNG or WebP chunk and GIF block but the
    image data."""
    if image_format == "JPEG":
        for marker, offset, length in _jpeg_parts(stream):
            if marker is not None and length > 2:
                yield offset, length
    elif image_format == "PNG":
        for kind, offset, length in _png_chunks(stream):
            if kind not in (b"IDAT", b"fdAT"):
                yield offset, length
    elif image_format == "WEBP":
        for kind, offset, length in _webp_chunks(stream):
            if kind not in _WEBP_PIXELS:
                yield offset - 8, length + 8
    else:
        for kind, offset, length in _gif_blocks(stream):
            if kind != _GIF_IMAGE:
                yield offset, length


# -- metadata stripping (lossless) -------------------------------------------------------------


def _orientation_exif(orientation: int) -> bytes:
    """A minimal EXIF block (``Exif\\0\\0`` and TIFF) holding only ``orientation``."""
    from PIL import Image

    exif = Image.Exif()
    exif[_ORIENTATION] = orientation
    data = exif.tobytes()
    return data if data.startswith(b"Exif\x00\x00") else b"Exif\x00\x00" + data


def strip_image_metadata(source: BinaryIO, target: BinaryIO, facts: ImageFacts) -> None:
    """Copy the image in ``source`` (checked by :func:`check_image`) to ``target`` without
    its metadata.

    Lossless: segments and chunks are copied, never decoded, in pieces (memory stays small
    whatever the size). Removed: EXIF (camera, GPS, time), XMP, IPTC, comments and text
    chunks, and whatever follows a JPEG's first image (a phone's extra MPF images). Kept:
    the pixels, ICC colour profiles, and the EXIF orientation as the only EXIF tag, so the
    image is still displayed the right way up; a GIF's animation loop count.
    """
    source.seek(0)
    keep = _orientation_exif(facts.orientation) if facts.orientation != 1 else None
    if facts.format == "JPEG":
        _strip_jpeg(source, target, keep)
    elif facts.format == "PNG":
        _strip_png(source, target, keep)
    elif facts.format == "WEBP":
        _strip_webp(source, target, keep)
    else:
        _strip_gif(source, target)


def _copy(source: BinaryIO, target: BinaryIO, size: int | None) -> None:
    """Copy ``size`` bytes (all that is left for ``None``) in pieces."""
    left = size
    while left is None or left > 0:
        chunk = source.read(CHUNK_SIZE if left is None else min(CHUNK_SIZE, left))
        if not chunk:
            return
        target.write(chunk)
        if left is not None:
            left -= len(chunk)


def _read_exactly(source: BinaryIO, size: int) -> bytes:
    data = source.read(size)
    if len(data) != size:
        raise InvalidImageError("The image ends inside a segment.")
    return data


#: JPEG markers followed by no length: TEM, RST0-7, SOI.
_STANDALONE = frozenset({0x01, 0xD8, *range(0xD0, 0xD8)})
#: The next marker inside entropy-coded data: 0xFF not followed by a stuffed 0 or a restart.
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def _strip_jpeg(source: BinaryIO, target: BinaryIO, keep: bytes | None) -> None:
    """Copy a JPEG's segments but APP1-APP13, APP15 (EXIF, XMP, MPF, IPTC...), COM and
    APP2 other than ICC profiles, up to its first EOI."""
    for marker, offset, length in _jpeg_parts(source):
        if marker == 0xD8:
            target.write(b"\xff\xd8")
            if keep is not None:
                target.write(b"\xff\xe1" + struct.pack(">H", len(keep) + 2) + keep)
            continue
        if marker is not None and length > 2:
            source.seek(offset + 4)
            if not _keeps_segment(marker, source.read(12)):
                continue
        source.seek(offset)
        _copy(source, target, length)


def _jpeg_parts(source: BinaryIO) -> Iterator[tuple[int | None, int, int]]:
    """Each part of a JPEG up to its first EOI, as ``(marker, offset, length)``: a segment
    (its marker and length bytes included), or entropy-coded data (marker ``None``).

    Fill bytes before a marker belong to no part. The caller may move ``source`` between
    parts.
    """
    yield 0xD8, 0, 2
    position = 2
    while True:
        source.seek(position)
        two = source.read(2)
        if len(two) < 2:
            return
        if two[0] != 0xFF:  # entropy-coded data
            source.seek(position)
            length = _entropy_coded_length(source)
            yield None, position, length
            position += length
            continue
        marker = two[1]
        if marker == 0xFF:  # a fill byte
            position += 1
            continue
        if marker in _STANDALONE or marker == 0xD9:
            yield marker, position, 2
            if marker == 0xD9:
                return
            position += 2
            continue
        (length,) = struct.unpack(">H", _read_exactly(source, 2))
        yield marker, position, 2 + length
        position += 2 + length


def _entropy_coded_length(source: BinaryIO) -> int:
    """How many bytes of entropy-coded data start at ``source``'s position, up to the next
    marker (or the end of the file)."""
    start = source.tell()
    while True:
        at = source.tell()
        chunk = source.read(CHUNK_SIZE)
        found = _NEXT_MARKER.search(chunk)
        if found is not None:
            return at + found.start() - start
        if len(chunk) > 1 and chunk[-1] == 0xFF:  # a marker may begin at the very end
            source.seek(at + len(chunk) - 1)
        elif len(chunk) < CHUNK_SIZE:
            return at + len(chunk) - start


def _keeps_segment(marker: int, start: bytes) -> bool:
    """Whether a JPEG segment is kept: all but metadata (APPn, COM); ICC, JFIF and Adobe
    (its colour transform) stay."""
    if marker == 0xE2:
        return start.startswith(b"ICC_PROFILE\x00")
    if marker in (0xE0, 0xEE):
        return True
    return not (0xE1 <= marker <= 0xEF or marker == 0xFE)


#: PNG chunks dropped: EXIF, text (often XMP or software notes), the modification time.
_PNG_METADATA = frozenset({b"eXIf", b"tEXt", b"zTXt", b"iTXt", b"tIME"})


def _strip_png(source: BinaryIO, target: BinaryIO, keep: bytes | None) -> None:
    """Copy a PNG's chunks but metadata; a kept orientation goes in a fresh ``eXIf``."""
    target.write(_read_exactly(source, 8))
    for kind, offset, length in _png_chunks(source):
        if kind == b"IDAT" and keep is not None:  # eXIf must come before the image data
            body = keep.removeprefix(b"Exif\x00\x00")
            crc = struct.pack(">I", zlib.crc32(b"eXIf" + body))
            target.write(struct.pack(">I", len(body)) + b"eXIf" + body + crc)
            keep = None
        if kind not in _PNG_METADATA:
            source.seek(offset)
            _copy(source, target, length)


def _png_chunks(source: BinaryIO) -> Iterator[tuple[bytes, int, int]]:
    """``(kind, offset, length)`` of each chunk of a PNG up to IEND (header and CRC
    included). The caller may move ``source`` between chunks."""
    position = 8
    while True:
        source.seek(position)
        header = source.read(8)
        if len(header) < 8:
            return
        length, kind = struct.unpack(">I4s", header)
        yield kind, position, length + 12
        if kind == b"IEND":
            return
        position += length + 12


def _strip_webp(source: BinaryIO, target: BinaryIO, keep: bytes | None) -> None:
    """Copy a WebP's RIFF chunks but ``EXIF`` and ``XMP``, fixing the flags and the length.

    A kept orientation needs the extended format (``VP8X``); a simple WebP loses it, as
    browsers ignore it there anyway.
    """
    chunks = _webp_chunks(source)
    extended = any(kind == b"VP8X" for kind, _, _ in chunks)
    exif = keep.removeprefix(b"Exif\x00\x00") if keep is not None and extended else None
    kept = [(kind, offset, length) for kind, offset, length in chunks if kind not in _WEBP_META]
    size = 4 + sum(8 + length + (length & 1) for _, _, length in kept)
    if exif is not None:
        size += 8 + len(exif) + (len(exif) & 1)
    target.write(b"RIFF" + struct.pack("<I", size) + b"WEBP")
    for kind, offset, length in kept:
        source.seek(offset)
        target.write(kind + struct.pack("<I", length))
        if kind == b"VP8X":  # flags: no XMP (0x04); EXIF (0x08) only if kept
            flags = _read_exactly(source, 1)[0] & ~0x0C | (0x08 if exif is not None else 0)
            target.write(bytes([flags]))
            _copy(source, target, length - 1 + (length & 1))
        else:
            _copy(source, target, length + (length & 1))
    if exif is not None:
        target.write(b"EXIF" + struct.pack("<I", len(exif)) + exif + b"\x00" * (len(exif) & 1))


#: WebP chunks dropped.
_WEBP_META = frozenset({b"EXIF", b"XMP "})
#: WebP chunks holding pixel data (or frames of it).
_WEBP_PIXELS = frozenset({b"VP8 ", b"VP8L", b"ALPH", b"ANMF"})


def _webp_chunks(source: BinaryIO) -> list[tuple[bytes, int, int]]:
    """``(kind, offset of the body, length)`` of each chunk of a WebP file."""
    chunks = []
    source.seek(12)
    while len(header := source.read(8)) == 8:
        kind, length = struct.unpack("<4sI", header)
        chunks.append((kind, source.tell(), length))
        source.seek(length + (length & 1), io.SEEK_CUR)
    return chunks


#: GIF block kinds: the header with its colour table, an image (descriptor, colour table
#: and LZW data), the trailer; extensions are ``b"!"`` and their label.
_GIF_HEADER, _GIF_IMAGE, _GIF_TRAILER = b"header", b",", b";"
#: GIF extensions dropped: comments, and application extensions but the loop count's.
_GIF_COMMENT = b"!\xfe"
_GIF_APPLICATION = b"!\xff"
_GIF_LOOP_APPLICATIONS = (b"NETSCAPE2.0", b"ANIMEXTS1.0")


def _strip_gif(source: BinaryIO, target: BinaryIO) -> None:
    """Copy a GIF's blocks but comments and application extensions (XMP...) other than
    the animation loop count."""
    for kind, offset, length in _gif_blocks(source):
        if kind == _GIF_COMMENT:
            continue
        if kind == _GIF_APPLICATION:
            source.seek(offset + 3)
            if source.read(11) not in _GIF_LOOP_APPLICATIONS:
                continue
        source.seek(offset)
        _copy(source, target, length)


def _gif_blocks(source: BinaryIO) -> Iterator[tuple[bytes, int, int]]:
    """``(kind, offset, length)`` of each block of a GIF up to its trailer. The caller may
    move ``source`` between blocks."""
    source.seek(10)
    flags = _read_exactly(source, 1)[0]
    position = 13 + _gif_colour_table(flags)
    yield _GIF_HEADER, 0, position
    while True:
        source.seek(position)
        introducer = source.read(1)
        if introducer == _GIF_TRAILER or not introducer:
            yield _GIF_TRAILER, position, len(introducer)
            return
        if introducer == b"!":
            kind = introducer + _read_exactly(source, 1)
            start = position + 2
        elif introducer == _GIF_IMAGE:
            descriptor = _read_exactly(source, 9)
            kind = _GIF_IMAGE
            start = position + 10 + _gif_colour_table(descriptor[8]) + 1  # + LZW code size
        else:
            raise InvalidImageError("The GIF holds a block of no known kind.")
        source.seek(start)
        length = start - position + _sub_blocks_length(source)
        yield kind, position, length
        position += length


def _gif_colour_table(flags: int) -> int:
    """The size of the colour table a GIF descriptor's ``flags`` announce."""
    return 3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0


def _sub_blocks_length(source: BinaryIO) -> int:
    """The length of the GIF data sub-blocks at ``source``'s position, terminator included
    (read in chunks: an image's LZW data comes in pieces of 255 bytes at most)."""
    start = source.tell()
    skip = 0  # bytes of the current chunk before the next size byte
    total = 0
    while chunk := source.read(CHUNK_SIZE):
        at = skip
        while at < len(chunk):
            size = chunk[at]
            if size == 0:
                return total + at + 1
            at += size + 1
        skip = at - len(chunk)
        total += len(chunk)
    source.seek(start)
    raise InvalidImageError("The GIF ends inside a block.")


# -- thumbnails ------------------------------------------------------------------------------


def checked_thumbnail_sizes(
    thumbnails: Mapping[str, tuple[int, int]],
) -> dict[str, tuple[int, int]]:
    """``thumbnails`` checked: names usable in a key, two positive whole sides each.

    :raises InvalidArgumentError: naming the first bad entry.
    """
    checked: dict[str, tuple[int, int]] = {}
    for name, size in thumbnails.items():
        if not isinstance(name, str) or not _THUMBNAIL_NAME.fullmatch(name):
            raise InvalidArgumentError(
                f"A thumbnail's name must be 1 to 40 letters, digits, '_' or '-' (starting "
                f"with a letter or digit), not {name!r}."
            )
        if (
            not isinstance(size, (tuple, list))
            or len(size) != 2
            or not all(
                isinstance(side, int)
                and not isinstance(side, bool)
                and 0 < side <= MAX_THUMBNAIL_SIDE
                for side in size
            )
        ):
            raise InvalidArgumentError(
                f"The size of thumbnail {name!r} must be (width, height), each a whole number "
                f"from 1 to {MAX_THUMBNAIL_SIDE}, not {size!r}."
            )
        checked[name] = (int(size[0]), int(size[1]))
    return checked


def make_thumbnails(
    stream: BinaryIO, sizes: Mapping[str, tuple[int, int]], *, filename: str, max_pixels: int
) -> dict[str, tuple[Image.Image, str]]:
    """Each thumbnail of the image in ``stream`` and the format to write it in.

    The image is decoded once, at the smallest JPEG scale still as large as the largest
    thumbnail, turned by its EXIF orientation, and each thumbnail is fitted into its box
    (aspect ratio kept; an image smaller than a box is not enlarged). No metadata is kept.
    """
    from PIL import ImageOps

    if not sizes:
        return {}
    position = stream.tell()
    with _opened(stream, filename, max_pixels) as image:
        image_format = str(image.format)
        side = max(max(size) for size in sizes.values())
        if image_format == "JPEG":
            # Either way round: the box is compared before the orientation is applied.
            image.draft("RGB" if image.mode == "CMYK" else image.mode, (side, side))
        _decode(image, filename)
        upright = ImageOps.exif_transpose(image)
    stream.seek(position)
    converted = _thumbnail_mode(upright)
    # The colour profile stays (a phone's Display P3 photo would look dull without it),
    # unless the pixels were converted out of the space it describes (CMYK to RGB).
    profile = upright.info.get("icc_profile") if converted is upright else None
    kept: dict[str | tuple[int, int], Any] = {"icc_profile": profile} if profile else {}
    out_format = _THUMBNAIL_FORMATS[image_format]
    thumbnails = {}
    for name, box in sizes.items():
        thumbnail = converted.copy()
        thumbnail.thumbnail(box)
        thumbnail.info = dict(kept)  # no EXIF, XMP, comments or text
        thumbnails[name] = (thumbnail, out_format)
    return thumbnails


def _thumbnail_mode(image: Image.Image) -> Image.Image:
    """``image`` in a mode that scales smoothly and saves in every thumbnail format."""
    if image.mode in ("RGB", "RGBA", "L", "LA"):
        return image
    has_alpha = "transparency" in image.info or image.mode in ("PA", "RGBa", "La")
    return image.convert("RGBA" if has_alpha else "RGB")


def encode_thumbnail(image: Image.Image, out_format: str, target: BinaryIO) -> None:
    """Write ``image`` to ``target`` as ``out_format``, with no metadata."""
    if out_format == "JPEG" and image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    options = dict(_SAVE_OPTIONS[out_format])
    profile = image.info.get("icc_profile")
    if profile:
        options["icc_profile"] = profile
    image.save(target, out_format, **options)


def thumbnail_key(original_key: str, name: str, image_format: str) -> str:
    """The key a thumbnail is first tried under: ``a/cat.jpg`` -> ``a/cat.small.jpg``.

    ``image_format`` is the original's format (a GIF's thumbnails are PNGs).
    """
    stem, _ = split_extension(original_key)
    return f"{stem}.{name}{_EXTENSIONS[_THUMBNAIL_FORMATS[image_format]]}"


# -- saving and deleting --------------------------------------------------------------------


def save_image(
    store: BaseStore,
    source: Any,
    *,
    filename: str | None = None,
    thumbnails: Mapping[str, tuple[int, int]] = MappingProxyType({}),
    strip_metadata: bool | None = None,
    max_pixels: int | None = None,
) -> SavedImage:
    """Check ``source``, save it and its thumbnails in ``store``: all of them or nothing.

    :param source: what ``save()`` accepts: a Werkzeug ``FileStorage``, a binary file
        object, ``bytes`` or a path.
    :param filename: the name to save it under, instead of the source's own.
    :param thumbnails: ``{name: (width, height)}``: each thumbnail fits in its box.
    :param strip_metadata: remove EXIF (GPS...), XMP, IPTC and comments from the saved
        original (thumbnails never have any); default: the store's
        ``STORE_IMAGE_STRIP_METADATA``.
    :param max_pixels: the most pixels the image may declare; default: the store's
        ``STORE_IMAGE_MAX_PIXELS``.
    :raises InvalidImageError: when the bytes are not one real image (see
        :func:`check_image`); nothing is stored.
    :raises ImageTooLargeError: for a decompression bomb; nothing is stored.
    :raises InvalidArgumentError: for a bad thumbnail name or size.
    :raises StoreError: as ``save()`` does (a store's own checks and limits, a full disk...);
        whatever was saved is deleted again.
    """
    sizes = checked_thumbnail_sizes(thumbnails)
    # The store's settings were checked by its schema (flask_store.config); arguments were not.
    if max_pixels is None:
        max_pixels = store.config.value("IMAGE_MAX_PIXELS")
    else:
        _check_max_pixels(max_pixels)
    if strip_metadata is None:
        strip_metadata = store.config.value("IMAGE_STRIP_METADATA")
    with open_upload(source, filename) as upload, tempfile.TemporaryFile() as spooled:
        name = upload.filename or "image"
        # The store's STORE_MAX_SIZE, kept while spooling: an endless source stops there.
        _spool(limited(upload.stream, store.config.value("MAX_SIZE"), name), spooled)
        # Making thumbnails decodes the image: the check need not decode it first.
        facts = _check(cast(BinaryIO, spooled), name, max_pixels, decode=not sizes)
        made = make_thumbnails(cast(BinaryIO, spooled), sizes, filename=name, max_pixels=max_pixels)
        with tempfile.TemporaryFile() as stripped:
            original = cast(BinaryIO, spooled)
            if strip_metadata:
                strip_image_metadata(original, cast(BinaryIO, stripped), facts)
                original = cast(BinaryIO, stripped)
            original.seek(0)
            return _save_all(store, original, _named_for(name, facts), facts, made)


def _spool(stream: BinaryIO, target: Any) -> None:
    """Copy an upload into the temporary file ``target`` and rewind it."""
    while chunk := read_checked(stream, CHUNK_SIZE):
        target.write(chunk)
    target.flush()
    target.seek(0)


def _named_for(name: str, facts: ImageFacts) -> str:
    """``name`` with an extension of the image's real format (``cat.png`` of a JPEG ->
    ``cat.jpg``), so the key never says another type than the bytes."""
    stem, ext = split_extension(name)
    if ext.lower() in _KNOWN_EXTENSIONS[facts.format]:
        return name
    return f"{stem or 'image'}{_EXTENSIONS[facts.format]}"


def _save_all(
    store: BaseStore,
    original: BinaryIO,
    name: str,
    facts: ImageFacts,
    thumbnails: Mapping[str, tuple[Image.Image, str]],
) -> SavedImage:
    """Save the original and each thumbnail; on any failure delete what was saved."""
    saved: list[FileWrapper] = []
    try:
        first = store.save(original, name=name, content_type=facts.content_type)
        saved.append(first)
        made: dict[str, FileWrapper] = {}
        for thumb_name, (image, out_format) in thumbnails.items():
            made[thumb_name] = _save_thumbnail(store, first, thumb_name, image, out_format, facts)
            saved.append(made[thumb_name])
    except BaseException:
        _delete_quietly(store, [wrapper.key for wrapper in saved])
        raise
    return SavedImage(first, MappingProxyType(made), facts)


def _save_thumbnail(
    store: BaseStore,
    original: FileWrapper,
    name: str,
    image: Image.Image,
    out_format: str,
    facts: ImageFacts,
) -> FileWrapper:
    """Encode one thumbnail and write it beside ``original`` (renamed if its key is taken)."""
    with tempfile.SpooledTemporaryFile(max_size=CHUNK_SIZE) as encoded:
        encode_thumbnail(image, out_format, cast(BinaryIO, encoded))
        encoded.seek(0)
        key = thumbnail_key(original.key, name, facts.format)
        stem = split_extension(original.filename)[0]
        meta = FileMeta(
            filename=recorded_filename(f"{stem}.{name}{_EXTENSIONS[out_format]}"),
            content_type=IMAGE_FORMATS[out_format],
        )
        chunks = iter(lambda: encoded.read(CHUNK_SIZE), b"")
        info = store.write(chunks, candidate_keys(key, "rename"), meta)
    return FileWrapper(store, info.key, info=info)


def _delete_quietly(store: BaseStore, keys: list[str]) -> None:
    """Delete ``keys``, logging (not raising) a failure: an error is on its way already."""
    for key in keys:
        try:
            store.delete(key)
        except (StoreError, OSError):
            log.exception("Could not delete %r of an image whose save failed", key)


def delete_image(
    store: BaseStore, key: str, thumbnail_keys: Mapping[str, str] | Iterable[str] = ()
) -> int:
    """Delete an image saved by :func:`save_image` and its thumbnails; safe to repeat.

    Thumbnails go first, so a failure part-way never leaves thumbnails of a deleted image.

    :param key: the original's key.
    :param thumbnail_keys: the thumbnails' keys: ``{name: key}`` or any iterable of keys.
    :returns: how many files were deleted.
    """
    keys = thumbnail_keys.values() if isinstance(thumbnail_keys, Mapping) else thumbnail_keys
    return sum(1 for each in [*keys, key] if store.delete(each))
