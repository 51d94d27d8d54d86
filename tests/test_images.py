"""Images from an attacker's side: files that are not images, polyglots, truncated files,
decompression bombs, leaked GPS positions; and thumbnails that keep aspect and orientation,
saved all or nothing. Every image is generated here with Pillow (or byte by byte)."""

from __future__ import annotations

import io
import struct
import sys
import zipfile
import zlib
from typing import Any

import pytest
from PIL import Image

from flask_store.errors import answer_for
from flask_store.exceptions import (
    FileExistsInStoreError,
    FileTooLargeError,
    ImageTooLargeError,
    InvalidArgumentError,
    InvalidImageError,
    NotConfiguredError,
    StorageFullError,
    UploadRejectedError,
)
from flask_store.images import (
    DEFAULT_MAX_PIXELS,
    ImageFacts,
    check_image,
    delete_image,
    save_image,
    thumbnail_key,
)
from flask_store.meta import FileInfo, FileMeta
from flask_store.stores.memory import MemoryStore
from tests.stores import STORE_KINDS, everything_stored

GPS_IFD = 0x8825
ORIENTATION = 0x0112
RED, BLUE = (255, 0, 0), (0, 0, 255)
#: A GPS position a user never meant to publish.
GPS = {1: "N", 2: (48.0, 51.0, 29.0), 3: "E", 4: (2.0, 17.0, 40.0)}


def exif(orientation: int = 1, gps: bool = True) -> Image.Exif:
    data = Image.Exif()
    data[0x010F] = "PhoneMaker"  # camera make
    if orientation != 1:
        data[ORIENTATION] = orientation
    if gps:
        data.get_ifd(GPS_IFD).update(GPS)
    return data


def two_halves(width: int, height: int) -> Image.Image:
    """Red on the left half, blue on the right: shows which way an image was turned."""
    image = Image.new("RGB", (width, height), BLUE)
    image.paste(RED, (0, 0, width // 2, height))
    return image


def encoded(image: Image.Image, image_format: str, **options: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, image_format, **options)
    return out.getvalue()


def jpeg(width: int = 200, height: int = 100, **options: Any) -> bytes:
    return encoded(two_halves(width, height), "JPEG", quality=90, **options)


def png(width: int = 200, height: int = 100, **options: Any) -> bytes:
    return encoded(two_halves(width, height), "PNG", **options)


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bomb(width: int, height: int) -> bytes:
    """A valid-looking PNG of a few hundred bytes that declares ``width`` x ``height``
    1-bit pixels: decoding it would need gigabytes. Its data holds only its first rows, so
    a check that decoded before refusing would fail as 'truncated', not as too large."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * ((width + 7) // 8 + 1) * 16, 9)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", rows)
        + png_chunk(b"IEND", b"")
    )


def gif_with_comment(comment: bytes) -> bytes:
    """A real GIF whose comment extension carries ``comment`` (where GIF polyglots hide)."""
    image = encoded(Image.new("P", (8, 8), 1), "GIF")
    assert image[-1:] == b";"
    blocks = b"".join(
        bytes([len(comment[i : i + 255])]) + comment[i : i + 255]
        for i in range(0, len(comment), 255)
    )
    # Insert the comment extension right after the logical screen and colour table.
    flags = image[10]
    table = 3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0
    split = 13 + table
    return image[:split] + b"\x21\xfe" + blocks + b"\x00" + image[split:]


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def gps_of(data: bytes) -> dict[int, Any]:
    return dict(Image.open(io.BytesIO(data)).getexif().get_ifd(GPS_IFD))


def check(data: bytes, filename: str = "upload.png", max_pixels: int = DEFAULT_MAX_PIXELS) -> Any:
    return check_image(io.BytesIO(data), filename=filename, max_pixels=max_pixels)


# -- what is not an image -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (b"just some text, named like an image\n" * 10, "notes.png"),
        (b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>', "logo.png"),
        (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>', "logo.svg"),
        (b"%PDF-1.4\n%%EOF\n", "scan.jpg"),
        (b"", "empty.png"),
        (b"\x89PNG\r\n\x1a\n", "only-a-signature.png"),
    ],
)
def test_what_is_not_an_image_is_refused_naming_the_file(data: bytes, name: str) -> None:
    with pytest.raises(InvalidImageError) as caught:
        check(data, name)
    message = str(caught.value)
    assert repr(name) in message
    assert "not a valid image" in message
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, UploadRejectedError)


@pytest.mark.parametrize("image_format", ["BMP", "TIFF", "ICO", "PPM"])
def test_formats_beyond_the_web_ones_are_refused(image_format: str) -> None:
    with pytest.raises(InvalidImageError):
        check(encoded(two_halves(32, 32), image_format), f"x.{image_format.lower()}")


def test_a_gif_carrying_html_is_refused() -> None:
    polyglot = gif_with_comment(b"<html><script>alert(document.domain)</script></html>")
    opened(polyglot)  # Pillow alone takes it for a fine GIF
    with pytest.raises(InvalidImageError, match="markup"):
        check(polyglot, "funny.gif")


def test_a_jpeg_carrying_a_zip_is_refused() -> None:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("payload.jar", b"class Evil {}")
    polyglot = jpeg() + archive.getvalue()
    opened(polyglot)  # Pillow alone decodes it
    assert zipfile.is_zipfile(io.BytesIO(polyglot))  # and so does any ZIP reader
    with pytest.raises(InvalidImageError):
        check(polyglot, "holiday.jpg")


@pytest.mark.parametrize(
    "payload",
    [
        b"<?php system($_GET['c']); ?>",
        b"<script>alert(1)</script>",
        b'<svg onload="x">',
        b"<SCRIPT\nsrc=//evil.example>",
        b"<!DOCTYPE html>",
        b"Rar!\x1a\x07\x00",
    ],
)
def test_markup_in_a_png_text_chunk_is_refused(payload: bytes) -> None:
    data = png()
    polyglot = data[:33] + png_chunk(b"tEXt", b"Comment\x00" + payload) + data[33:]
    opened(polyglot)
    with pytest.raises(InvalidImageError):
        check(polyglot, "a.png")


def test_a_tag_in_a_jpeg_comment_is_refused_but_not_the_same_bytes_in_its_pixels() -> None:
    """A short tag such as ``<svg`` turns up by chance in about one 50 MB photo in 300, so
    only metadata is searched for it; pixel data is searched for long payloads only."""
    data = jpeg(300, 200)
    in_comment = data[:2] + b"\xff\xfe\x00\x0a<svg x/>" + data[2:]
    with pytest.raises(InvalidImageError, match="markup"):
        check(in_comment)
    scan = data.index(b"\xff\xda")
    middle = scan + (len(data) - scan) // 2
    in_pixels = data[:middle] + b"<svg " + data[middle + 5 :]
    assert check(in_pixels).format == "JPEG"


def png_of_pixels(pixels: bytes) -> bytes:
    """A 40 x 4 RGB PNG whose rows are ``pixels``, kept in stored (uncompressed) deflate
    blocks: the bytes appear in the file as they are."""
    row = b"\x00" + pixels.ljust(3 * 40, b" ")
    header = struct.pack(">IIBBBBB", 40, 4, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(row * 4, 0))
        + png_chunk(b"IEND", b"")
    )


def test_a_script_in_png_pixels_is_refused_but_not_a_short_tag() -> None:
    """Stored deflate blocks carry a payload through the pixel data; a short tag there is
    what compressed bytes spell by chance, and passes."""
    polyglot = png_of_pixels(b"<script src=//evil.example></script>")
    assert opened(polyglot).size == (40, 4)
    with pytest.raises(InvalidImageError, match="markup"):
        check(polyglot)
    assert check(png_of_pixels(b"<svg <html <body ")).format == "PNG"


def test_a_zip_signature_alone_in_an_image_is_no_zip() -> None:
    """Four bytes that happen to spell a ZIP's end record are not enough to refuse a photo;
    a PNG whose last chunk carries a real one is refused."""
    data = png()
    lookalike = data[:33] + png_chunk(b"prVt", b"PK\x05\x06" + b"\xff" * 30) + data[33:]
    assert check(lookalike).format == "PNG"
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("evil.jar", b"x")
    hidden = data[:-12] + png_chunk(b"prVt", archive.getvalue()) + data[-12:]
    assert zipfile.is_zipfile(io.BytesIO(hidden))  # a ZIP reader finds it
    with pytest.raises(InvalidImageError, match="ZIP"):
        check(hidden)


@pytest.mark.parametrize("offset", range(0, 70, 3))
def test_markup_across_two_reads_is_found(monkeypatch: pytest.MonkeyPatch, offset: int) -> None:
    monkeypatch.setattr("flask_store.images.CHUNK_SIZE", 50)
    polyglot = gif_with_comment(b"." * offset + b"<iframe src=x>")
    with pytest.raises(InvalidImageError, match="markup"):
        check(polyglot, "a.gif")


@pytest.mark.parametrize("tail", [b"<html>hi</html>", b"\x00" * 3 + b"PK", b"x"])
def test_data_after_the_end_of_a_png_is_refused(tail: bytes) -> None:
    with pytest.raises(InvalidImageError, match="follows the end"):
        check(png() + tail)


def test_zero_padding_after_a_jpeg_is_accepted() -> None:
    """Some cameras pad their JPEGs with zeros."""
    assert check(jpeg() + b"\x00" * 100).format == "JPEG"


@pytest.mark.parametrize("make", [png, jpeg], ids=["png", "jpeg"])
@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_a_truncated_image_is_refused(make: Any, keep: float) -> None:
    data = make(300, 200)
    with pytest.raises(InvalidImageError, match="not a valid image"):
        check(data[: int(len(data) * keep)])


def interlaced_png(width: int, height: int) -> bytes:
    """A grey Adam7-interlaced PNG, written by hand (Pillow cannot write one)."""
    passes = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2))
    raw = b""
    for x0, y0, dx, dy in (*passes, (0, 1, 1, 2)):
        columns = len(range(x0, width, dx))
        for y in range(y0, height, dy):
            if columns:
                raw += b"\x00" + bytes((x * 7 + y) % 256 for x in range(x0, width, dx))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 1)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(raw))
        + png_chunk(b"IEND", b"")
    )


def png_with_idat(data: bytes, change: Any) -> bytes:
    """``data`` with each IDAT chunk's body changed by ``change`` and its CRC fixed up."""
    out, pos = data[:8], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        out += png_chunk(kind, change(body) if kind == b"IDAT" else body)
        pos += 12 + length
    return out


@pytest.mark.parametrize(
    "change",
    [
        lambda body: body[: len(body) // 2] + bytes(len(body) - len(body) // 2),
        lambda body: body[: len(body) // 2],
        lambda body: zlib.compress(zlib.decompress(body)[:-40]),
        lambda body: zlib.compress(zlib.decompress(body) + b"\x00" * 601),
    ],
    ids=["zeroed", "cut", "short", "long"],
)
@pytest.mark.parametrize("interlace", [False, True])
def test_a_png_with_corrupt_data_but_good_checksums_is_refused(
    change: Any, interlace: bool
) -> None:
    """Pillow's decoder leaves black rows for such data; the check counts every byte."""
    good = interlaced_png(301, 203) if interlace else png(300, 200)
    assert check(good).format == "PNG"
    assert Image.open(io.BytesIO(good)).info.get("interlace", 0) == int(interlace)
    with pytest.raises(InvalidImageError, match="corrupt"):
        check(png_with_idat(good, change))


@pytest.mark.parametrize("image_format", ["WEBP", "GIF"])
def test_a_corrupt_webp_or_gif_is_refused(image_format: str) -> None:
    data = encoded(two_halves(300, 200), image_format)
    middle = len(data) // 2
    corrupt = data[:40] + bytes(middle - 40) + data[middle:]
    with pytest.raises(InvalidImageError, match="truncated or corrupt"):
        check(corrupt)
    store = MemoryStore()  # saving with thumbnails decodes once, for both
    with pytest.raises(InvalidImageError, match="truncated or corrupt"):
        save_image(store, corrupt, filename="a.img", thumbnails={"s": (10, 10)})
    assert list(store.keys()) == []


def test_a_png_with_a_bad_checksum_is_refused() -> None:
    data = bytearray(png())
    data[40] ^= 0xFF  # inside IDAT: its CRC no longer matches
    with pytest.raises(InvalidImageError):
        check(bytes(data))


# -- decompression bombs --------------------------------------------------------------------


def test_a_png_bomb_is_refused_from_its_header() -> None:
    bomb = png_bomb(30_000, 30_000)
    assert len(bomb) < 2000
    with pytest.raises(ImageTooLargeError) as caught:
        check(bomb, "bomb.png")
    assert "30000x30000" in str(caught.value) or "pixels" in str(caught.value)
    assert isinstance(caught.value, FileTooLargeError)
    assert isinstance(caught.value, InvalidImageError)
    assert answer_for(caught.value).status == 413


def test_a_bomb_under_pillows_limit_but_over_ours_is_refused_before_decoding() -> None:
    """8000 x 8000 is below Pillow's own warning (89 Mpx) but above the 50 Mpx default;
    its data holds 16 rows, so decoding first would have failed as truncated instead."""
    with pytest.raises(ImageTooLargeError, match="8000x8000"):
        check(png_bomb(8000, 8000), "big.png")


def jpeg_declaring(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header is changed to declare ``width`` x ``height``."""
    data = jpeg(64, 64)
    frame = data.index(b"\xff\xc0")
    return data[: frame + 5] + struct.pack(">HH", height, width) + data[frame + 9 :]


@pytest.mark.parametrize(("width", "height"), [(40_000, 40_000), (8000, 8000)])
def test_a_jpeg_bomb_is_refused_from_its_header(width: int, height: int) -> None:
    with pytest.raises(ImageTooLargeError):
        check(jpeg_declaring(width, height), "bomb.jpg")
    store = MemoryStore()
    with pytest.raises(ImageTooLargeError):
        save_image(store, jpeg_declaring(width, height), filename="bomb.jpg", thumbnails=SIZES)
    assert list(store.keys()) == []


def test_pillows_own_limit_still_refuses_when_ours_is_raised() -> None:
    with pytest.raises(ImageTooLargeError, match="MAX_IMAGE_PIXELS"):
        check(png_bomb(30_000, 30_000), "bomb.png", max_pixels=10**12)


def test_the_limit_is_a_parameter() -> None:
    assert check(png(100, 50), max_pixels=5000).width == 100
    with pytest.raises(ImageTooLargeError, match="5000"):
        check(png(100, 51), max_pixels=5000)
    with pytest.raises(InvalidArgumentError):
        check(png(), max_pixels=0)


def test_the_limit_is_a_store_setting() -> None:
    store = MemoryStore(image_max_pixels=5000)
    with pytest.raises(ImageTooLargeError):
        save_image(store, png(100, 51), filename="a.png")
    assert list(store.keys()) == []
    with pytest.raises(NotConfiguredError, match="IMAGE_MAX_PIXELS"):
        MemoryStore(image_max_pixels=0)
    with pytest.raises(NotConfiguredError, match="IMAGE_STRIP_METADATA"):
        MemoryStore(image_strip_metadata="yes")


# -- facts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "image_format", "content_type"),
    [
        (png(), "PNG", "image/png"),
        (jpeg(), "JPEG", "image/jpeg"),
        (encoded(two_halves(200, 100), "GIF"), "GIF", "image/gif"),
        (encoded(two_halves(200, 100), "WEBP"), "WEBP", "image/webp"),
    ],
)
def test_facts_come_from_the_bytes(data: bytes, image_format: str, content_type: str) -> None:
    stream = io.BytesIO(data)
    stream.seek(6)
    facts = check_image(stream, filename="misnamed.txt", max_pixels=DEFAULT_MAX_PIXELS)
    assert facts == ImageFacts(200, 100, image_format, content_type)
    assert stream.tell() == 6  # left where it was


def test_facts_give_the_displayed_size_of_a_turned_photo() -> None:
    facts = check(jpeg(200, 100, exif=exif(orientation=6)))
    assert (facts.width, facts.height, facts.orientation) == (100, 200, 6)


# -- saving -----------------------------------------------------------------------------------

SIZES = {"small": (64, 64), "card": (400, 300)}


def test_gps_is_in_the_source_and_in_no_saved_file() -> None:
    source = jpeg(800, 600, exif=exif())
    assert gps_of(source)  # the test image does leak a position
    store = MemoryStore()
    saved = save_image(store, source, filename="me.jpg", thumbnails=SIZES, strip_metadata=True)
    for each in saved.files:
        data = each.read()
        assert gps_of(data) == {}, each.key
        assert 0x010F not in Image.open(io.BytesIO(data)).getexif(), each.key


def test_the_original_keeps_its_metadata_when_asked_and_thumbnails_never_do() -> None:
    store = MemoryStore(image_strip_metadata=False)
    source = jpeg(800, 600, exif=exif())
    saved = save_image(store, source, filename="me.jpg", thumbnails=SIZES)
    assert saved.original.read() == source
    assert all(gps_of(thumb.read()) == {} for thumb in saved.thumbnails.values())


def test_the_setting_strips_by_default() -> None:
    saved = save_image(MemoryStore(), jpeg(exif=exif()), filename="me.jpg")
    assert gps_of(saved.original.read()) == {}


def test_stripping_is_lossless_and_keeps_the_orientation() -> None:
    source = jpeg(320, 240, exif=exif(orientation=6), progressive=True)
    saved = save_image(MemoryStore(), source, filename="p.jpg", strip_metadata=True)
    stripped = saved.original.read()
    assert len(stripped) < len(source)
    assert opened(stripped).tobytes() == opened(source).tobytes()
    assert dict(Image.open(io.BytesIO(stripped)).getexif()) == {ORIENTATION: 6}
    check(stripped)  # still an image that passes every check


def test_a_phones_extra_images_after_the_first_are_dropped() -> None:
    """An MPF JPEG carries more images after the first EOI (depth maps, gain maps)."""
    source = jpeg(120, 80, exif=exif()) + jpeg(40, 20)
    assert check(source).width == 120
    stripped = save_image(MemoryStore(), source, filename="m.jpg", strip_metadata=True)
    data = stripped.original.read()
    assert data.count(b"\xff\xd8") == 1
    assert opened(data).size == (120, 80)


def test_png_text_and_exif_chunks_are_stripped() -> None:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Location", "48.85N 2.29E")
    info.add_itxt("XML:com.adobe.xmp", "<x:xmpmeta>GPS here</x:xmpmeta>")
    source = png(exif=exif(), pnginfo=info)
    assert b"48.85N" in source and gps_of(source)
    saved = save_image(MemoryStore(), source, filename="s.png", thumbnails=SIZES)
    for each in saved.files:
        data = each.read()
        assert b"48.85N" not in data and b"xmpmeta" not in data, each.key
        assert gps_of(data) == {}, each.key
    assert opened(saved.original.read()).tobytes() == opened(source).tobytes()


def test_webp_exif_is_stripped() -> None:
    source = encoded(two_halves(200, 100), "WEBP", exif=exif(), lossless=True)
    assert gps_of(source)
    saved = save_image(MemoryStore(), source, filename="w.webp", thumbnails={"s": (50, 50)})
    for each in saved.files:
        assert gps_of(each.read()) == {}, each.key
        check(each.read())
    assert opened(saved.original.read()).tobytes() == opened(source).tobytes()


def gif_extension(label: int, payload: bytes) -> bytes:
    """A GIF extension block: its label and ``payload`` in sub-blocks."""
    blocks = b"".join(
        bytes([len(payload[i : i + 255])]) + payload[i : i + 255]
        for i in range(0, len(payload), 255)
    )
    return b"\x21" + bytes([label]) + blocks + b"\x00"


def test_gif_comments_and_xmp_are_stripped_but_the_animation_kept() -> None:
    frames = [Image.new("RGB", (30, 20), colour) for colour in ("red", "green", "blue")]
    out = io.BytesIO()
    frames[0].save(
        out,
        "GIF",
        save_all=True,
        append_images=frames[1:],
        loop=0,
        duration=100,
        comment=b"taken at 12 Rue Example",
    )
    data = out.getvalue()
    split = data.index(b"!\xff")  # before the loop count's application extension
    xmp = gif_extension(0xFF, b"XMP DataXMP" + b"<x:xmpmeta>GPS 48.85N</x:xmpmeta>" * 20)
    source = data[:split] + xmp + data[split:]
    assert b"Rue Example" in source and b"48.85N" in source
    saved = save_image(MemoryStore(), source, filename="anim.gif", strip_metadata=True)
    stripped = saved.original.read()
    assert b"Rue Example" not in stripped and b"48.85N" not in stripped
    image = Image.open(io.BytesIO(stripped))
    assert (image.n_frames, image.info.get("loop")) == (3, 0)
    for index in range(3):
        image.seek(index)
        original = Image.open(io.BytesIO(source))
        original.seek(index)
        assert image.convert("RGB").tobytes() == original.convert("RGB").tobytes()
    check(stripped)


def test_thumbnails_keep_the_colour_profile_and_nothing_else() -> None:
    from PIL import ImageCms

    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    source = jpeg(300, 200, exif=exif(), icc_profile=profile, comment=b"shot at home")
    saved = save_image(MemoryStore(), source, filename="p.jpg", thumbnails=SIZES)
    for each in saved.files:
        image = Image.open(io.BytesIO(each.read()))
        assert image.info.get("icc_profile") == profile, each.key
        assert "comment" not in image.info, each.key
        assert gps_of(each.read()) == {}, each.key


def test_thumbnails_keep_the_aspect_ratio_and_never_grow() -> None:
    saved = save_image(
        MemoryStore(),
        png(400, 100),
        filename="wide.png",
        thumbnails={"small": (64, 64), "huge": (4000, 4000)},
    )
    assert opened(saved.thumbnails["small"].read()).size == (64, 16)
    assert opened(saved.thumbnails["huge"].read()).size == (400, 100)


@pytest.mark.parametrize("orientation", [6, 8, 3])
def test_thumbnails_apply_the_exif_orientation(orientation: int) -> None:
    source = jpeg(200, 100, exif=exif(orientation=orientation))
    saved = save_image(MemoryStore(), source, filename="t.jpg", thumbnails={"s": (50, 50)})
    thumb = opened(saved.thumbnails["s"].read()).convert("RGB")
    w, h = thumb.size
    assert (w, h) == ((50, 25) if orientation == 3 else (25, 50))
    # Where the red (left) half went: top for 6, bottom for 8, right for 3.
    samples = {"top": (w // 2, 2), "bottom": (w // 2, h - 3), "right": (w - 3, h // 2)}
    red_side = {6: "top", 8: "bottom", 3: "right"}[orientation]
    red = thumb.getpixel(samples[red_side])
    assert isinstance(red, tuple) and red[0] > 200 and red[2] < 60, (red_side, red)
    assert dict(Image.open(io.BytesIO(saved.thumbnails["s"].read())).getexif()) == {}


def test_thumbnail_formats_and_modes() -> None:
    store = MemoryStore()
    transparent = Image.new("RGBA", (100, 100), (0, 0, 0, 0))
    gif = encoded(Image.new("P", (100, 50), 3), "GIF", transparency=3)
    cmyk = encoded(Image.new("CMYK", (100, 50), (0, 255, 255, 0)), "JPEG")
    cases = {
        "alpha.png": (encoded(transparent, "PNG"), "image/png", "RGBA"),
        "anim.gif": (gif, "image/png", "RGBA"),
        "print.jpg": (cmyk, "image/jpeg", "RGB"),
        "photo.webp": (encoded(two_halves(100, 50), "WEBP"), "image/webp", "RGB"),
    }
    for name, (data, content_type, mode) in cases.items():
        thumb = save_image(store, data, filename=name, thumbnails={"t": (20, 20)}).thumbnails["t"]
        assert thumb.content_type == content_type, name
        assert opened(thumb.read()).mode == mode, name


def test_keys_are_siblings_and_the_extension_tells_the_real_format() -> None:
    store = MemoryStore()
    saved = save_image(
        store.at("photos"), jpeg(), filename="cat.png", thumbnails=SIZES, strip_metadata=False
    )
    assert saved.original.key == "photos/cat.jpg"
    assert saved.original.content_type == "image/jpeg"
    assert saved.original.filename == "cat.jpg"
    assert {name: thumb.key for name, thumb in saved.thumbnails.items()} == {
        "small": "photos/cat.small.jpg",
        "card": "photos/cat.card.jpg",
    }
    assert saved.thumbnails["small"].filename == "cat.small.jpg"
    assert thumbnail_key("photos/anim.gif", "small", "GIF") == "photos/anim.small.png"


def test_a_taken_thumbnail_key_gets_a_unique_name_and_the_other_file_is_kept() -> None:
    store = MemoryStore()
    store.put("cat.small.jpg", b"someone else's file")
    saved = save_image(store, jpeg(), filename="cat.jpg", thumbnails={"small": (10, 10)})
    assert saved.thumbnails["small"].key.startswith("cat.small_")
    assert store.read("cat.small.jpg") == b"someone else's file"


def test_saving_twice_keeps_both_images_apart() -> None:
    store = MemoryStore()
    first = save_image(store, jpeg(), filename="a.jpg", thumbnails={"s": (10, 10)})
    second = save_image(store, png(), filename="a.jpg", thumbnails={"s": (10, 10)})
    assert first.original.key != second.original.key
    assert first.thumbnails["s"].key != second.thumbnails["s"].key
    assert len(store) == 4


@pytest.mark.parametrize(
    "thumbnails",
    [{"../x": (10, 10)}, {"a/b": (10, 10)}, {"": (1, 1)}, {"s": (0, 10)}, {"s": (10,)}],
)
def test_bad_thumbnails_are_refused_before_anything_is_saved(thumbnails: Any) -> None:
    store = MemoryStore()
    with pytest.raises(InvalidArgumentError):
        save_image(store, png(), filename="a.png", thumbnails=thumbnails)
    assert list(store.keys()) == []


class FailingStore(MemoryStore):
    """A store that fails on the ``fail_at``-th write (a disk filling up mid-way)."""

    fail_at = 3

    def _write(self, chunks: Any, keys: Any, meta: FileMeta, overwrite: bool) -> FileInfo:
        self.fail_at -= 1
        if self.fail_at == 0:
            list(chunks)
            raise StorageFullError("The store is full.")
        return super()._write(chunks, keys, meta, overwrite)


@pytest.mark.parametrize("fail_at", [1, 2, 3])
def test_a_failure_part_way_leaves_nothing(fail_at: int) -> None:
    store = FailingStore()
    store.fail_at = fail_at
    with pytest.raises(StorageFullError):
        save_image(store, jpeg(), filename="a.jpg", thumbnails=SIZES)
    assert list(store.keys()) == []


def test_an_endless_source_stops_at_the_stores_limit() -> None:
    class Endless(io.RawIOBase):
        given = 0

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: Any) -> int:
            buffer[: len(buffer)] = b"\xff" * len(buffer)
            self.given += len(buffer)
            return len(buffer)

    store = MemoryStore(max_size=3_000_000)
    endless = Endless()
    with pytest.raises(FileTooLargeError):
        save_image(store, endless, filename="a.jpg", thumbnails=SIZES)
    assert endless.given < 3_000_000 + 2 * 1024 * 1024
    assert list(store.keys()) == []


def test_the_store_checks_apply_to_the_original() -> None:
    store = MemoryStore(max_size=100)
    with pytest.raises(FileTooLargeError):
        save_image(store, jpeg(), filename="a.jpg", thumbnails=SIZES)
    store = MemoryStore(on_conflict="error")
    save_image(store, png(), filename="a.png")
    with pytest.raises(FileExistsInStoreError):
        save_image(store, png(), filename="a.png", thumbnails=SIZES)
    assert list(store.keys()) == ["a.png"]


@pytest.mark.parametrize("bad", [b"not an image", png_bomb(30_000, 30_000)])
def test_a_refused_image_leaves_nothing(bad: bytes) -> None:
    store = MemoryStore()
    with pytest.raises(InvalidImageError):
        save_image(store, bad, filename="a.png", thumbnails=SIZES)
    assert list(store.keys()) == []


@pytest.mark.parametrize("kind", ["local", "queued", "s3-mock"])
def test_save_and_delete_on_every_kind_of_store(request: pytest.FixtureRequest, kind: str) -> None:
    with STORE_KINDS[kind].make(request) as store:
        saved = save_image(store, jpeg(exif=exif()), filename="me.jpg", thumbnails=SIZES)
        assert sorted(store.keys()) == sorted(each.key for each in saved.files)
        assert gps_of(store.read(saved.original.key)) == {}
        with pytest.raises(InvalidImageError):
            save_image(store, jpeg()[:500], filename="cut.jpg", thumbnails=SIZES)
        keys = {name: thumb.key for name, thumb in saved.thumbnails.items()}
        assert delete_image(store, saved.original.key, keys) == 3
        assert delete_image(store, saved.original.key, keys) == 0
        assert list(store.keys()) == []
        if kind != "queued":  # a queued store keeps its transfer records a while
            assert everything_stored(store) == []


def test_a_werkzeug_upload_is_saved_under_its_own_name() -> None:
    from werkzeug.datastructures import FileStorage

    upload = FileStorage(io.BytesIO(png()), filename="holiday.png", content_type="text/html")
    saved = save_image(MemoryStore(), upload)
    assert saved.original.key == "holiday.png"
    assert saved.original.content_type == "image/png"


def test_refusals_answer_415_and_413() -> None:
    assert answer_for(InvalidImageError("x")).status == 415
    assert answer_for(ImageTooLargeError("x")).status == 413


def test_without_pillow_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "PIL", None)
    monkeypatch.setitem(sys.modules, "PIL.Image", None)
    with pytest.raises(ModuleNotFoundError, match=r"Flask-Store-NG\[images\]"):
        check(b"\x89PNG")
