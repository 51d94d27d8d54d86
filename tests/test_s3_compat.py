"""S3-compatible servers: the store never claims a success that did not happen.

s3rver (``tests/s3rver_server.py``) is a real S3-compatible server that lacks what several
others lack too: it ignores ``If-None-Match: *`` on PUT and ``If-Match`` on GET, answers
``NotImplemented`` to object ACLs, and over HTTPS stores botocore's ``aws-chunked`` checksum
framing as the file's bytes. Each test here fails on a store that trusts such a server.
The moto server, which has these features, shows the same code paths where they work.
"""

from __future__ import annotations

import functools
import gzip
import io
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_store import Store
from flask_store.exceptions import (
    BucketNotFoundError,
    FileChangedError,
    FileExistsInStoreError,
    NotConfiguredError,
    StoreUnavailableError,
    UnsupportedByServerError,
)
from flask_store.stores.queued import QueuedStore
from flask_store.stores.s3 import S3Store
from flask_store.stores.s3_client import feature_hint
from flask_store.stores.s3_config import MIB
from flask_store.stores.s3_probes import PROBE_MARK
from tests import external_s3
from tests.counting_proxy import CountingProxy
from tests.moto_server import (
    ACCESS_KEY as MOTO_KEY,
)
from tests.moto_server import (
    SECRET_KEY as MOTO_SECRET,
)
from tests.moto_server import (
    create_bucket,
    moto_server,
    s3_client,
)
from tests.s3rver_server import ACCESS_KEY, REGION, SECRET_KEY, S3rver, s3rver, s3rver_tls
from tests.stores import external_kind
from tests.test_queued import JOIN

__all__ = ["moto_server", "s3rver", "s3rver_tls"]  # session fixtures, used below

PREFIX = "media"


def on_s3rver(server: S3rver, *, bucket: str | None = None, **settings: Any) -> S3Store:
    """An S3Store on s3rver (or a proxy in front of it, ``endpoint``), in a fresh bucket."""
    endpoint = settings.pop("endpoint", server.url)
    return S3Store(
        s3_bucket=bucket or server.create_bucket(),
        s3_region=REGION,
        s3_endpoint_url=endpoint,
        s3_access_key=ACCESS_KEY,
        s3_secret_key=SECRET_KEY,
        **{"path": PREFIX, **settings},
    )


def on_moto(endpoint: str, *, bucket: str | None = None, **settings: Any) -> S3Store:
    return S3Store(
        s3_bucket=bucket or create_bucket(endpoint),
        s3_region=REGION,
        s3_endpoint_url=endpoint,
        s3_access_key=MOTO_KEY,
        s3_secret_key=MOTO_SECRET,
        **{"path": PREFIX, **settings},
    )


def objects_in(store: S3Store) -> list[str]:
    """Every object in the store's bucket, hidden ones included (s3rver cannot list
    unfinished multipart uploads)."""
    listed = store.client.list_objects_v2(Bucket=store.bucket).get("Contents", [])
    return sorted(item["Key"] for item in listed)


def requests_during(proxy: CountingProxy, action: Any) -> list[tuple[str, int]]:
    """The requests (method, status) that reached the server while ``action()`` ran."""
    first = len(proxy.seen)
    action()
    return [(seen.method, seen.status) for seen in proxy.seen[first:]]


# -- conditional writes ------------------------------------------------------------------------


def test_s3rver_really_ignores_if_none_match(s3rver: S3rver) -> None:
    # The premise of the tests below: a second conditional PUT of one key overwrites it.
    client, bucket = s3rver.client(), s3rver.create_bucket()
    client.put_object(Bucket=bucket, Key="k", Body=b"1", IfNoneMatch="*")
    client.put_object(Bucket=bucket, Key="k", Body=b"2", IfNoneMatch="*")
    assert client.get_object(Bucket=bucket, Key="k")["Body"].read() == b"2"


@pytest.mark.parametrize("on_conflict", ["rename", "error"])
def test_saves_are_refused_where_conditional_writes_are_ignored(
    s3rver: S3rver, on_conflict: str
) -> None:
    store = on_s3rver(s3rver, on_conflict=on_conflict)
    with pytest.raises(UnsupportedByServerError, match="STORE_S3_CONDITIONAL_WRITES") as caught:
        store.save(b"first", name="a.txt")
    assert "ignored" in str(caught.value) and store.bucket in str(caught.value)
    with pytest.raises(UnsupportedByServerError, match="STORE_S3_CONDITIONAL_WRITES"):
        store.put("b.txt", b"second")
    assert objects_in(store) == []  # the probe's scratch object is gone too


def test_two_saves_of_one_name_never_silently_overwrite(s3rver: S3rver) -> None:
    store = on_s3rver(s3rver)
    outcomes: list[bytes | str] = []
    for body in [b"first", b"second"]:
        try:
            outcomes.append(store.save(body, name="a.txt").read())
        except UnsupportedByServerError:
            outcomes.append("refused")
    files = {key: store.read(key) for key in store}
    assert sorted(files.values()) == sorted(o for o in outcomes if isinstance(o, bytes))
    assert outcomes == ["refused", "refused"]


def test_the_probe_runs_once_per_bucket_per_process(s3rver: S3rver) -> None:
    bucket = s3rver.create_bucket()
    with CountingProxy(s3rver.url) as proxy:
        store = on_s3rver(s3rver, bucket=bucket, endpoint=proxy.url)

        def save() -> None:
            with pytest.raises(UnsupportedByServerError):
                store.save(b"x", name="a.txt")

        # Two conditional PUTs of a scratch key both succeed (the second must not), then
        # the scratch key is deleted. Nothing of the file is sent.
        assert requests_during(proxy, save) == [("PUT", 200), ("PUT", 200), ("DELETE", 204)]
        assert requests_during(proxy, save) == []
        other = on_s3rver(s3rver, bucket=bucket, endpoint=proxy.url, path="elsewhere")

        def save_other() -> None:
            with pytest.raises(UnsupportedByServerError):
                other.save(b"x", name="b.txt")

        assert requests_during(proxy, save_other) == []  # another store, the same bucket
    assert all(PROBE_MARK in seen.key for seen in proxy.seen)


def test_overwrite_policy_needs_no_conditional_writes(s3rver: S3rver) -> None:
    store = on_s3rver(s3rver, on_conflict="overwrite")
    store.save(b"first", name="a.txt")
    assert store.save(b"second", name="a.txt").read() == b"second"
    assert list(store.keys()) == ["a.txt"]


def test_off_accepts_a_checked_rename(s3rver: S3rver) -> None:
    store = on_s3rver(s3rver, s3_conditional_writes="off")
    first, second = store.save(b"first", name="a.txt"), store.save(b"second", name="a.txt")
    assert first.name == "a.txt" and second.name != "a.txt"
    assert (store.read(first.name), store.read(second.name)) == (b"first", b"second")
    with pytest.raises(FileExistsInStoreError):
        on_s3rver(
            s3rver, bucket=store.bucket, s3_conditional_writes="off", on_conflict="error"
        ).save(b"third", name="a.txt")
    assert store.read("a.txt") == b"first"


def test_a_queued_transfer_is_never_done_over_another_file(s3rver: S3rver, tmp_path: Path) -> None:
    bucket = s3rver.create_bucket()
    s3rver.client().put_object(Bucket=bucket, Key=f"{PREFIX}/doc.pdf", Body=b"theirs")
    store = QueuedStore(
        queued_local={"PROVIDER": "local", "PATH": str(tmp_path / "local")},
        queued_remote={
            "PROVIDER": "s3",
            "S3_BUCKET": bucket,
            "S3_REGION": REGION,
            "S3_ENDPOINT_URL": s3rver.url,
            "S3_ACCESS_KEY": ACCESS_KEY,
            "S3_SECRET_KEY": SECRET_KEY,
            "PATH": PREFIX,
        },
        transfer_retries=0,
    )
    store.put("doc.pdf", b"mine")
    assert store.join(JOIN)
    assert store.state("doc.pdf") == "failed"
    assert "STORE_S3_CONDITIONAL_WRITES" in (store.records.get("doc.pdf").error or "")  # type: ignore[union-attr]
    body = s3rver.client().get_object(Bucket=bucket, Key=f"{PREFIX}/doc.pdf")["Body"].read()
    assert body == b"theirs"


def test_probe_finds_conditional_writes_where_they_work(moto_server: str) -> None:
    bucket = create_bucket(moto_server)
    with CountingProxy(moto_server) as proxy:
        store = on_moto(proxy.url, bucket=bucket)
        assert requests_during(proxy, lambda: store.save(b"1", name="a.txt")) == [
            ("PUT", 200),  # the scratch key, conditionally
            ("PUT", 412),  # again: refused, as it must be
            ("DELETE", 204),
            ("PUT", 200),  # the file
        ]
        assert requests_during(proxy, lambda: store.save(b"2", name="a.txt")) == [
            ("PUT", 412),
            ("PUT", 200),
        ]
    assert len(list(store.keys())) == 2


def test_the_bucket_is_asked_about_once_per_process(moto_server: str) -> None:
    # A HEAD's bare 404 is the same for a missing file and a missing bucket: the first one
    # asks about the bucket, later ones (from any store on that bucket) do not.
    bucket = create_bucket(moto_server)
    with CountingProxy(moto_server) as proxy:
        store = on_moto(proxy.url, bucket=bucket)
        first = requests_during(proxy, lambda: store.exists("a.txt"))
        assert first == [("HEAD", 404), ("HEAD", 200)]
        assert proxy.seen[-1].key == ""  # the second HEAD is of the bucket
        assert requests_during(proxy, lambda: store.exists("b.txt")) == [("HEAD", 404)]
        other = on_moto(proxy.url, bucket=bucket, path="elsewhere")
        assert requests_during(proxy, lambda: other.exists("c.txt")) == [("HEAD", 404)]


@pytest.mark.parametrize("etag", [None, '"not hex"', '"' + "0" * 32 + '"', ""])
def test_a_put_answered_with_a_wrong_etag_fails_loudly(moto_server: str, etag: str | None) -> None:
    # A server whose PUT answer has no ETag, or one that is not the MD5 of the bytes sent,
    # did not store them as sent (or cannot show it): the save is refused, not trusted.
    with CountingProxy(moto_server) as proxy:
        store = on_moto(proxy.url, s3_conditional_writes="trust")
        proxy.answer_with("PUT", {"ETag": etag})
        with pytest.raises(UnsupportedByServerError, match="stored other bytes"):
            store.save(b"hello", name="a.txt")


def test_trust_sends_conditional_writes_without_a_probe(moto_server: str) -> None:
    bucket = create_bucket(moto_server)
    with CountingProxy(moto_server) as proxy:
        store = on_moto(proxy.url, bucket=bucket, s3_conditional_writes="trust")
        assert requests_during(proxy, lambda: store.save(b"1", name="a.txt")) == [("PUT", 200)]
        assert requests_during(proxy, lambda: store.save(b"2", name="a.txt")) == [
            ("PUT", 412),
            ("PUT", 200),
        ]


@pytest.mark.parametrize(
    ("value", "mode"), [(True, "probe"), (False, "off"), ("probe", "probe"), ("trust", "trust")]
)
def test_conditional_writes_setting_values(value: object, mode: str) -> None:
    store = S3Store(s3_bucket="b", s3_region=REGION, s3_conditional_writes=value)
    assert store.settings.conditional_writes == mode


@pytest.mark.parametrize("value", ["yes", "required", "", 1])
def test_conditional_writes_setting_refuses_other_values(value: object) -> None:
    with pytest.raises(NotConfiguredError, match="STORE_S3_CONDITIONAL_WRITES"):
        S3Store(s3_bucket="b", s3_region=REGION, s3_conditional_writes=value)


# -- If-Match on GET ---------------------------------------------------------------------------


@pytest.mark.parametrize("server", ["s3rver", "moto"])
def test_ranged_read_of_a_replaced_file_is_refused(
    server: str, request: pytest.FixtureRequest
) -> None:
    if server == "s3rver":
        store = on_s3rver(request.getfixturevalue("s3rver"), s3_conditional_writes="off")
    else:
        store = on_moto(request.getfixturevalue("moto_server"))
    old = store.save(b"old version", name="a.txt")
    store.replace("a.txt", b"new version")
    with pytest.raises(FileChangedError):
        store.open_range("a.txt", 0, 3, etag=old.etag)
    with store.open_range("a.txt", 0, 3, etag=store.info("a.txt").etag) as stream:
        assert stream.read(3) == b"new"


# -- bytes stored other than sent ----------------------------------------------------------------


@pytest.fixture
def trusted_tls(s3rver_tls: S3rver, monkeypatch: pytest.MonkeyPatch) -> S3rver:
    """The HTTPS s3rver, its certificate trusted by boto3 (``AWS_CA_BUNDLE``)."""
    assert s3rver_tls.ca_bundle is not None
    monkeypatch.setenv("AWS_CA_BUNDLE", s3rver_tls.ca_bundle)
    return s3rver_tls


def test_s3rver_over_https_really_stores_the_checksum_framing(trusted_tls: S3rver) -> None:
    # The premise: botocore's default checksums over HTTPS send the body aws-chunked, and
    # s3rver keeps the framing as the object (an ETag that is the MD5 of those bytes).
    client, bucket = trusted_tls.client(), trusted_tls.create_bucket()
    client.put_object(Bucket=bucket, Key="k", Body=b"hello")
    stored = client.get_object(Bucket=bucket, Key="k")["Body"].read()
    assert stored != b"hello" and stored.startswith(b"5\r\nhello\r\n0\r\nx-amz-checksum-crc32:")


@pytest.mark.parametrize("size", [5, 6 * MIB])  # one PUT; multipart above 5 MiB
def test_a_corrupted_upload_fails_loudly_and_leaves_nothing(trusted_tls: S3rver, size: int) -> None:
    store = on_s3rver(trusted_tls, s3_conditional_writes="off", s3_multipart_threshold=5 * MIB)
    data = (b"hello" * (size // 5 + 1))[:size]
    with pytest.raises(UnsupportedByServerError, match="STORE_S3_CHECKSUM_CALCULATION"):
        store.save(data, name="a.bin")
    assert objects_in(store) == []
    with pytest.raises(UnsupportedByServerError, match="STORE_S3_CHECKSUM_CALCULATION"):
        store.put("b.bin", data, overwrite=True)
    assert objects_in(store) == []


def test_when_required_checksums_store_the_bytes_sent(trusted_tls: S3rver) -> None:
    store = on_s3rver(
        trusted_tls,
        s3_conditional_writes="off",
        s3_checksum_calculation="when_required",
        s3_multipart_threshold=5 * MIB,
    )
    big = bytes(range(256)) * (6 * MIB // 256)
    for name, data in [("small.bin", b"hello"), ("big.bin", big)]:
        saved = store.save(data, name=name)
        assert saved.read() == data
        assert store.verify(saved.name) is None


# -- errors that name the setting ----------------------------------------------------------------


def test_not_implemented_names_what_to_use_instead(s3rver: S3rver) -> None:
    store = on_s3rver(s3rver, s3_conditional_writes="off")
    store.save(b"x", name="a.txt")
    with pytest.raises(UnsupportedByServerError, match="NotImplemented") as caught:
        store.make_public("a.txt")
    assert "STORE_S3_PRESIGNED" in str(caught.value)


@pytest.mark.parametrize(
    ("message", "setting"),
    [
        ("The x-amz-checksum-crc32 header is not supported", "STORE_S3_CHECKSUM_CALCULATION"),
        ("Unsupported Content-Encoding: aws-chunked", "STORE_S3_CHECKSUM_CALCULATION"),
        (
            "A header you provided implies functionality that is not implemented: If-None-Match",
            "STORE_S3_CONDITIONAL_WRITES",
        ),
        ("x-amz-acl is not supported", "STORE_S3_ACL"),
        ("Invalid storage class", "STORE_S3_OBJECT_PARAMS"),
    ],
)
def test_feature_errors_name_the_setting_that_avoids_them(message: str, setting: str) -> None:
    store = S3Store(s3_bucket="b", s3_region=REGION, s3_acl="private")
    hint = feature_hint(store.settings, message)
    assert setting in hint


def test_feature_error_without_a_clue_names_every_setting_in_use() -> None:
    store = S3Store(s3_bucket="b", s3_region=REGION, s3_object_params={"StorageClass": "STANDARD"})
    hint = feature_hint(
        store.settings, "A header you provided implies functionality that is not implemented"
    )
    for setting in [
        "STORE_S3_CHECKSUM_CALCULATION",
        "STORE_S3_CONDITIONAL_WRITES",
        "STORE_S3_OBJECT_PARAMS",
    ]:
        assert setting in hint
    assert "STORE_S3_ACL" not in hint  # not set: not the cause


@pytest.mark.parametrize(
    "endpoint", ["http://127.0.0.1:9000", "https://10.0.0.5", "http://[::1]:9000"]
)
def test_virtual_addressing_with_an_ip_address_is_refused(endpoint: str) -> None:
    with pytest.raises(NotConfiguredError, match="STORE_S3_ADDRESSING_STYLE"):
        S3Store(
            s3_bucket="b", s3_region=REGION, s3_endpoint_url=endpoint, s3_addressing_style="virtual"
        )


def test_virtual_addressing_with_a_host_name_is_kept() -> None:
    store = S3Store(
        s3_bucket="b",
        s3_region=REGION,
        s3_endpoint_url="https://minio.example.com:9000",
        s3_addressing_style="virtual",
    )
    assert store.settings.addressing_style == "virtual"


@pytest.mark.parametrize("length", ["0", str(6 * MIB - 1), str(6 * MIB + 1)])
def test_a_multipart_upload_whose_size_is_wrong_fails_loudly(moto_server: str, length: str) -> None:
    # After a multipart upload the object's size is checked; a HEAD whose Content-Length
    # lies about it (or a server that lost a part) fails the save.
    with CountingProxy(moto_server) as proxy:
        store = on_moto(proxy.url, s3_conditional_writes="trust", s3_multipart_threshold=5 * MIB)
        proxy.answer_with("HEAD", {"Content-Length": length})
        with pytest.raises(UnsupportedByServerError, match=f"{length} bytes, not the {6 * MIB}"):
            store.save(io.BytesIO(b"x" * 6 * MIB), name="big.bin")


@pytest.mark.parametrize(
    "value", ["text/html\r\n X-Evil: 1", "text/html\r\n\tcharset=utf-8", "text/html, text/plain"]
)
def test_hostile_content_type_metadata_reads_as_octet_stream(moto_server: str, value: str) -> None:
    # Metadata is the server's word: a folded (CR/LF) or doubled type is not taken as the
    # file's, nor passed on to a response.
    with CountingProxy(moto_server) as proxy:
        store = on_moto(proxy.url, s3_conditional_writes="trust")
        store.save(b"<p>hi</p>", name="a.html", content_type="text/html")
        proxy.answer_with("HEAD", {"x-amz-meta-file-content-type": value})
        assert store.info("a.html").content_type == "application/octet-stream"


@pytest.mark.parametrize("value", ["abc", "-1", "1e3", "5_0", "5\r\n 6"])
def test_a_hostile_uncompressed_size_is_refused(moto_server: str, value: str) -> None:
    # The size of a gzip-encoded file is read from its metadata: one that is not a plain
    # number is the server's error, told as such, not a ValueError or a negative size.
    with CountingProxy(moto_server) as proxy:
        store = on_moto(proxy.url, s3_conditional_writes="trust")
        store.save(b"a { color: red }", name="a.css")  # CSS is stored gzip-encoded
        proxy.answer_with("HEAD", {"x-amz-meta-uncompressed-size": value})
        with pytest.raises(StoreUnavailableError, match="uncompressed-size"):
            store.info("a.css")


def proxying_app(store: S3Store) -> Flask:
    """An app serving ``store``'s files by proxy (with Flask-Store's error handlers)."""
    app = Flask(__name__)
    app.config.update({f"STORE_{key.upper()}": value for key, value in store.config.values.items()})
    app.config.update(STORE_PROVIDER="s3", STORE_S3_SERVE="proxy")
    Store(app)
    return app


@pytest.mark.parametrize(
    ("method", "header", "value"),
    [
        ("HEAD", "Content-Length", "abc"),
        ("GET", "Content-Length", "abc"),
        ("HEAD", "Last-Modified", "not a date"),
        ("GET", "Last-Modified", "not a date"),
        ("HEAD", "ETag", '"a", "b"'),
        ("GET", "ETag", '"a", "b"'),
        ("GET", "ETag", '"a\x01b"'),
    ],
)
def test_malformed_answers_are_store_unavailable_not_500(
    moto_server: str, method: str, header: str, value: str
) -> None:
    # botocore parses a number or a date it cannot read into a bare ValueError, and an ETag
    # with quotes inside cannot be sent on: the server's fault, told as such (503).
    with CountingProxy(moto_server) as proxy:
        store = on_moto(proxy.url, s3_conditional_writes="trust")
        store.save(b"some bytes", name="a.bin")
        proxy.answer_with(method, {header: value})
        action = store.info if method == "HEAD" else store.open
        with pytest.raises(StoreUnavailableError, match=r"'a\.bin'"):
            action("a.bin")
        client = proxying_app(store).test_client()
        headers = {"If-None-Match": '"other"'} if method == "HEAD" else {}
        response = client.get("/flaskstore/a.bin", headers=headers)
        assert response.status_code == 503
        assert b"some bytes" not in response.data


def test_a_gzip_object_without_its_size_is_not_served_as_a_shorter_file(moto_server: str) -> None:
    # Another tool's gzip-encoded object has no uncompressed-size metadata: its size is not
    # its compressed length (the route would send that many bytes of the file as all of it).
    with CountingProxy(moto_server) as proxy:
        store = on_moto(proxy.url, s3_conditional_writes="trust")
        text = b"line of text\n" * 1000
        store.client.put_object(
            Bucket=store.bucket,
            Key=store.object_key("notes.txt"),
            Body=gzip.compress(text),
            ContentEncoding="gzip",
            ContentType="text/plain",
        )
        with pytest.raises(StoreUnavailableError, match="uncompressed-size"):
            store.info("notes.txt")
        response = proxying_app(store).test_client().get("/flaskstore/notes.txt")
        assert response.status_code == 503


@pytest.mark.parametrize(
    ("encoded", "recorded"),
    [
        (b"not gzip at all", "15"),  # a server claiming an encoding the body lacks
        (gzip.compress(b"x" * 5000), "100"),  # more bytes than its recorded size
        (gzip.compress(b"x" * 50), "100"),  # fewer
        (gzip.compress(b"x" * 5000)[:-30], "5000"),  # a cut gzip stream
    ],
    ids=["not-gzip", "longer", "shorter", "cut"],
)
def test_a_gzip_body_that_is_not_its_recorded_size_is_refused(
    moto_server: str, encoded: bytes, recorded: str
) -> None:
    with CountingProxy(moto_server) as proxy:
        store = on_moto(proxy.url, s3_conditional_writes="trust")
        store.client.put_object(
            Bucket=store.bucket,
            Key=store.object_key("notes.txt"),
            Body=encoded,
            ContentEncoding="gzip",
            ContentType="text/plain",
            Metadata={"uncompressed-size": recorded},
        )
        with pytest.raises(StoreUnavailableError, match=r"'notes\.txt'"):
            store.read("notes.txt")
        client = proxying_app(store).test_client()
        assert client.get("/flaskstore/notes.txt").status_code == 503
        if not encoded.startswith(b"\x1f\x8b"):
            # A range of a body that is no gzip stream fails at its first byte; others are
            # found out only when read to their end.
            response = client.get("/flaskstore/notes.txt", headers={"Range": "bytes=1-5"})
            assert response.status_code == 503


# -- a missing bucket -------------------------------------------------------------------------


@pytest.fixture(params=["moto", "s3rver"])
def missing_bucket_store(request: pytest.FixtureRequest) -> Callable[..., S3Store]:
    """Makes stores whose bucket does not exist, on each kind of server."""
    if request.param == "s3rver":
        server: S3rver = request.getfixturevalue("s3rver")
        return functools.partial(on_s3rver, server, bucket="no-such-bucket")
    endpoint = request.getfixturevalue("moto_server")
    return functools.partial(on_moto, endpoint, bucket="no-such-bucket")


@pytest.mark.parametrize(
    "operation",
    [
        "save",
        "save-overwrite",
        "save-off",
        "save-multipart",
        "put",
        "open",
        "open_range",
        "info",
        "exists",
        "delete",
        "keys",
    ],
)
def test_a_missing_bucket_is_named_by_every_operation(
    missing_bucket_store: Callable[..., S3Store], operation: str
) -> None:
    store = missing_bucket_store(s3_multipart_threshold=5 * MIB)
    actions: dict[str, Callable[[], object]] = {
        "save": lambda: store.save(b"x", name="a.txt"),
        "save-overwrite": lambda: missing_bucket_store(on_conflict="overwrite").save(
            b"x", name="a.txt"
        ),
        "save-off": lambda: missing_bucket_store(s3_conditional_writes="off").save(
            b"x", name="a.txt"
        ),
        "save-multipart": lambda: store.save(io.BytesIO(b"x" * 6 * MIB), name="big.bin"),
        "put": lambda: store.put("a.txt", b"x"),
        "open": lambda: store.open("a.txt"),
        "open_range": lambda: store.open_range("a.txt", 0, 1),
        "info": lambda: store.info("a.txt"),
        "exists": lambda: store.exists("a.txt"),
        "delete": lambda: store.delete("a.txt"),
        "keys": lambda: list(store.keys()),
    }
    with pytest.raises(BucketNotFoundError, match=re.escape("'no-such-bucket'")):
        actions[operation]()


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("server", ["moto", "s3rver"])
def test_serving_from_a_missing_bucket_is_503_not_404(
    tmp_path: Path, request: pytest.FixtureRequest, method: str, server: str
) -> None:
    if server == "s3rver":
        s3: S3rver = request.getfixturevalue("s3rver")
        endpoint, key, secret = s3.url, ACCESS_KEY, SECRET_KEY
    else:
        endpoint, key, secret = request.getfixturevalue("moto_server"), MOTO_KEY, MOTO_SECRET
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(
        STORE_PROVIDER="s3",
        STORE_S3_BUCKET="no-such-bucket",
        STORE_S3_REGION=REGION,
        STORE_S3_ENDPOINT_URL=endpoint,
        STORE_S3_ACCESS_KEY=key,
        STORE_S3_SECRET_KEY=secret,
        STORE_S3_SERVE="proxy",
    )
    Store(app)
    response = app.test_client().open("/flaskstore/a.txt", method=method)
    assert response.status_code == 503


# -- the external endpoint of the test suite ------------------------------------------------------


def test_external_endpoint_settings_come_from_the_environment(
    moto_server: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    bucket = create_bucket(moto_server)
    for name, value in {
        "ENDPOINT": moto_server,
        "BUCKET": bucket,
        "ACCESS_KEY": MOTO_KEY,
        "SECRET_KEY": MOTO_SECRET,
        "CONDITIONAL_WRITES": "trust",
    }.items():
        monkeypatch.setenv(f"FLASK_STORE_TEST_S3_{name}", value)
    kind = external_kind()
    assert kind is not None
    with kind.make(request, on_conflict="error") as store:
        assert isinstance(store, S3Store)
        assert store.settings.conditional_writes == "trust"
        store.save(b"x", name="a.txt")
        assert external_s3.contents(store) == ["a.txt"]
    # Each test's files live under a prefix of their own, removed afterwards.
    assert s3_client(moto_server).list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    monkeypatch.delenv("FLASK_STORE_TEST_S3_ENDPOINT")
    assert external_kind() is None
