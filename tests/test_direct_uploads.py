"""Direct uploads (presigned POST) against a client that bends the form, as an attacker would.

moto, like several S3-compatible servers, does not enforce POST policies: whatever a client
writes into the form is stored. Every test posts the form as a browser would (a
``multipart/form-data`` POST with ``requests``), both to moto in-process (``mock_aws``, which
intercepts ``requests``) and over real HTTP to a moto server process, and checks that
``confirm_upload()`` trusts none of it: the limits are signed, checked against the object's
real size and type, and the confirmed key is one no form can write to.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import requests
from flask import Flask
from hypothesis import example, given, settings
from moto import mock_aws

from flask_store import Store
from flask_store.exceptions import (
    FileNotFoundInStoreError,
    FileTooLargeError,
    FileTypeRejectedError,
    InvalidArgumentError,
    InvalidFilenameError,
    InvalidKeyError,
    NotConfiguredError,
    StoreAccessDeniedError,
    UploadRejectedError,
)
from flask_store.stores import s3_uploads
from flask_store.stores.s3 import S3Store
from flask_store.stores.s3_config import MIB
from flask_store.stores.s3_uploads import DirectUpload
from tests.moto_server import bucket_contents, create_bucket, shared_moto_server
from tests.queued_remotes import s3_settings
from tests.test_s3 import filenames

PREFIX = "media/uploads"
SECRET = "a long random secret only the server knows"
#: The form fields that carry a direct upload's signed limits.
SIGNED_FIELDS = (
    "x-amz-meta-upload-max-size",
    "x-amz-meta-upload-content-type",
    "x-amz-meta-upload-expires",
    "x-amz-meta-upload-nonce",
    "x-amz-meta-upload-signature",
)


@pytest.fixture(params=["in-process", "server"])
def endpoint(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """Where the bucket is: moto in-process (``None``), or a moto server over HTTP."""
    if request.param == "server":
        yield shared_moto_server(request.config)
    else:
        with mock_aws():
            yield None


def new_store(endpoint: str | None, **config: Any) -> S3Store:
    """An S3Store under ``PREFIX`` in a fresh bucket, with an upload secret unless given."""
    settings = {**s3_settings(endpoint or "", create_bucket(endpoint), PREFIX), **config}
    settings.setdefault("S3_UPLOAD_SECRET", SECRET)
    return S3Store(**{key.lower(): value for key, value in settings.items()})


def sibling(store: S3Store, **changes: Any) -> S3Store:
    """Another store on the same bucket and prefix, with some settings changed."""
    return S3Store(**{**store.config.values, **changes})


@pytest.fixture
def store(endpoint: str | None) -> S3Store:
    return new_store(endpoint)


def s3_app(tmp_path: Path, endpoint: str | None, **config: Any) -> tuple[Flask, S3Store]:
    """An app whose default store is S3 (signing with the app's ``SECRET_KEY``), and that store."""
    app = Flask(__name__, instance_path=str(tmp_path))
    settings = s3_settings(endpoint or "", create_bucket(endpoint), PREFIX)
    app.config.update({f"STORE_{key}": value for key, value in settings.items()})
    app.config.update(SECRET_KEY="the app's secret", STORE_PROVIDER="s3", **config)
    Store(app)
    provider = Store.registry(app).resolve()
    assert isinstance(provider, S3Store)
    return app, provider


def stored(store: S3Store) -> list[str]:
    """Every object in the store's bucket, relative to its prefix (see bucket_contents)."""
    return bucket_contents(store.client, store.bucket, store.settings.prefix)


def post(upload: DirectUpload, data: bytes, **changes: str | None) -> int:
    """Post ``data`` with the form, as a browser does; ``changes`` rewrite (or, as ``None``,
    drop) form fields, as a hostile client may."""
    fields = {**upload.fields, **changes}
    form = {name: value for name, value in fields.items() if value is not None}
    content_type = form.get("Content-Type", "application/octet-stream")
    sent = requests.post(
        upload.url, data=form, files={"file": ("upload", data, content_type)}, timeout=60
    )
    assert sent.status_code in (200, 201, 204), sent.text
    return sent.status_code


def object_of(store: S3Store, key: str) -> dict[str, Any]:
    """The bucket's HEAD answer for the store key ``key``."""
    return dict(store.client.head_object(Bucket=store.bucket, Key=store.object_key(key)))


# -- limits the client sends back cannot be forged ---------------------------------------------


def test_a_rewritten_size_limit_is_refused_and_deleted(store: S3Store) -> None:
    upload = store.presigned_upload("a.png", max_size=10)
    post(upload, b"x" * 1000, **{"x-amz-meta-upload-max-size": "100000"})
    with pytest.raises(UploadRejectedError, match="refused and deleted"):
        store.confirm_upload(upload.key)
    assert stored(store) == []


def test_a_file_over_the_limit_is_refused_by_its_real_size(store: S3Store) -> None:
    upload = store.presigned_upload("a.png", max_size=100)
    post(upload, b"x" * 101)  # S3 would refuse it already; moto does not check policies
    with pytest.raises(UploadRejectedError, match="101 bytes, more than the 100 allowed"):
        store.confirm_upload(upload.key)
    assert stored(store) == []


def test_a_size_hidden_behind_a_gzip_encoding_is_measured_as_stored(store: S3Store) -> None:
    # A gzip-encoded object's size is read from metadata the client could write too.
    upload = store.presigned_upload("a.png", max_size=10)
    post(
        upload,
        b"x" * 1000,
        **{"Content-Encoding": "gzip", "x-amz-meta-uncompressed-size": "5"},
    )
    with pytest.raises(UploadRejectedError, match="1000 bytes"):
        store.confirm_upload(upload.key)
    assert stored(store) == []


@pytest.mark.parametrize("rewrite_limit", [False, True])
def test_a_rewritten_content_type_is_refused_and_deleted(
    store: S3Store, rewrite_limit: bool
) -> None:
    upload = store.presigned_upload("a.png", max_size=100)
    changes = {"Content-Type": "text/html"}
    if rewrite_limit:
        changes["x-amz-meta-upload-content-type"] = "text/html"
    post(upload, b"<script>alert(1)</script>", **changes)
    with pytest.raises(UploadRejectedError, match=r"not 'image/png'|signature"):
        store.confirm_upload(upload.key)
    assert stored(store) == []


@pytest.mark.parametrize(
    "changes",
    [
        dict.fromkeys(SIGNED_FIELDS),
        {"x-amz-meta-upload-signature": None},
        {"x-amz-meta-upload-signature": "0" * 64},
        {"x-amz-meta-upload-expires": str(2**40)},
        {"x-amz-meta-upload-nonce": "another"},
        {"Content-Disposition": 'inline; filename="page.html"'},
    ],
    ids=["no-limits", "no-signature", "wrong-signature", "later-expiry", "nonce", "disposition"],
)
def test_a_missing_or_changed_signed_field_is_refused_and_deleted(
    store: S3Store, changes: dict[str, str | None]
) -> None:
    upload = store.presigned_upload("a.png", max_size=100)
    post(upload, b"\x89PNG", **changes)
    with pytest.raises(UploadRejectedError, match="signature"):
        store.confirm_upload(upload.key)
    assert stored(store) == []


def test_the_signature_of_another_form_does_not_fit(store: S3Store) -> None:
    generous = store.presigned_upload("b.png", max_size=10_000)
    strict = store.presigned_upload("a.png", max_size=10)
    borrowed = {field: generous.fields[field] for field in SIGNED_FIELDS}
    post(strict, b"x" * 1000, **borrowed)
    with pytest.raises(UploadRejectedError, match="signature"):
        store.confirm_upload(strict.key)
    assert stored(store) == []


def test_extra_fields_a_client_adds_do_not_reach_the_confirmed_file(store: S3Store) -> None:
    upload = store.presigned_upload("a.png", max_size=100)
    post(
        upload,
        b"\x89PNG",
        **{
            "Cache-Control": "public, max-age=31536000",
            "x-amz-meta-evil": "1",
            "x-amz-website-redirect-location": "https://evil.example/",
        },
    )
    saved = store.confirm_upload(upload.key)
    head = object_of(store, saved.name)
    assert head["ContentType"] == "image/png"
    assert head["ContentDisposition"] == 'inline; filename="a.png"'
    assert "CacheControl" not in head and "WebsiteRedirectLocation" not in head
    assert "evil" not in head["Metadata"]


def test_an_expired_form_is_refused(store: S3Store, monkeypatch: pytest.MonkeyPatch) -> None:
    # The form is signed as if two days ago, valid for a minute: posting it now is late even
    # for the slowest upload of its size, whether or not the server enforces the policy.
    two_days_ago = int(time.time()) - 2 * 86400
    monkeypatch.setattr(s3_uploads, "unix_time", lambda: two_days_ago)
    upload = store.presigned_upload("a.png", max_size=100, expires=60)
    monkeypatch.undo()
    post(upload, b"\x89PNG")
    with pytest.raises(UploadRejectedError, match="expired"):
        store.confirm_upload(upload.key)
    assert stored(store) == []


def test_limits_given_to_confirm_are_checked_too(store: S3Store) -> None:
    upload = store.presigned_upload("a.png", max_size=1000)
    post(upload, b"x" * 500)
    with pytest.raises(UploadRejectedError, match="500 bytes, more than the 100 allowed"):
        store.confirm_upload(upload.key, max_size=100)
    assert stored(store) == []
    upload = store.presigned_upload("b.png", max_size=1000)
    post(upload, b"x" * 500)
    with pytest.raises(UploadRejectedError, match="not 'image/gif'"):
        store.confirm_upload(upload.key, content_type="image/gif")
    assert stored(store) == []


PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(17)


@pytest.mark.parametrize(
    "body",
    [b"<!doctype html><script>alert(document.cookie)</script>", b"%PDF-1.7\n", b""],
    ids=["html", "pdf", "empty"],
)
def test_store_allowed_types_are_checked_against_the_uploaded_bytes(
    endpoint: str | None, body: bytes
) -> None:
    # STORE_ALLOWED_TYPES holds for direct uploads as for save(): the client declares the
    # signed type, but the bytes it sends are what gets stored and served.
    store = new_store(endpoint, allowed_types=["image/*"])
    upload = store.presigned_upload("a.png", max_size=1000)
    post(upload, body)
    with pytest.raises(FileTypeRejectedError, match=r"refused and deleted.*only image/\*"):
        store.confirm_upload(upload.key)
    assert stored(store) == []
    upload = store.presigned_upload("b.png", max_size=1000)
    post(upload, PNG)
    assert store.confirm_upload(upload.key).read() == PNG
    assert stored(store) == [upload.key]


def test_a_form_for_a_type_the_store_refuses_is_not_signed(endpoint: str | None) -> None:
    store = new_store(endpoint, allowed_types=["image/*"])
    for filename, content_type in [("page.html", None), ("a.png", "image/svg+xml")]:
        with pytest.raises(FileTypeRejectedError, match=r"only image/\*"):
            store.presigned_upload(filename, max_size=1000, content_type=content_type)


# -- the confirmed key is one no form can write ------------------------------------------------


def test_direct_upload_then_confirm(store: S3Store) -> None:
    upload = store.at("inbox").presigned_upload("Фото 1.jpg", max_size=1000)
    assert re.fullmatch(r"inbox/Фото_1_[A-Za-z0-9_-]{8}\.jpg", upload.key)
    assert upload.content_type == "image/jpeg"
    post(upload, b"\xff\xd8jpeg")
    saved = store.confirm_upload(upload.key)
    assert (saved.name, saved.filename, saved.content_type, saved.size) == (
        upload.key,
        "Фото 1.jpg",
        "image/jpeg",
        6,
    )
    assert saved.read() == b"\xff\xd8jpeg"
    assert stored(store) == [upload.key]  # the staging object is gone


def test_the_form_targets_a_staging_key_nothing_serves(
    tmp_path: Path, endpoint: str | None
) -> None:
    app, provider = s3_app(tmp_path, endpoint, STORE_S3_SERVE="proxy")
    with app.app_context():
        upload = provider.presigned_upload("a.png", max_size=100)
    object_key = upload.fields["key"]
    assert object_key != provider.object_key(upload.key)
    staging = object_key.removeprefix(f"{PREFIX}/")
    assert staging != object_key and re.fullmatch(r"\.direct-uploads/[0-9a-f]{32}", staging)
    post(upload, b"\x89PNG")
    # Not confirmed: not a file of the store, not served, not reachable by any store key.
    assert list(provider.keys()) == [] and not provider.exists(upload.key)
    client = app.test_client()
    assert client.get(f"/flaskstore/{upload.key}").status_code == 404
    assert client.get(f"/flaskstore/{staging}").status_code == 404
    with pytest.raises(InvalidKeyError):
        provider.open(staging)
    with app.app_context():
        provider.confirm_upload(upload.key)
    assert client.get(f"/flaskstore/{upload.key}").data == b"\x89PNG"


@pytest.mark.parametrize("serve", ["proxy", "redirect"])
def test_a_replayed_form_cannot_change_a_confirmed_file(
    tmp_path: Path, endpoint: str | None, serve: str
) -> None:
    app, provider = s3_app(tmp_path, endpoint, STORE_S3_SERVE=serve, STORE_S3_PRESIGNED=True)
    client = app.test_client()

    def served(key: str) -> bytes:
        response = client.get(f"/flaskstore/{key}")
        if response.status_code == 302:
            fetched = requests.get(response.headers["Location"], timeout=30)
            assert fetched.status_code == 200
            return fetched.content
        assert response.status_code == 200
        return response.data

    with app.app_context():
        upload = provider.presigned_upload("a.png", max_size=100)
        post(upload, b"\x89PNG original")
        confirmed = provider.confirm_upload(upload.key)
        post(upload, b"\x89PNG swapped!!")  # the same form, again, after confirmation
        assert object_of(provider, upload.key)["ETag"].strip('"') == confirmed.etag
        assert served(upload.key) == b"\x89PNG original"
        with pytest.raises(UploadRejectedError, match="already confirmed"):
            provider.confirm_upload(upload.key)
        assert object_of(provider, upload.key)["ETag"].strip('"') == confirmed.etag
        assert served(upload.key) == b"\x89PNG original"
        assert stored(provider) == [upload.key]


def test_confirming_twice_gives_the_same_file(store: S3Store) -> None:
    upload = store.presigned_upload("a.png", max_size=100)
    post(upload, b"\x89PNG")
    first = store.confirm_upload(upload.key)
    again = store.confirm_upload(upload.key)  # a retry after a lost answer
    assert (again.name, again.etag, again.size) == (first.name, first.etag, first.size)
    post(upload, b"\x89PNG")  # the same bytes posted again: the same upload
    assert store.confirm_upload(upload.key).etag == first.etag
    assert stored(store) == [upload.key]


def test_overwrite_mode_replaces_with_a_new_form_but_not_with_a_replayed_one(
    store: S3Store,
) -> None:
    overwriting = sibling(store, ON_CONFLICT="overwrite")
    first = overwriting.presigned_upload("a.png", max_size=100)
    assert first.key == "a.png"
    post(first, b"\x89PNG one")
    overwriting.confirm_upload("a.png")
    second = overwriting.presigned_upload("a.png", max_size=100)
    post(second, b"\x89PNG two")
    assert overwriting.confirm_upload("a.png").read() == b"\x89PNG two"
    post(second, b"\x89PNG 333")
    with pytest.raises(UploadRejectedError, match="already confirmed"):
        overwriting.confirm_upload("a.png")
    assert store.read("a.png") == b"\x89PNG two"


def test_a_large_upload_is_copied_in_parts(endpoint: str | None) -> None:
    store = new_store(endpoint, S3_MULTIPART_THRESHOLD=5 * MIB, S3_MULTIPART_CHUNKSIZE=5 * MIB)
    data = bytes(range(256)) * (6 * MIB // 256)
    copies = []
    store.client.meta.events.register(
        "before-call.s3.UploadPartCopy", lambda **kwargs: copies.append(kwargs)
    )
    upload = store.presigned_upload("clip.mp4", max_size=7 * MIB)
    post(upload, data)
    saved = store.confirm_upload(upload.key)
    assert len(copies) == 2 and saved.size == len(data)
    assert store.read(upload.key) == data
    assert object_of(store, upload.key)["ContentType"] == "video/mp4"
    assert stored(store) == [upload.key]


def test_a_large_copy_whose_tags_are_refused_leaves_no_file(endpoint: str | None) -> None:
    """s3transfer completes a copy in parts, then tags the object in a call of its own: when
    the server refuses that call, the store held an untagged file the caller was told had
    failed. It is deleted, and the confirmation can be tried again."""
    store = new_store(
        endpoint,
        S3_MULTIPART_THRESHOLD=5 * MIB,
        S3_MULTIPART_CHUNKSIZE=5 * MIB,
        S3_OBJECT_PARAMS={"Tagging": "kind=clip"},
    )
    data = bytes(range(256)) * (6 * MIB // 256)

    def refuse(**kwargs: Any) -> tuple[Any, dict[str, Any]]:
        error = {"Code": "AccessDenied", "Message": "No tagging for you."}
        return SimpleNamespace(status_code=403), {
            "Error": error,
            "ResponseMetadata": {"HTTPStatusCode": 403},
        }

    store.client.meta.events.register("before-call.s3.PutObjectTagging", refuse)
    upload = store.presigned_upload("clip.mp4", max_size=7 * MIB)
    post(upload, data)
    with pytest.raises(StoreAccessDeniedError):
        store.confirm_upload(upload.key)
    assert upload.key not in stored(store)
    store.client.meta.events.unregister("before-call.s3.PutObjectTagging", refuse)
    assert store.confirm_upload(upload.key).read() == data
    tags = store.client.get_object_tagging(Bucket=store.bucket, Key=store.object_key(upload.key))
    assert tags["TagSet"] == [{"Key": "kind", "Value": "clip"}]


# -- objects that did not come from presigned_upload() ---------------------------------------


def test_confirm_upload_of_other_objects(store: S3Store) -> None:
    with pytest.raises(FileNotFoundInStoreError):
        store.confirm_upload("never-sent.png")
    never_posted = store.presigned_upload("n.png", max_size=10)
    with pytest.raises(FileNotFoundInStoreError):
        store.confirm_upload(never_posted.key)
    store.save(b"1234", name="made-by-save.png")
    with pytest.raises(UploadRejectedError, match="presigned_upload"):
        store.confirm_upload("made-by-save.png")
    assert stored(store) == ["made-by-save.png"]  # not ours to delete without limits
    assert store.confirm_upload("made-by-save.png", max_size=4).size == 4


def test_confirming_a_saved_file_under_tight_limits_never_deletes_it(store: S3Store) -> None:
    """An app that confirms the key its client sends back lets a hostile client name any
    file saved by save(): limits it breaks refuse it, but it is not the client's to delete."""
    store.save(b"\x89PNG\r\n\x1a\n1234", name="someone-elses.png")
    with pytest.raises(FileTooLargeError, match="kept"):
        store.confirm_upload("someone-elses.png", max_size=3)
    with pytest.raises(FileTypeRejectedError, match="kept"):
        store.confirm_upload("someone-elses.png", max_size=100, content_type="text/plain")
    assert stored(store) == ["someone-elses.png"]
    assert store.file("someone-elses.png").read() == b"\x89PNG\r\n\x1a\n1234"


# -- the secret and the arguments ------------------------------------------------------------


def test_without_a_secret_no_form_is_signed(endpoint: str | None) -> None:
    store = new_store(endpoint, S3_UPLOAD_SECRET=None)
    with pytest.raises(NotConfiguredError, match="STORE_S3_UPLOAD_SECRET"):
        store.presigned_upload("a.png", max_size=10)
    with pytest.raises(NotConfiguredError, match="STORE_S3_UPLOAD_SECRET"):
        store.confirm_upload("a.png")
    app = Flask(__name__)
    app.config["SECRET_KEY"] = "the app's secret"
    with app.app_context():
        upload = store.presigned_upload("a.png", max_size=10)
        post(upload, b"\x89PNG")
        assert store.confirm_upload(upload.key).size == 4
    with pytest.raises(NotConfiguredError, match="STORE_S3_UPLOAD_SECRET"):
        store.confirm_upload(upload.key)  # nothing is deleted for want of a secret
    assert stored(store) == [upload.key]


@pytest.mark.parametrize("secret", ["", 42, b""])
def test_a_bad_secret_setting_is_refused(secret: Any) -> None:
    with pytest.raises(NotConfiguredError, match="STORE_S3_UPLOAD_SECRET"):
        S3Store(s3_bucket="b", s3_region="us-east-1", s3_upload_secret=secret)


def test_forms_signed_with_another_secret_are_not_confirmed(endpoint: str | None) -> None:
    store = new_store(endpoint)
    other = sibling(store, S3_UPLOAD_SECRET="another secret")
    upload = other.presigned_upload("a.png", max_size=10)
    post(upload, b"\x89PNG")
    with pytest.raises(FileNotFoundInStoreError):
        store.confirm_upload(upload.key)


@pytest.mark.parametrize(
    "content_type",
    ["text/plain, text/html", "image/png,", "text/html\r\nX-Evil: 1", "", "png", "a/b;;c"],
)
def test_bad_content_types_are_refused(store: S3Store, content_type: str) -> None:
    with pytest.raises(InvalidArgumentError):
        store.presigned_upload("a.png", max_size=10, content_type=content_type)
    assert stored(store) == []


def test_content_types_are_normalised_and_active_ones_are_attachments(store: S3Store) -> None:
    upload = store.presigned_upload("a.txt", max_size=10, content_type="Text/Plain; Charset=UTF-8")
    assert upload.content_type == upload.fields["Content-Type"] == "text/plain; charset=utf-8"
    page = store.presigned_upload("page.html", max_size=100)
    assert page.fields["Content-Disposition"].startswith("attachment;")
    post(page, b"<script>alert(1)</script>")
    saved = store.confirm_upload(page.key)
    assert object_of(store, saved.name)["ContentDisposition"].startswith("attachment;")


@pytest.mark.parametrize("max_size", [0, -5, 5 * 1024**3 + 1, True, "10"])
def test_presigned_upload_limits_are_checked(store: S3Store, max_size: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="max_size"):
        store.presigned_upload("a.png", max_size=max_size)


def test_hostile_filenames_stay_under_store_path() -> None:
    with mock_aws():
        store = new_store(None)

        @settings(max_examples=60, deadline=None)
        @given(name=filenames)
        @example(name="../../etc/passwd")
        @example(name="..\\..\\boot.ini")
        @example(name="/%2e%2e/x")
        @example(name="a\r\nx-amz-acl: public-read")
        def signs_inside(name: str) -> None:
            try:
                upload = store.presigned_upload(name, max_size=10)
            except InvalidFilenameError:
                return
            assert store.object_key(upload.key) == f"{PREFIX}/{upload.key}"
            assert upload.fields["key"].startswith(f"{PREFIX}/.direct-uploads/")
            assert "\r" not in upload.fields["Content-Disposition"]

        signs_inside()


def test_a_form_posted_again_while_its_upload_is_checked_is_refused(
    endpoint: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client posts an image, then posts its form again with HTML just as the upload is
    checked: the bytes checked are those of the version confirmed (If-Match its ETag), so
    the confirmation is refused, and nothing is kept."""
    store = new_store(endpoint, allowed_types=["image/*"])
    upload = store.presigned_upload("a.png", max_size=1000)
    post(upload, PNG)
    get_object = store.client.get_object

    def posted_again_first(**kwargs: Any) -> Any:
        post(upload, b"<!doctype html><script>alert(document.cookie)</script>")
        return get_object(**kwargs)

    monkeypatch.setattr(store.client, "get_object", posted_again_first)
    with pytest.raises(UploadRejectedError, match="changed meanwhile"):
        store.confirm_upload(upload.key)
    monkeypatch.undo()
    assert stored(store) == []
