"""Flask-WTF validators: the form refuses what save() would, from the bytes, before saving."""

from __future__ import annotations

import io
from typing import Any

import pytest
from flask import Flask
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired, MultipleFileField
from werkzeug.datastructures import FileStorage
from wtforms.validators import StopValidation  # type: ignore[import-untyped]

from flask_store import Store
from flask_store.exceptions import (
    FileTypeRejectedError,
    InvalidArgumentError,
    InvalidFilenameError,
)
from flask_store.wtf import StoreAllowed, StoreMaxSize
from tests.stores import SeeksWithoutSeekable

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(200))
HTML = b"<!doctype html><html><script>alert(1)</script>"


@pytest.fixture
def app() -> Flask:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="test",
        WTF_CSRF_ENABLED=False,
        STORE_PROVIDER="memory",
        STORE_ALLOWED_TYPES=["image/*"],
        STORE_MAX_SIZE=1000,
        STORE_STORES={"docs": {"PROVIDER": "memory", "ALLOWED_TYPES": ["application/pdf"]}},
    )
    Store(app)
    return app


def validate(app: Flask, validators: list[Any], upload: tuple[Any, ...] | None) -> Any:
    """Validate a form of one FileField holding ``upload`` (data, name[, type]) in ``app``."""

    class Form(FlaskForm):  # type: ignore[misc]
        file = FileField(validators=validators)

    data = {"file": (io.BytesIO(upload[0]), *upload[1:])} if upload else {}
    with app.test_request_context(method="POST", data=data):
        form = Form()
        ok = form.validate()
        return ok, form.file.errors, form.file.data


def test_a_page_named_and_typed_as_an_image_is_refused_by_the_form(app: Flask) -> None:
    ok, errors, _ = validate(app, [StoreAllowed()], (HTML, "cat.png", "image/png"))
    assert not ok
    assert "cat.png" in errors[0] and "text/html" in errors[0]


def test_a_real_image_passes_and_is_saved_whole(app: Flask) -> None:
    class Form(FlaskForm):  # type: ignore[misc]
        file = FileField(validators=[FileRequired(), StoreAllowed(), StoreMaxSize()])

    data = {"file": (io.BytesIO(PNG), "a.png")}
    with app.test_request_context(method="POST", data=data):
        form = Form()
        assert form.validate(), form.file.errors
        saved = Store().Provider().save(form.file.data)  # the app's store, as a view would
        assert saved.read() == PNG


def test_too_large_is_refused_by_the_form_on_python_3_10(app: Flask) -> None:
    """On 3.10 an upload's ``SpooledTemporaryFile`` has no ``seekable()``; the form check
    skipped it as unmeasurable and passed any size."""

    class Form(FlaskForm):  # type: ignore[misc]
        file = FileField(validators=[StoreMaxSize()])

    with app.test_request_context(method="POST"):
        form = Form(formdata=None, file=FileStorage(SeeksWithoutSeekable(PNG * 10), "a.png"))
        assert not form.validate()
        assert "1000" in form.file.errors[0]


def test_too_large_is_refused_by_the_form(app: Flask) -> None:
    ok, errors, _ = validate(app, [StoreMaxSize()], (PNG * 10, "a.png"))
    assert not ok
    assert "1000" in errors[0]
    ok, errors, _ = validate(app, [StoreMaxSize(5000)], (PNG * 10, "a.png"))
    assert ok


def test_arguments_and_messages_override_the_settings(app: Flask) -> None:
    pdf = b"%PDF-1.4\n%%EOF\n"
    assert validate(app, [StoreAllowed(["application/pdf"])], (pdf, "a.pdf"))[0]
    ok, errors, _ = validate(app, [StoreAllowed(message="Images only.")], (pdf, "a.pdf"))
    assert (ok, errors) == (False, ["Images only."])
    ok, errors, _ = validate(app, [StoreMaxSize(10, message="Too big.")], (PNG, "a.png"))
    assert (ok, errors) == (False, ["Too big."])


def test_a_named_store_gives_its_own_settings(app: Flask) -> None:
    assert validate(app, [StoreAllowed(store="docs")], (b"%PDF-1.4\n", "a.pdf"))[0]
    assert not validate(app, [StoreAllowed(store="docs")], (PNG, "a.png"))[0]


def test_no_file_and_unset_settings_pass(app: Flask) -> None:
    assert validate(app, [StoreAllowed(), StoreMaxSize()], None)[0]
    unlimited = Flask(__name__)
    unlimited.config.update(SECRET_KEY="t", WTF_CSRF_ENABLED=False, STORE_PROVIDER="memory")
    Store(unlimited)
    assert validate(unlimited, [StoreAllowed(), StoreMaxSize()], (HTML * 100, "a.html"))[0]


@pytest.mark.parametrize(
    "make",
    [lambda: StoreAllowed(["image"]), lambda: StoreAllowed([]), lambda: StoreMaxSize(-1)],
)
def test_bad_arguments_are_refused_when_the_form_is_written(make: Any) -> None:
    with pytest.raises(InvalidArgumentError):
        make()


class _Unseekable(io.RawIOBase):
    """A request body read once, forward (a chunked upload, a pipe): no seek, no tell."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return self._data.readinto(buffer)


def _field_of(stream: Any, name: str) -> Any:
    class Field:
        data = FileStorage(stream=stream, filename=name)

    return Field()


def test_an_unseekable_upload_is_sniffed_and_still_read_whole() -> None:
    """The head the check reads from a stream that cannot rewind is handed on, not lost."""
    field = _field_of(_Unseekable(PNG), "a.png")
    StoreAllowed(["image/*"])(None, field)
    assert field.data.stream.read() == PNG


def test_an_unseekable_page_named_as_an_image_is_refused() -> None:
    field = _field_of(_Unseekable(HTML), "cat.png")
    with pytest.raises(StopValidation, match="text/html"):
        StoreAllowed(["image/*"])(None, field)


def test_every_file_of_a_multiple_file_field_is_checked(app: Flask) -> None:
    """A MultipleFileField holds a list: one page among images is refused, as Flask-WTF's
    own FileAllowed and FileSize refuse one bad file of many."""

    class Form(FlaskForm):  # type: ignore[misc]
        files = MultipleFileField(validators=[StoreAllowed(), StoreMaxSize()])

    def errors_of(*files: tuple[bytes, str]) -> list[str]:
        data = {"files": [(io.BytesIO(body), name) for body, name in files]}
        with app.test_request_context(method="POST", data=data):
            form = Form()
            form.validate()
            return list(form.files.errors)

    assert errors_of((PNG, "a.png"), (PNG, "b.png")) == []
    refused = errors_of((PNG, "a.png"), (HTML, "cat.png"))
    assert len(refused) == 1 and "cat.png" in refused[0] and "text/html" in refused[0]
    too_large = errors_of((PNG, "a.png"), (PNG * 10, "big.png"))
    assert len(too_large) == 1 and "big.png" in too_large[0] and "1000" in too_large[0]


@pytest.mark.parametrize(
    "filename",
    [
        "data:image/png,x.html",  # the raw name reads as a PNG, save() stores png_x.html
        "data:text/html,cat.png",
        "cat.png.",
        "cat.png\u200b",
        "a/b\\cat.png",
        "a.png/",
    ],
)
def test_the_form_judges_the_name_as_save_will_store_it(app: Flask, filename: str) -> None:
    """The type a file is stored with comes from its safe name: the form refuses exactly
    what save() would (a name the form let through must not make save() raise)."""

    class Form(FlaskForm):  # type: ignore[misc]
        file = FileField(validators=[StoreAllowed()])

    data = {"file": (io.BytesIO(PNG), filename, "image/png")}
    with app.test_request_context(method="POST", data=data):
        form = Form()
        ok = form.validate()
        try:
            Store().Provider().save(form.file.data)
            saved = True
        except (FileTypeRejectedError, InvalidFilenameError):
            saved = False
    assert ok == saved, form.file.errors


def test_a_file_exactly_at_the_limit_passes_and_one_byte_more_is_refused(app: Flask) -> None:
    at_limit = PNG + bytes(1000 - len(PNG))
    assert validate(app, [StoreAllowed(), StoreMaxSize()], (at_limit, "a.png"))[0]
    ok, errors, _ = validate(app, [StoreMaxSize()], (at_limit + b"\0", "a.png"))
    assert not ok and "1000" in errors[0]


def test_an_empty_file_is_judged_as_save_judges_it(app: Flask) -> None:
    """A chosen file with no bytes: no image, so refused where images are required, and
    saved (zero bytes) by save() with no type rule."""
    ok, errors, _ = validate(app, [StoreAllowed(), StoreMaxSize()], (b"", "a.png"))
    assert not ok and "a.png" in errors[0]
    assert validate(app, [StoreMaxSize()], (b"", "a.png"))[0]
    with app.test_request_context(), pytest.raises(FileTypeRejectedError):
        Store().Provider().save(b"", name="a.png")
