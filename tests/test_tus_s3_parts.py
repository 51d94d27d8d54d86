"""tus uploads into S3 send their parts from the spool file a block at a time.

A part is 5 MiB by default, but a huge ``STORE_TUS_MAX_SIZE`` makes parts of up to S3's
5 GiB limit: a web worker that read a whole part into memory before sending it would need
that much per upload in flight. These tests run against the moto server in its own process,
so the memory traced here is only the app's.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from botocore.auth import S3SigV4Auth

from flask_store import Store
from flask_store.files import FileSpan
from flask_store.stores.s3 import S3Store
from flask_store.tus.s3 import MAX_PARTS, MIN_PART_SIZE, part_size_for
from tests.moto_server import create_bucket, s3_client
from tests.test_tus import b64, create, head, new_upload, patch
from tests.test_tus_clients import MIB, cut_proxy, moto_server, s3_app

__all__ = ["cut_proxy", "moto_server"]  # fixtures, imported for the tests below


def test_parts_are_sent_without_holding_them_in_memory(tmp_path: Path, moto_server: str) -> None:
    """A deferred-length upload under a limit of 10,000 parts of 12 MiB gets 12 MiB parts.
    One PATCH of almost two parts: the first part is sent while the PATCH arrives, the last
    when it ends. Neither may be read into memory whole (before: 12 MiB each). What is held
    is botocore's checksum block and the PATCH's read block, whatever the part size."""
    part_size = 12 * MIB
    assert part_size_for(MAX_PARTS * part_size) == part_size
    bucket = create_bucket(moto_server)
    app, _ = s3_app(tmp_path, moto_server, bucket, STORE_TUS_MAX_SIZE=MAX_PARTS * part_size)
    data = os.urandom(2 * part_size - 1024)
    client = app.test_client()
    metadata = f"filename {b64('two-parts.bin')}"
    created = create(client, None, **{"Upload-Defer-Length": "1", "Upload-Metadata": metadata})
    assert created.status_code == 201, created.data
    url = created.headers["Location"]
    tracemalloc.start()
    try:
        answer = patch(client, url, 0, data, **{"Upload-Length": str(len(data))})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert answer.status_code == 204, answer.data
    assert peak < part_size // 2, f"{peak / MIB:.1f} MiB held at once"
    stored = s3_client(moto_server).get_object(Bucket=bucket, Key="media/two-parts.bin")
    assert stored["ContentLength"] == len(data)
    assert stored["Body"].read() == data


def test_parts_of_several_patches_keep_their_bytes_in_order(
    tmp_path: Path, moto_server: str
) -> None:
    """PATCHes that end inside a part, exactly on a part's end and past it: what is left after
    the parts sent moves to the next spool file, and the object is the client's bytes."""
    bucket = create_bucket(moto_server)
    app, _ = s3_app(tmp_path, moto_server, bucket, STORE_TUS_MAX_SIZE=64 * MIB)
    data = os.urandom(3 * MIN_PART_SIZE + 77)
    cuts = [0, MIB + 3, MIN_PART_SIZE, 2 * MIN_PART_SIZE + 5, len(data)]
    client = app.test_client()
    url = new_upload(client, len(data), "pieces.bin")
    for start, stop in itertools.pairwise(cuts):
        answer = patch(client, url, start, data[start:stop])
        assert answer.status_code == 204, answer.data
        assert answer.headers["Upload-Offset"] == str(stop)
    stored = s3_client(moto_server).get_object(Bucket=bucket, Key="media/pieces.bin")
    assert stored["Body"].read() == data


def test_a_part_cut_mid_body_is_sent_again_from_its_start(
    tmp_path: Path, moto_server: str, cut_proxy: Any
) -> None:
    """The connection carrying a part drops in the middle of its body; botocore sends the
    part again on a new connection, rewinding the span to the part's first byte: not the
    spool file's (the part starts a part into it), nor where the cut left it. The part's
    ETag and the object are the client's bytes."""
    bucket = create_bucket(moto_server)
    proxy = cut_proxy(moto_server, cut_at=1 << 62)  # set below, once the upload exists
    app, _ = s3_app(tmp_path, proxy.url, bucket)
    sends: list[int] = []
    with app.app_context():
        s3_store = Store.registry(app).resolve()
        assert isinstance(s3_store, S3Store)
        s3_store.client.meta.events.register(
            "before-send.s3.UploadPart", lambda **_: sends.append(1)
        )
    data = os.urandom(3 * MIN_PART_SIZE + 77)
    client = app.test_client()
    url = new_upload(client, len(data), "cut.bin")
    cuts = [0, MIB, 2 * MIN_PART_SIZE + MIB, len(data)]
    answer = patch(client, url, cuts[0], data[cuts[0] : cuts[1]])
    assert answer.status_code == 204, answer.data
    # With a checksum, a PATCH's parts are sent once it is checked, from one spool file:
    # part 1 from its start, part 2 from a part into it. Cut part 2, 2 MiB into its body.
    proxy.cut_at = proxy.sent + MIN_PART_SIZE + 2 * MIB
    body = data[cuts[1] : cuts[2]]
    checksum = f"sha1 {b64(hashlib.sha1(body).digest())}"
    answer = patch(client, url, cuts[1], body, **{"Upload-Checksum": checksum})
    assert answer.status_code == 204, answer.data
    assert proxy.cuts == 1
    assert len(sends) == 3  # part 1, part 2 cut, part 2 again
    s3 = s3_client(moto_server)
    [upload] = s3.list_multipart_uploads(Bucket=bucket)["Uploads"]
    parts = s3.list_parts(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    assert [(part["PartNumber"], part["Size"], part["ETag"]) for part in parts["Parts"]] == [
        (number, MIN_PART_SIZE, f'"{hashlib.md5(piece).hexdigest()}"')
        for number, piece in enumerate(
            (data[:MIN_PART_SIZE], data[MIN_PART_SIZE : 2 * MIN_PART_SIZE]), 1
        )
    ]
    answer = patch(client, url, cuts[2], data[cuts[2] : cuts[3]])
    assert answer.status_code == 204, answer.data
    assert s3.get_object(Bucket=bucket, Key="media/cut.bin")["Body"].read() == data


#: Where botocore reads a part's body when the spool file is cut short under it: the
#: checksum (once per call), the signature (once per attempt, over HTTP), the request itself
#: (an error there is a connection error botocore retries); over HTTPS the body is not signed.
READS = {"checksum": (0, True), "signing": (1, True), "sending": (2, True), "https": (1, False)}


@pytest.mark.parametrize("read", READS)
@pytest.mark.parametrize("lost", ["uncommitted", "committed"])
def test_a_spool_file_cut_short_under_a_part(
    tmp_path: Path, moto_server: str, monkeypatch: pytest.MonkeyPatch, read: str, lost: str
) -> None:
    """The spool file loses bytes while a part of it is being sent: the span ends early
    (EIO) wherever botocore reads it, and nothing of that PATCH is recorded (no part, the
    offset unchanged). When only the PATCH's own bytes are gone, the answer is a 503 and the
    client resumes from the offset; when bytes the state counts are gone, the upload is
    damaged (410). Never a 500."""
    passes_before_cut, signed = READS[read]
    if not signed:
        monkeypatch.setattr(S3SigV4Auth, "_should_sha256_sign_payload", lambda *_: False)
    bucket = create_bucket(moto_server)
    app, _ = s3_app(tmp_path, moto_server, bucket)
    data = os.urandom(MIN_PART_SIZE + 2 * MIB)
    client = app.test_client()
    url = new_upload(client, len(data), "short.bin")
    first = patch(client, url, 0, data[:MIB])
    assert first.status_code == 204, first.data
    keep = MIB if lost == "uncommitted" else MIB // 2
    read_into = FileSpan.readinto
    passes: list[int] = []

    def cutting_readinto(span: FileSpan, buffer: Any) -> int:
        if span.tell() == 0:
            passes.append(0)
        if len(passes) > passes_before_cut and span.tell() >= MIB:
            os.ftruncate(span._fd, span._start + keep)
        return read_into(span, buffer)

    with monkeypatch.context() as patched:
        patched.setattr(FileSpan, "readinto", cutting_readinto)
        answer = patch(client, url, MIB, data[MIB:])
    s3 = s3_client(moto_server)
    [upload] = s3.list_multipart_uploads(Bucket=bucket)["Uploads"]
    parts = s3.list_parts(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    assert parts.get("Parts", []) == []
    if lost == "committed":
        assert answer.status_code == 410, answer.data
        assert patch(client, url, MIB, data[MIB:]).status_code == 410
        return
    assert answer.status_code == 503, answer.data
    state = head(client, url)
    assert state.status_code == 200
    assert state.headers["Upload-Offset"] == str(MIB)
    answer = patch(client, url, MIB, data[MIB:])
    assert answer.status_code == 204, answer.data
    assert s3.get_object(Bucket=bucket, Key="media/short.bin")["Body"].read() == data
