"""tus uploads into S3 send their parts from the spool file a block at a time.

A part is 5 MiB by default, but a huge ``STORE_TUS_MAX_SIZE`` makes parts of up to S3's
5 GiB limit: a web worker that read a whole part into memory before sending it would need
that much per upload in flight. These tests run against the moto server in its own process,
so the memory traced here is only the app's.
"""

from __future__ import annotations

import itertools
import os
import tracemalloc
from pathlib import Path

from flask_store.tus.s3 import MAX_PARTS, MIN_PART_SIZE, part_size_for
from tests.moto_server import create_bucket, s3_client
from tests.test_tus import b64, create, new_upload, patch
from tests.test_tus_clients import MIB, moto_server, s3_app

__all__ = ["moto_server"]  # a fixture, imported for the tests below


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
